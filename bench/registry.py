"""A name -> object registry that refuses duplicates and answers unknown names with the closest match."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from bench.errors import UserError

T = TypeVar("T")


def unknown_name(kind: str, name: str, known: Sequence[str]) -> UserError:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return UserError(f"Unknown {kind} {name!r}{hint}: choose one of {', '.join(known)}.")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return decorate

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str, also: Sequence[str] = ()) -> T:
        """The item registered as name; `also` lists further accepted forms for the error message."""
        if name not in self._items:
            raise unknown_name(self.kind, name, [*self.names(), *also])
        return self._items[name]
