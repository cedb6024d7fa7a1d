"""Pick implementations by name from one registry per kind, not through ``if`` ladders.

Strategies, networks, partitioners and dataset readers each keep one
``Registry``; a configuration names an entry and ``check`` rejects unknown
names at load time with the list of known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from flowerbed.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> implementation table for one kind of thing (e.g. "model")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: make the decorated object available under ``name``."""

        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def names(self) -> list[str]:
        return sorted(self._entries)

    def check(self, name: str) -> str:
        """Return ``name`` if known; raise ValueError naming the choices otherwise."""
        if name not in self._entries:
            raise ValueError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            )
        return name

    def get(self, name: str) -> T:
        """The entry called ``name``; ``ConfigError`` listing the choices if there is none."""
        try:
            return self._entries[self.check(name)]
        except ValueError as err:
            raise ConfigError(str(err)) from None
