"""Which callable a network's name names, and the sha256 of the file that defines it.

A name is a built-in (``flowerbed.catalogue.MODELS``, imported on first use)
or the hospital's own ``package.module:function``. Apart from the factory
that builds networks: a roll call compares an own network's source hash
before anything is built, and should not import MONAI to do it.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

from flowerbed.catalogue import MODELS, is_own_network
from flowerbed.errors import ModelError

if TYPE_CHECKING:
    from torch import nn

NetworkBuilder = Callable[[int, int, int], "nn.Module"]


@lru_cache(maxsize=8)
def network_builder(name: str) -> NetworkBuilder:
    """The callable ``name`` names; ``ModelError`` saying why if it cannot be had."""
    if not is_own_network(name):
        return MODELS.get(name)
    module_name, _, function = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # the user's module may fail in any way while importing
        raise ModelError(
            f"network {name}: module {module_name} cannot be imported ({type(err).__name__}: "
            f"{err}); put it on PYTHONPATH or install it"
        ) from None
    builder = getattr(module, function, None)
    if not callable(builder):
        raise ModelError(
            f"network {name}: {module_name} has no function {function}; name a callable "
            "(spatial_dims, in_channels, out_channels) -> nn.Module"
        )
    return builder


@lru_cache(maxsize=8)
def network_code(name: str) -> str:
    """sha256 of the source file that defines ``name``'s builder: what sites compare.

    For a built-in it is flowerbed's factory module, which the app bundle's
    hash already covers; for an own network, the hospital's file.
    """
    builder = network_builder(name)
    path = inspect.getsourcefile(builder)
    if path is None:
        raise ModelError(f"network {name}: its source file cannot be found; define it in a .py")
    with open(path, "rb") as source:
        return hashlib.sha256(source.read()).hexdigest()
