"""One registry type for everything the harness names (datasets, models, strategies): it refuses a name or
alias twice, and answers an unknown name with the known ones and the closest match."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from bench.errors import UserError

T = TypeVar("T")


def unknown_name(kind: str, name: str, known: Sequence[str]) -> UserError:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return UserError(f"Unknown {kind} {name!r}{hint}: choose one of {', '.join(known)}.")


class Registry(Generic[T]):
    def __init__(self, kind: str, describe: Callable[[T], str] = repr) -> None:
        self.kind = kind
        self._describe = describe  # names the holder of a taken name in the refusal
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}  # alias -> name

    def add(self, name: str, item: T, aliases: Sequence[str] = ()) -> T:
        for key in (name, *aliases):
            if key in self._items or key in self._aliases:
                holder = self._describe(self._items[self.canonical(key)])
                raise UserError(f"{self.kind.capitalize()} name {key!r} is taken by {holder}; give the new "
                                f"{self.kind} another name.")
        self._items[name] = item
        self._aliases.update({alias: name for alias in aliases})
        return item

    def register(self, name: str, aliases: Sequence[str] = ()) -> Callable[[T], T]:
        """Decorator form of add()."""
        return lambda item: self.add(name, item, aliases)

    def names(self) -> list[str]:
        return sorted(self._items)

    def aliases_of(self, name: str) -> list[str]:
        return sorted(alias for alias, target in self._aliases.items() if target == name)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def canonical(self, name: str, also: Sequence[str] = ()) -> str:
        """The registered name for a name or alias; `also` lists further accepted forms for the error message."""
        if name in self._items:
            return name
        if name in self._aliases:
            return self._aliases[name]
        raise unknown_name(self.kind, name, [*self.names(), *sorted(self._aliases), *also])

    def get(self, name: str, also: Sequence[str] = ()) -> T:
        return self._items[self.canonical(name, also)]

    @contextlib.contextmanager
    def scoped(self) -> Iterator[Registry[T]]:
        """Registrations made inside the block are forgotten when it ends (tests register throwaway items)."""
        items, aliases = dict(self._items), dict(self._aliases)
        try:
            yield self
        finally:
            self._items, self._aliases = items, aliases
