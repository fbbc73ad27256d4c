"""What --seeds auto costs and buys: expected seeds and the rate of each verdict at true AULC differences of 0,
margin/2, margin and 2 x margin, beside the fixed number of seeds that decides as often. Simulation only (paired
AULC differences drawn normal with the given spread), no training.

    python -m perf.sequential [--sd 1.2] [--margin 1] [--max-seeds 30] [--sequences 4000]

Writes results/sequential-design.csv and prints a Markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from bench.analysis import verdicts
from bench.report.tables import markdown_table

FIXED_GRID = range(3, 201)


def true_verdicts(difference: float, margin: float) -> set[str]:
    """The verdicts that are true statements at this true difference."""
    true = {verdicts.BETTER} if difference > 0 else {verdicts.WORSE} if difference < 0 else set()
    return true | ({verdicts.EQUIVALENT} if abs(difference) < margin else set())


def auto_design(difference: float, sd: float, plan: verdicts.SequentialPlan, sequences: int,
                rng: np.random.Generator) -> dict[str, float]:
    outcomes, seeds = [], []
    for _ in range(sequences):
        diff = rng.normal(difference, sd, plan.looks[-1])
        state, _ = verdicts.run_looks({("d", "a", "b"): diff}, plan)
        found = state[("d", "a", "b")]
        outcomes.append(found["verdict"])
        seeds.append(found["look"])
    outcomes = np.array(outcomes)
    return {"seeds": float(np.mean(seeds)), **{v: float(np.mean(outcomes == v)) for v in
                                                (verdicts.BETTER, verdicts.WORSE, verdicts.EQUIVALENT,
                                                 verdicts.UNDECIDED)}}


def fixed_correct(difference: float, sd: float, n: int, margin: float, sequences: int,
                  rng: np.random.Generator) -> float:
    """P(a true verdict) with n seeds and one 95% t-interval (one comparison: Holm is the plain test)."""
    mean = rng.normal(difference, sd / np.sqrt(n), sequences)
    s = sd * np.sqrt(rng.chisquare(n - 1, sequences) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * s / np.sqrt(n)
    low, high = mean - half, mean + half
    verdict = np.where(low > 0, verdicts.BETTER, np.where(high < 0, verdicts.WORSE, np.where(
        (low > -margin) & (high < margin), verdicts.EQUIVALENT, verdicts.UNDECIDED)))
    return float(np.isin(verdict, list(true_verdicts(difference, margin))).mean())


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sd", type=float, default=1.2, help="sd of the paired AULC differences, points")
    parser.add_argument("--margin", type=float, default=1.0, help="equivalence margin, points")
    parser.add_argument("--max-seeds", type=int, default=verdicts.MAX_SEEDS)
    parser.add_argument("--sequences", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=Path("results") / "sequential-design.csv")
    args = parser.parse_args(argv)
    sd, margin = args.sd / 100, args.margin / 100
    plan = verdicts.make_plan(args.max_seeds, 1, margin=margin)
    rng = np.random.default_rng(2026)
    rows = []
    for share in (0.0, 0.5, 1.0, 2.0):
        difference = share * margin
        auto = auto_design(difference, sd, plan, args.sequences, rng)
        correct = sum(auto[v] for v in true_verdicts(difference, margin))
        fixed = None if correct == 0 else next(  # nothing to match when auto never decides truly
            (n for n in FIXED_GRID if fixed_correct(difference, sd, n, margin, args.sequences, rng) >= correct), None)
        rows.append({"true difference (pts)": 100 * difference, "auto: mean seeds": auto["seeds"],
                     "auto: better": auto["better"], "auto: equivalent": auto["equivalent"],
                     "auto: worse": auto["worse"], "auto: undecided": auto["undecided"],
                     "auto: a true verdict": correct, "fixed seeds deciding as often": fixed})
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(f"sd of the paired AULC differences {args.sd} points, margin ±{args.margin} point, looks "
          f"{', '.join(map(str, plan.looks))}, nominal level {plan.nominal:.4f} per look, {args.sequences} sequences "
          "per row")
    shown = table.copy()
    shown["fixed seeds deciding as often"] = [
        "–" if c == 0 else f">{FIXED_GRID[-1]}" if n is None or pd.isna(n) else str(int(n))
        for n, c in zip(table["fixed seeds deciding as often"], table["auto: a true verdict"], strict=True)]
    for column in shown.columns[:-1]:
        shown[column] = [f"{v:.2f}" for v in table[column]]
    print(markdown_table(shown))
    return table


if __name__ == "__main__":
    main()
