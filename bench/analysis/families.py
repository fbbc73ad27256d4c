"""Which comparisons a command asks: the one definition that the report, the rounds of --seeds auto and the
console's compare line share. Plain Python (no statistics): a dry run names the comparisons without scipy."""

from __future__ import annotations

import itertools
from collections.abc import Sequence


def comparison_pairs(strategies: Sequence[str], baseline: str) -> list[tuple[str, str]]:
    """The comparisons among `strategies`: (strategy, baseline) for each other strategy when the baseline is
    present, else every pair of strategies, (a, b) with a named before b. In the order given (the order the user
    named them), so that `--strategies ll entropy` is answered as "learning-loss vs entropy"."""
    names = list(dict.fromkeys(strategies))
    if baseline in names:
        return [(s, baseline) for s in names if s != baseline]
    return list(itertools.combinations(names, 2))


# The verdicts' families (bench.analysis.verdicts): the command's question; the rest of a folder's strategies beside it;
# every pair beside a question against the baseline.
PRIMARY, CONTEXT, ALL_PAIRS = "primary", "context", "all pairs"


def question(named: Sequence[str], recorded: Sequence[str] = ()) -> tuple[str, ...]:
    """The strategies whose comparisons a command asks, in the order typed. A command that names one strategy
    asks no comparison of its own: the folder's recorded question stands (empty: every strategy it holds)."""
    names = tuple(dict.fromkeys(named))
    return names if len(names) > 1 else tuple(dict.fromkeys(recorded))


def families(asked: Sequence[str], held: Sequence[str], baseline: str) -> dict[str, list[tuple[str, str]]]:
    """The one definition of which comparisons a report, the rounds of --seeds auto and the console's compare
    line answer. asked: question()'s strategies (empty: every one held); held: the strategies the folder holds.

    primary: comparison_pairs of the strategies asked, in the order typed; its size sets the correction (and
    --seeds auto's nominal level). context: where the folder holds strategies the command did not ask about,
    every other pair of the folder's strategies, a family of its own. all pairs: where the command asked about
    every strategy held, against a baseline among 3 or more, every pair as a family of its own. A pair reads
    in the order typed, then the folder's order, the baseline always second."""
    names = list(dict.fromkeys([*asked, *held]))
    ask = list(dict.fromkeys(asked)) if len(set(asked)) > 1 else names
    found = {PRIMARY: comparison_pairs(ask, baseline)}
    every = [(b, a) if a == baseline else (a, b) for a, b in itertools.combinations(names, 2)]
    if set(names) - set(ask):
        asked_pairs = {frozenset(pair) for pair in found[PRIMARY]}
        found[CONTEXT] = [pair for pair in every if frozenset(pair) not in asked_pairs]
    elif baseline in names and len(names) > 2:
        found[ALL_PAIRS] = every
    return found
