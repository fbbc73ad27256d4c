"""`--vary FIELD=A,B ...`: a grid of protocol settings, the product of each field's values, read from the command
line's words. A field is named as its flag (`initial`, `budget`, `batch-size`, `start` for --warm-start/--cold-start);
what each name means and how its values parse comes from the command line's parser (bench/cli.py), so this module
only checks the shape and builds the settings. Without torch: the refusals are made before the harness loads.
"""

from __future__ import annotations

import argparse
import itertools
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from bench.core.config import Protocol
from bench.core.errors import UserError
from bench.core.registry import unknown_name

MAX_SETTINGS = 64  # settings in one grid: each is a whole run (strategies x seeds jobs)

# name -> (the Protocol field it sets, the parser of one value's text)
Fields = Mapping[str, tuple[str, Callable[[str], Any]]]


@dataclass(frozen=True)
class Setting:
    """One point of the grid: the protocol fields it sets and its folder's name."""

    slug: str  # the setting's folder under the grid's parent: "initial-30_budget-10"
    protocol: dict[str, Any]  # Protocol field -> value
    labels: dict[str, str]  # name as typed -> value as typed (for tables and sentences)


@dataclass(frozen=True)
class Grid:
    """The fields varied, in the order typed, and their values; the settings are their product."""

    names: tuple[str, ...]  # as typed: initial, budget, start, ...
    fields: tuple[str, ...]  # the Protocol field each name sets
    values: tuple[tuple[Any, ...], ...]  # each field's parsed values
    texts: tuple[tuple[str, ...], ...]  # each field's values as typed

    def settings(self) -> list[Setting]:
        """Every combination, the last field varying fastest."""
        found = []
        for combo in itertools.product(*(range(len(v)) for v in self.values)):
            labels = {name: self.texts[i][j] for i, (name, j) in enumerate(zip(self.names, combo, strict=True))}
            found.append(Setting(slug="_".join(f"{name}-{_slug(text)}" for name, text in labels.items()),
                                 protocol={self.fields[i]: self.values[i][j] for i, j in enumerate(combo)},
                                 labels=labels))
        return found

    def to_json(self) -> dict[str, Any]:
        return {"fields": {name: list(texts) for name, texts in zip(self.names, self.texts, strict=True)},
                "settings": [s.slug for s in self.settings()]}

    def describe(self) -> str:
        """'initial 30, 100 x budget 10, 30'."""
        return " x ".join(f"{name} {', '.join(texts)}" for name, texts in zip(self.names, self.texts, strict=True))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-.") or "x"


def parse_vary(items: list[str], fields: Fields, given: Collection[str] = ()) -> Grid:
    """The grid of `--vary` words (['initial=30,100', 'budget=10,30']); fields: the names a grid may vary;
    given: the Protocol fields also set by their own flags (refused: a field is varied or given, not both)."""
    names, targets, values, texts = [], [], [], []
    for item in items:
        name, sep, rest = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UserError(f"--vary {item!r} must read FIELD=VALUE,VALUE,... (e.g. initial=30,100).")
        if name not in fields:
            raise UserError(f"--vary {item!r}: {unknown_name('field', name, sorted(fields))}")
        field, parse = fields[name]
        if field in targets:
            raise UserError(f"--vary names {name!r} twice (or two names of one field): give each field once, with "
                            "all its values.")
        if field in given:
            raise UserError(f"--vary {item} and its own flag both set {name!r}: give it once, either varied or as "
                            "its flag.")
        words = [w.strip() for w in rest.split(",")]
        if any(not w for w in words):
            raise UserError(f"--vary {item!r} has an empty value: list the values with commas, e.g. {name}=30,100.")
        if len(words) < 2:
            raise UserError(f"--vary {item} gives {name!r} one value, which varies nothing: give two values or more, "
                            f"or set it with its own flag.")
        parsed = []
        for word in words:
            try:
                parsed.append(parse(word))
            except (ValueError, TypeError, argparse.ArgumentTypeError, UserError) as err:
                raise UserError(f"--vary {item}: {name} {word!r} is not a value it takes ({err}).") from None
        if len({repr(v) for v in parsed}) < len(parsed) or len({_slug(w) for w in words}) < len(words):
            raise UserError(f"--vary {item} gives {name!r} the same value twice: list each value once.")
        names.append(name)
        targets.append(field)
        values.append(tuple(parsed))
        texts.append(tuple(words))
    if not names:
        raise UserError("--vary needs at least one FIELD=VALUE,VALUE (e.g. initial=30,100).")
    grid = Grid(tuple(names), tuple(targets), tuple(values), tuple(texts))
    size = 1
    for v in values:
        size *= len(v)
    if size > MAX_SETTINGS:
        raise UserError(f"--vary {' '.join(items)} makes {size} settings, more than {MAX_SETTINGS}: each setting is "
                        "a whole run; vary fewer fields or values.")
    return grid


# --vary's names for the protocol's switches, which have a flag per value rather than a flag with values
SWITCHES = {"start": ("warm_start", {"warm": True, "cold": False}), "augment": ("augment", {"on": True, "off": False}),
            "deterministic": ("deterministic", {"on": True, "off": False})}


def vary_fields(parser: argparse.ArgumentParser) -> Fields:
    """--vary's fields: every protocol flag that takes a value, by its name without the dashes, parsed as the flag
    parses it (milestones: epochs joined by '+', e.g. 0.5+0.75); the switches by SWITCHES' names."""
    def switch(field: str, words: dict[str, bool]):
        def parse(word: str) -> bool:
            if word not in words:
                raise ValueError(f"choose {' or '.join(words)}")
            return words[word]
        return field, parse

    def flag(action: argparse.Action):
        def parse(word: str) -> object:
            one = action.type or str
            value = tuple(one(w) for w in word.split("+") if w) if action.nargs == "*" else one(word)
            if action.choices is not None and value not in action.choices:
                raise ValueError(f"choose one of {', '.join(map(str, action.choices))}")
            return value
        return action.dest, parse

    fields = {name: switch(field, words) for name, (field, words) in SWITCHES.items()}
    for action in parser._actions:
        if action.dest in Protocol.__dataclass_fields__ and action.nargs != 0 and action.option_strings:
            fields[action.option_strings[0].removeprefix("--")] = flag(action)
    return fields
