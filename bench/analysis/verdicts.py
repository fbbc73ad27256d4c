"""Verdicts on the primary endpoint. Each comparison of two strategies' AULC, paired by seed, ends in one of
four words: better, worse, equivalent within +-margin, or undecided (with the interval and the seeds needed).

Which comparisons: with the baseline in the run, each strategy against it (the primary family), and every pair
of strategies as a family of its own; without the baseline, every pair is the primary family
(bench.analysis.families.comparison_pairs, which the dry run imports without the statistics).

Every verdict is read from one interval, so a sentence never contradicts itself: better when the interval lies
above 0, worse when below, equivalent when it lies inside (-margin, +margin), undecided otherwise. The interval
is the one the family's correction implies:

- Fixed seeds (`--seeds N`): Holm over the family. A comparison rejected at Holm's step j (0-based, of m) was
  tested at level alpha / (m - j); the first one Holm keeps, and all after it, at alpha / (m - r) with r the
  number rejected. The t-interval at that level excludes 0 exactly when Holm rejects, and lies inside
  +-margin exactly when the two one-sided tests (TOST) at half that level both reject.
- Seeds in rounds (`--seeds auto`): a group-sequential design with Pocock's boundary (Pocock 1977, Biometrika
  64:191: the same nominal significance level at every look) on the paired t-test, read as repeated confidence
  intervals (Jennison & Turnbull 1989, JRSS-B 51:305): at the look with n seeds the interval is the t-interval
  at the nominal level a (n - 1 degrees of freedom), with a such that every interval of the family covers its
  true difference at every look with probability 1 - alpha (Bonferroni over the family's comparisons). The t
  statistics' joint law across looks does not depend on the spread, so a is calibrated once by simulation for
  the planned looks. A comparison is decided at the first look whose interval decides it, and keeps it.

Pure functions on DataFrames, as bench.analysis.curves: AULCs are fractions (0.01 = 1 point).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import special

from bench.analysis.curves import t_quantile, t_test_p
from bench.analysis.families import ALL_PAIRS, CONTEXT, PRIMARY
from bench.analysis.paired import ALPHA, EQUAL_ATOL, holm, paired_t_p
from bench.analysis.planning import POWER, seeds_needed
from bench.core.config import FIRST_LOOK, MARGIN, MAX_SEEDS_AUTO

BETTER, WORSE, EQUIVALENT, UNDECIDED = "better", "worse", "equivalent", "undecided"
FAMILIES = (PRIMARY, CONTEXT, ALL_PAIRS)  # bench.analysis.families.families
MAX_SEEDS = MAX_SEEDS_AUTO
CALIBRATION_SIMULATIONS = 200_000  # sequences drawn to calibrate the boundary
CALIBRATION_SEED = 1977  # the calibration's own fixed stream: the same boundary in every run and report
SEQUENTIAL_METHOD = ("group-sequential design, Pocock's boundary (one nominal level at every look) on the paired "
                     "t-test, repeated confidence intervals, Bonferroni over the family")

VERDICT_COLUMNS = ["dataset", "family", "strategy", "other", "n_pairs", "mean_diff", "sd_diff", "t_p", "p_holm",
                   "level", "ci_low", "ci_high", "tost_p", "verdict", "seeds_needed", "look", "note"]


# ---------------------------------------------------------------- the verdict of an interval


def decide(low: float, high: float, margin: float) -> str:
    """The verdict an interval of (strategy minus other) gives."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return UNDECIDED
    if low > 0:
        return BETTER
    if high < 0:
        return WORSE
    if -margin < low and high < margin:
        return EQUIVALENT
    return UNDECIDED


def plan_looks(max_seeds: int, first: int = FIRST_LOOK) -> tuple[int, ...]:
    """The seeds at each look of --seeds auto: 5, 10, 15, 20, then every 10, ending at max_seeds."""
    looks = [n for n in (*range(first, 20, 5), *range(20, max_seeds, 10)) if n < max_seeds]
    return (*looks, max_seeds)


# ---------------------------------------------------------------- fixed seeds: Holm


def holm_levels(pvalues: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """The level each test of a Holm family is decided at: alpha / (m - j) for the one rejected at step j, and
    alpha / (m - r) for the first one kept and every one after it (r rejected). NaN p: not in the family."""
    p = np.asarray(pvalues, dtype=float)
    levels = np.full(p.shape, math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    m = tested.size
    order = tested[np.argsort(p[tested], kind="stable")]
    for j, i in enumerate(order):
        level = alpha / (m - j)
        if p[i] >= level:  # Holm stops here: this one and all after it are kept at this level
            levels[order[j:]] = level
            break
        levels[i] = level
    return levels


def t_half_width(sd: float, n: int, level: float) -> float:
    """Half-width of the two-sided (1 - level) t-interval of a mean of n values with spread sd."""
    return t_quantile(1 - level / 2, n - 1) * sd / math.sqrt(n)


def tost_p(diff: np.ndarray, margin: float) -> float:
    """The two one-sided tests of |mean| >= margin: the larger of the two one-sided t-test p-values."""
    if diff.size < 2:
        return math.nan
    if np.ptp(diff) <= EQUAL_ATOL:  # no spread: the monotone rule of bench.analysis.curves
        return 0.0 if abs(diff[0]) < margin else 1.0
    return max(t_test_p(diff, -margin, "greater"), t_test_p(diff, margin, "less"))


def aulc_table(aulc_seeds: pd.DataFrame) -> pd.DataFrame:
    """One dataset's AULCs of complete curves (stats.aulc_per_seed rows) as [seeds, strategies], in seed order;
    NaN where a seed has no complete curve of the strategy."""
    complete = aulc_seeds[aulc_seeds["complete"].astype(bool)]
    return complete.pivot(index="seed", columns="strategy", values="aulc").sort_index()


def paired_differences(table: pd.DataFrame, a: str, b: str) -> pd.Series:
    """AULC of a minus b (columns of aulc_table), indexed by the seeds both have complete curves for."""
    if a not in table or b not in table:
        return pd.Series([], dtype=float, index=pd.Index([], dtype="int64", name="seed"))
    return (table[a] - table[b]).dropna()  # [n_pairs]


def fixed_verdicts(aulc_seeds: pd.DataFrame, pairs: dict[str, list[tuple[str, str]]], family: str,
                   margin: float = MARGIN, alpha: float = ALPHA) -> pd.DataFrame:
    """One row per comparison of `pairs` ({dataset: [(strategy, other), ...]}), Holm over all of them together
    (several datasets: one family across them). The interval is at the level Holm decided it at."""
    rows = []
    for dataset, members in pairs.items():
        table = aulc_table(aulc_seeds[aulc_seeds["dataset"] == dataset])
        for a, b in members:
            diff = paired_differences(table, a, b).to_numpy(float)
            n = diff.size
            rows.append({"dataset": dataset, "family": family, "strategy": a, "other": b, "n_pairs": n,
                         "mean_diff": float(diff.mean()) if n else math.nan,
                         "sd_diff": float(diff.std(ddof=1)) if n > 1 else math.nan,
                         "t_p": paired_t_p(diff)[0], "tost_p": tost_p(diff, margin),
                         "look": math.nan, "note": "" if n > 1 else "fewer than 2 paired seeds with complete curves"})
    frame = pd.DataFrame(rows, columns=[c for c in VERDICT_COLUMNS if c not in
                                        ("p_holm", "level", "ci_low", "ci_high", "verdict", "seeds_needed")])
    frame["p_holm"] = holm(frame["t_p"].to_numpy(float)) if len(frame) else []
    frame["level"] = holm_levels(frame["t_p"].to_numpy(float), alpha) if len(frame) else []
    half = [t_half_width(sd, n, level) if n > 1 else math.nan
            for sd, n, level in zip(frame["sd_diff"], frame["n_pairs"], frame["level"], strict=True)]
    frame["ci_low"] = frame["mean_diff"] - half
    frame["ci_high"] = frame["mean_diff"] + half
    frame["verdict"] = [decide(lo, hi, margin) for lo, hi in zip(frame["ci_low"], frame["ci_high"], strict=True)]
    frame["seeds_needed"] = [_seeds_to_decide(v, sd, margin, level) for v, sd, level in
                             zip(frame["verdict"], frame["sd_diff"], frame["level"], strict=True)]
    return frame[VERDICT_COLUMNS]


def _seeds_to_decide(verdict: str, sd: float, margin: float, level: float) -> float:
    """For an undecided comparison: the seeds that tell a margin-sized difference from none with 80% power at
    the observed spread and the comparison's level (NaN: decided, no spread, or more than stats allows)."""
    if verdict != UNDECIDED or not (math.isfinite(sd) and sd > 0 and math.isfinite(level)):
        return math.nan
    return seeds_needed(margin, sd, POWER, level)


# ---------------------------------------------------------------- seeds in rounds: the sequential design


@dataclass(frozen=True)
class SequentialPlan:
    """--seeds auto: the looks, the family's size and the boundary; recorded in config.json."""

    looks: tuple[int, ...]  # seeds at each look
    comparisons: int  # primary comparisons per dataset (Bonferroni over them)
    alpha: float
    margin: float
    nominal: float  # a: every look's interval is the two-sided (1 - a) t-interval of the differences so far

    def critical(self, n: int) -> float:
        """The t quantile of the interval at a look with n seeds."""
        return t_quantile(1 - self.nominal / 2, n - 1)

    def to_json(self) -> dict:
        return {**asdict(self), "looks": list(self.looks), "method": SEQUENTIAL_METHOD}

    @classmethod
    def from_json(cls, payload: dict) -> SequentialPlan:
        """The plan a run recorded, checked: anything a run never writes raises ValueError saying what."""
        if not isinstance(payload, dict):
            raise ValueError("the plan is not a JSON object")
        looks, comparisons = payload.get("looks"), payload.get("comparisons")
        if not (isinstance(looks, list) and looks and all(_whole(n) and n >= 2 for n in looks)
                and looks == sorted(set(looks))):
            raise ValueError(f"looks must be increasing seed counts of 2 or more, got {looks!r}")
        if not (_whole(comparisons) and comparisons >= 1):
            raise ValueError(f"comparisons must be a positive integer, got {comparisons!r}")
        numbers = {key: payload.get(key) for key in ("alpha", "margin", "nominal")}
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                   for x in numbers.values()):
            raise ValueError(f"alpha, margin and nominal must be numbers, got {numbers!r}")
        plan = cls(tuple(looks), comparisons, float(numbers["alpha"]), float(numbers["margin"]),
                   float(numbers["nominal"]))
        expected = make_plan(looks[-1], comparisons, ALPHA, plan.margin) if plan.margin > 0 else None
        if expected is None or (plan.looks, plan.alpha) != (expected.looks, expected.alpha) or not math.isclose(
                plan.nominal, expected.nominal, rel_tol=1e-9):
            raise ValueError(f"the plan (looks {list(plan.looks)}, alpha {plan.alpha:g}, margin {plan.margin:g}, "
                             f"nominal level {plan.nominal:g}) is not the one --seeds auto makes for "
                             f"--max-seeds {looks[-1]} and {comparisons} comparison(s)")
        return plan


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def make_plan(max_seeds: int, comparisons: int, alpha: float = ALPHA, margin: float = MARGIN) -> SequentialPlan:
    looks = plan_looks(max_seeds)
    return SequentialPlan(looks, comparisons, alpha, margin, pocock_nominal(looks, alpha / max(comparisons, 1)))


@functools.lru_cache(maxsize=32)
def pocock_nominal(looks: tuple[int, ...], alpha: float, simulations: int = CALIBRATION_SIMULATIONS) -> float:
    """The nominal level a with P(the paired t-test's two-sided p < a at some look) = alpha, for one sequence of
    normal differences with mean 0 observed at `looks` seeds. The t statistics' joint law does not depend on the
    spread, so this simulation calibrates a for any spread; chunks keep memory flat."""
    rng = np.random.default_rng(CALIBRATION_SEED)
    minima = []
    for start in range(0, simulations, 20_000):
        z = rng.standard_normal((min(20_000, simulations - start), looks[-1]))  # [sims, n_max]
        total, squares = np.cumsum(z, axis=1), np.cumsum(z * z, axis=1)
        smallest = np.ones(z.shape[0])
        for n in looks:
            mean = total[:, n - 1] / n
            var = (squares[:, n - 1] - n * mean * mean) / (n - 1)
            p = 2 * special.stdtr(n - 1, -np.abs(mean) / np.sqrt(var / n))  # t's upper tail, as in t_test_p
            smallest = np.minimum(smallest, p)
        minima.append(smallest)
    return float(np.quantile(np.concatenate(minima), alpha))


def sequential_step(diff: np.ndarray, plan: SequentialPlan) -> tuple[float, float, str]:
    """One look at one comparison: the repeated confidence interval and its verdict."""
    n = diff.size
    if n < 2:
        return math.nan, math.nan, UNDECIDED
    mean = float(diff.mean())
    half = plan.critical(n) * float(diff.std(ddof=1)) / math.sqrt(n)
    return mean - half, mean + half, decide(mean - half, mean + half, plan.margin)


def run_looks(diffs: dict[tuple[str, str, str], np.ndarray], plan: SequentialPlan) -> tuple[dict, list[dict]]:
    """The looks over paired differences in seed order ({(dataset, strategy, other): [n_seeds]}): each
    comparison's state at the first look that decides it, or at the last look reached, and the history, one
    entry per look reached ({"seeds": n, "decided": [...], "undecided": [...]}). A look is reached when every
    comparison still undecided has n differences."""
    state: dict[tuple[str, str, str], dict] = {}
    history = []
    datasets = {key[0] for key in diffs}
    for n in plan.looks:
        open_ = [key for key in diffs if state.get(key, {}).get("verdict", UNDECIDED) == UNDECIDED]
        if not open_ or any(diffs[key].size < n for key in open_):
            break  # everything decided, or this look's seeds are not all in
        decided = []
        for key in open_:
            diff = diffs[key][:n]
            low, high, verdict = sequential_step(diff, plan)
            state[key] = {"n_pairs": n, "mean_diff": float(diff.mean()), "sd_diff": float(diff.std(ddof=1)),
                          "ci_low": low, "ci_high": high, "verdict": verdict, "look": n}
            if verdict != UNDECIDED:
                outcome = {BETTER: f"{key[1]} better", WORSE: f"{key[2]} better"}.get(verdict, verdict)
                decided.append(f"{key[1]} vs {key[2]}" + (f" on {key[0]}" if len(datasets) > 1 else "")
                               + f": {outcome}")
        still = [f"{a} vs {b}" for (d, a, b) in open_ if state[(d, a, b)]["verdict"] == UNDECIDED]
        history.append({"seeds": n, "decided": decided, "undecided": still})
    return state, history


def sequential_verdicts(aulc_seeds: pd.DataFrame, pairs: dict[str, list[tuple[str, str]]], plan: SequentialPlan,
                        ) -> tuple[pd.DataFrame, list[dict]]:
    """run_looks on the stored AULCs (seeds 0, 1, 2, ... with complete curves on both sides, in order), as rows
    like fixed_verdicts'; a comparison no look has reached shows its seeds so far at the boundary."""
    tables = {d: aulc_table(aulc_seeds[aulc_seeds["dataset"] == d]) for d in pairs}
    diffs = {(d, a, b): _leading_differences(tables[d], a, b) for d, members in pairs.items() for a, b in members}
    state, history = run_looks(diffs, plan)
    rows = []
    for key, diff in diffs.items():
        found = state.get(key)
        if found is None:
            low, high, _ = sequential_step(diff, plan)
            found = {"n_pairs": diff.size, "mean_diff": float(diff.mean()) if diff.size else math.nan,
                     "sd_diff": float(diff.std(ddof=1)) if diff.size > 1 else math.nan, "ci_low": low,
                     "ci_high": high, "verdict": UNDECIDED, "look": math.nan}
        rows.append({"dataset": key[0], "family": PRIMARY, "strategy": key[1], "other": key[2], "t_p": math.nan,
                     "p_holm": math.nan, "level": plan.nominal, "tost_p": math.nan,
                     "seeds_needed": math.nan, "note": "", **found})
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS), history


def _leading_differences(table: pd.DataFrame, a: str, b: str) -> np.ndarray:
    """a minus b (columns of aulc_table) on seeds 0, 1, 2, ... up to the first seed either lacks: a look at n
    seeds means seeds 0..n-1."""
    diff = paired_differences(table, a, b)
    leading = int((diff.index.to_numpy() == np.arange(diff.size)).cumprod().sum())
    return diff.to_numpy(float)[:leading]


def stop_reason(history: list[dict], plan: SequentialPlan) -> str:
    """Why --seeds auto stopped (or where it stands)."""
    if history and not history[-1]["undecided"]:
        return f"every primary comparison decided after {history[-1]['seeds']} seeds"
    if history and history[-1]["seeds"] == plan.looks[-1]:
        return f"stopped at --max-seeds {plan.looks[-1]} with {len(history[-1]['undecided'])} comparison(s) undecided"
    reached = history[-1]["seeds"] if history else 0
    return f"in progress: {reached} of at most {plan.looks[-1]} seeds looked at"


def strategies_to_run(verdicts: pd.DataFrame) -> list[str]:
    """The strategies of the comparisons still undecided: the only ones the next round needs."""
    open_ = verdicts[verdicts["verdict"] == UNDECIDED]
    return sorted(set(open_["strategy"]) | set(open_["other"]))
