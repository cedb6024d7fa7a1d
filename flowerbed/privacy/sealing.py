"""Sealed peer-to-peer payloads: only the addressee opens them, only the sender made them.

Gossip payloads travel through the relay (Flower has no site-to-site path),
so each is encrypted to its addressee with ``cryptography``'s primitives,
no home-made crypto:

* key agreement: X25519 twice, an ephemeral key with the receiver's key
  (fresh secret per payload) and the sender's static key with the
  receiver's (only the holder of the sender's private key could have made
  it: the relay, which knows every public key, cannot forge a payload);
* key derivation: HKDF-SHA256 over both shared secrets, salted with the
  ephemeral public key;
* encryption: AES-256-GCM, with run, round, sender and receiver bound as
  associated data, so a payload replayed in another round or run, or
  re-addressed to another site, fails to open.

Wire format: ephemeral public key (32 bytes) || nonce (12) || ciphertext+tag.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from flowerbed.errors import FlowerbedError

KEY_BYTES = 32
NONCE_BYTES = 12
INFO = b"flowerbed gossip payload v1"


class SealError(FlowerbedError):
    """A payload failed to open: wrong addressee, tampered, replayed or forged."""


@dataclass(frozen=True)
class Envelope:
    """What a payload is bound to; all four must match for it to open."""

    run_id: int
    server_round: int
    sender: str
    receiver: str

    def associated_data(self) -> bytes:
        return (
            f"run={self.run_id};round={self.server_round};from={self.sender};to={self.receiver}"
        ).encode()


@dataclass(frozen=True)
class SiteKeys:
    """A site's long-lived X25519 key pair."""

    private: X25519PrivateKey

    @classmethod
    def generate(cls) -> SiteKeys:
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_bytes(cls, raw: bytes) -> SiteKeys:
        return cls(X25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def public_bytes(self) -> bytes:
        return _raw(self.private.public_key())


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _key(ephemeral_secret: bytes, static_secret: bytes, ephemeral_public: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral_public, info=INFO).derive(
        ephemeral_secret + static_secret
    )


def _public(raw: bytes, whose: str) -> X25519PublicKey:
    try:
        return X25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise SealError(f"{whose}'s public key is not a 32-byte X25519 key") from None


def seal(plaintext: bytes, sender: SiteKeys, receiver_public: bytes, envelope: Envelope) -> bytes:
    """Encrypt ``plaintext`` so only the owner of ``receiver_public`` can open it."""
    receiver = _public(receiver_public, envelope.receiver)
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = _raw(ephemeral.public_key())
    key = _key(ephemeral.exchange(receiver), sender.private.exchange(receiver), ephemeral_public)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, envelope.associated_data())
    return ephemeral_public + nonce + ciphertext


def open_sealed(
    payload: bytes, receiver: SiteKeys, sender_public: bytes, envelope: Envelope
) -> bytes:
    """Decrypt a payload addressed to ``receiver``; ``SealError`` if anything does not match."""
    if len(payload) < KEY_BYTES + NONCE_BYTES + 16:
        raise SealError(f"payload from {envelope.sender} is too short to be sealed")
    ephemeral_public = payload[:KEY_BYTES]
    nonce = payload[KEY_BYTES : KEY_BYTES + NONCE_BYTES]
    ephemeral = _public(ephemeral_public, f"{envelope.sender} (ephemeral)")
    key = _key(
        receiver.private.exchange(ephemeral),
        receiver.private.exchange(_public(sender_public, envelope.sender)),
        ephemeral_public,
    )
    try:
        return AESGCM(key).decrypt(
            nonce, payload[KEY_BYTES + NONCE_BYTES :], envelope.associated_data()
        )
    except InvalidTag:
        raise SealError(
            f"payload from {envelope.sender} to {envelope.receiver} in round "
            f"{envelope.server_round} does not open: not sealed for this site, this round "
            "and this sender, or altered on the way"
        ) from None
