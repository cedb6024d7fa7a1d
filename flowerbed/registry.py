"""Pick implementations by name from one registry per kind, not through ``if`` ladders.

A registry maps each name to where its implementation lives
(``"package.module:attribute"``) and imports it on first use. So the
federation file can check a strategy's or a network's name without importing
Flower's strategies, torch or MONAI (``flowerbed.catalogue`` holds every
built-in), and nothing registers itself as a side effect of being imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from flowerbed.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> implementation table for one kind of thing (e.g. "model")."""

    def __init__(self, kind: str, entries: Mapping[str, str]) -> None:
        self.kind = kind
        self._entries = dict(entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def check(self, name: str) -> str:
        """Return ``name`` if known; raise ValueError naming the choices otherwise."""
        if name not in self._entries:
            raise ValueError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            )
        return name

    def get(self, name: str) -> T:
        """The entry called ``name``, imported now; ``ConfigError`` listing the choices if
        there is none."""
        try:
            module, _, attribute = self._entries[self.check(name)].partition(":")
        except ValueError as err:
            raise ConfigError(str(err)) from None
        entry: Any = getattr(importlib.import_module(module), attribute)
        return entry

    def choices(self) -> str:
        """The names as a help text lists them: ``a | b | c``."""
        return " | ".join(self.names())
