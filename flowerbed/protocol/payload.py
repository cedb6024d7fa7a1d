"""A gossip payload's plaintext: a model's parameters as an ``.npz`` archive.

No pickle: a payload from a peer can never run code when it is loaded, and
one that is not this site's model (other names or shapes) is refused.
"""

from __future__ import annotations

import io

import numpy as np
import torch

State = dict[str, torch.Tensor]


def state_to_bytes(state: State) -> bytes:
    """Parameters as an ``.npz`` archive."""
    buffer = io.BytesIO()
    np.savez(buffer, **{name: tensor.detach().cpu().numpy() for name, tensor in state.items()})
    return buffer.getvalue()


def state_from_bytes(raw: bytes, like: State) -> State:
    """Parameters from ``state_to_bytes``; ``ValueError`` unless names and shapes match ``like``."""
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as arrays:
            state = {name: torch.from_numpy(arrays[name]) for name in arrays.files}
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"not a parameter archive ({err})") from None
    if state.keys() != like.keys() or any(state[k].shape != like[k].shape for k in like):
        raise ValueError("parameters do not fit this site's model")
    return state
