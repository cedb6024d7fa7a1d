"""Sealed payloads: attempts to read, alter, replay, re-address or forge them all fail."""

from __future__ import annotations

import pytest

from flowerbed.privacy.sealing import Envelope, SealError, SiteKeys, open_sealed, seal

ALICE, BOB, CAROL = SiteKeys.generate(), SiteKeys.generate(), SiteKeys.generate()
ENVELOPE = Envelope(run_id=7, server_round=3, sender="alice", receiver="bob")
SECRET = b"model parameters" * 64


def sealed() -> bytes:
    return seal(SECRET, ALICE, BOB.public_bytes(), ENVELOPE)


def test_the_addressee_opens_what_the_sender_sealed():
    assert open_sealed(sealed(), BOB, ALICE.public_bytes(), ENVELOPE) == SECRET
    assert SECRET not in sealed()  # the plaintext is nowhere in what travels


def test_nobody_else_opens_it():
    with pytest.raises(SealError, match="does not open"):
        open_sealed(sealed(), CAROL, ALICE.public_bytes(), ENVELOPE)


@pytest.mark.parametrize("position", [0, 40, -1])
def test_a_flipped_byte_anywhere_is_rejected(position):
    payload = bytearray(sealed())
    payload[position] ^= 0x01
    with pytest.raises(SealError):
        open_sealed(bytes(payload), BOB, ALICE.public_bytes(), ENVELOPE)


@pytest.mark.parametrize(
    "claimed",
    [
        Envelope(7, 4, "alice", "bob"),  # replayed in a later round
        Envelope(8, 3, "alice", "bob"),  # replayed in another run
        Envelope(7, 3, "alice", "carol"),  # re-addressed
        Envelope(7, 3, "carol", "bob"),  # passed off as another sender's
    ],
)
def test_payload_is_bound_to_run_round_sender_and_receiver(claimed):
    with pytest.raises(SealError):
        open_sealed(sealed(), BOB, ALICE.public_bytes(), claimed)


def test_the_relay_cannot_forge_a_payload_from_public_keys_alone():
    relay = SiteKeys.generate()  # the relay knows every public key, no private one
    forged = seal(b"poisoned model", relay, BOB.public_bytes(), ENVELOPE)
    with pytest.raises(SealError):
        open_sealed(forged, BOB, ALICE.public_bytes(), ENVELOPE)


def test_a_truncated_payload_is_rejected():
    with pytest.raises(SealError, match="too short"):
        open_sealed(sealed()[:20], BOB, ALICE.public_bytes(), ENVELOPE)
