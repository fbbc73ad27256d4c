"""The report's words: the verdict sentences, the findings of each setting, what holds across settings, and the
number formats that every sentence and shown table uses (percent, points, p-values, label counts). Pure
functions from bench.analysis.record' numbers to text; nothing here writes a file or draws.
"""

from __future__ import annotations

import pandas as pd

from bench.analysis import across, paired, penalty, planning, savings, verdicts
from bench.analysis.design import margin_text
from bench.analysis.record import AT_CHANCE, Analysis, dataset_rows

DASH = "–"  # shown for a value that does not exist (too few seeds, not reached)


# ---------------------------------------------------------------- verdicts


def verdict_sentence(row: pd.Series, result: Analysis, where: bool = False, bold: bool = False) -> str:
    """'a vs b: -2.1 AULC points (95% CI ...), Holm p = ..., 5 seeds: b better' and its kin, from a verdict row."""
    a, b = (f"**{row['strategy']}**" if bold else row["strategy"]), row["other"]
    head = f"{a} vs {b}" + (f" on {row['dataset']}" if where else "")
    n = int(row["n_pairs"])
    if n < 2:
        return f"{head}: fewer than 2 paired seeds with complete curves, not tested yet"
    sequential = result.plan is not None and row["family"] == verdicts.PRIMARY
    level = confidence(row["level"])
    if sequential:
        interval = f"repeated {level} CI {points(row['ci_low'])} to {points(row['ci_high'])}"
        tested = (f"decided at {int(row['look'])} seeds" if row["verdict"] != verdicts.UNDECIDED
                  else count(n, "seed"))
    else:
        adjusted = "95%" if level == "95%" else f"Holm-adjusted {level}"
        interval = f"{adjusted} CI {points(row['ci_low'])} to {points(row['ci_high'])}"
        tested = f"Holm {_p_is(row['p_holm'])}, {count(n, 'seed')}"
    text = f"{head}: {points(row['mean_diff'])} AULC points ({interval}), {tested}: "
    return text + _outcome(row, result, sequential)


def _outcome(row: pd.Series, result: Analysis, sequential: bool) -> str:
    margin = f"{100 * result.margin:g}"
    verdict = row["verdict"]
    if verdict == verdicts.BETTER:
        return f"{row['strategy']} better"
    if verdict == verdicts.WORSE:
        return f"{row['other']} better"
    if verdict == verdicts.EQUIVALENT:
        return f"equivalent within ±{margin} point{'s' if margin != '1' else ''}"
    if row["note"] == AT_CHANCE:  # alike because neither learned: no interval says anything of the strategies
        return ("undecided: the protocol cannot tell, as the models barely beat chance at every budget (see the "
                "caution)")
    if not dataset_rows(result.near_chance, row["dataset"]).empty:  # more seeds would not answer the question
        return "undecided (more seeds would measure the protocol, which barely beats chance; see the caution)"
    if sequential:
        plan = result.plan
        if result.history and result.history[-1]["seeds"] == plan.looks[-1]:
            # A larger maximum chosen after this look would change the level of the looks already taken.
            return (f"undecided at --max-seeds {plan.looks[-1]}, the design's last look: report it as undecided "
                    "(a larger maximum chosen now would look at the same seeds again and void the design's error "
                    "bound, in this folder or a new one)")
        return "undecided so far; run the same command to go on"
    needed = row["seeds_needed"]
    more = (f"about {int(needed)} seeds would tell a {margin}-point difference from none at this spread"
            if pd.notna(needed) else f"the spread asks more than {planning.MAX_PLANNED_SEEDS} seeds"
            if pd.notna(row["sd_diff"]) and row["sd_diff"] > 0 else "no spread to plan from")
    return f"undecided ({more}; --seeds auto runs seeds until it is decided)"


def confidence(level: float) -> str:
    """The two-sided confidence of an interval at `level`: '95%', '98.33%'."""
    return f"{round(100 * (1 - level), 2):g}%"


def design_text(result: Analysis, primary: pd.DataFrame, against: bool, unit: str) -> str:
    k, n = len(primary), primary["dataset"].nunique()
    compared = count(k, "comparison") + (f" over {n} {unit}s" if n > 1 else "")
    family = (f"each strategy against {result.baseline} ({compared}" if against else
              f"every pair of the strategies run, since `{result.baseline}` is not in this run ({compared}; add "
              f"{result.baseline} to compare against random sampling")
    family += ")"
    margin = f"±{margin_text(result.margin)}"
    rule = (f"better or worse when its interval excludes 0, equivalent when it lies within {margin} "
            "(two one-sided tests), undecided otherwise")
    if result.plan is None:
        return (f"Primary family: {family}. The normalised AULC per seed, paired by seed, two-sided paired t-test, "
                f"Holm over the family. Each verdict is read from the interval at the level Holm tests it at: "
                f"{rule}.")
    plan = result.plan
    return (f"Primary family: {family}. Seeds ran in rounds (`--seeds auto`, looks at "
            f"{', '.join(map(str, plan.looks))} seeds): a {verdicts.SEQUENTIAL_METHOD} (Pocock 1977; Jennison & "
            f"Turnbull 1989), nominal level {plan.nominal:.4f} at every look, so that the family's error is "
            f"at most {plan.alpha:g} over every comparison and every look. A comparison is decided at the first look "
            f"whose repeated interval says so: {rule}. {verdicts.stop_reason(result.history, plan).capitalize()}.")


def secondary_sentence(comparisons: pd.DataFrame, baseline: str, unit: str, several: bool,
                       tolerance: float = 0.0) -> str:
    """The secondary family in one sentence (tolerance: paired.compare_to_baseline's, > 0 for statistical pairing)."""
    within = f" of this {unit}" if several else ""
    secondary = comparisons[(comparisons["family"] == paired.SECONDARY) & comparisons["t_p"].notna()]
    left_out = comparisons[comparisons["family"] == paired.LEFT_OUT]
    text = (f"Secondary (exploratory): the paired t-test against {baseline} at each budget, Holm over "
            f"{count(len(secondary), 'strategy-budget pair')}{within}")
    if left_out.empty:
        return text + f"; no budget left out (every budget has some strategy that differs from {baseline})."
    labels = label_list(left_out.groupby("cycle")["n_labeled"].mean())
    if tolerance:
        return (text + f"; budgets of {labels} labels left out because every strategy is within one test example "
                f"of {baseline} there on every seed (the same initial set and weights, up to the kernels' noise).")
    return (text + f"; budgets of {labels} labels left out because every strategy equals {baseline} there on "
            "every seed (same initial set and weights), so they cannot differ.")


# ---------------------------------------------------------------- findings in words


def findings(result: Analysis, dataset: str, cycles: pd.DataFrame, has_baseline: bool) -> list[str]:
    baseline = result.baseline
    sentences = [_design_sentence(cycles)]
    if not has_baseline:
        names = ", ".join(sorted(cycles["strategy"].unique()))
        sentences.append(f"The baseline `{baseline}` is not in this dataset's results (strategies: {names}), "
                         "so comparisons against it and labels saved are skipped; choose one of these "
                         "strategies as the baseline to get them.")
    else:
        comparisons = dataset_rows(result.comparisons, dataset)
        others = sorted(set(cycles["strategy"]) - {baseline})
        if not others:
            sentences.append(f"Only the baseline `{baseline}` was run, so there is nothing to compare.")
        for strategy in others:
            sentences += _strategy_sentences(comparisons, cycles, strategy, baseline)
        sentences += savings_sentences(dataset_rows(result.savings, dataset), baseline)
    sentences.append(_aulc_sentence(dataset_rows(result.aulc_summary, dataset),
                                    dataset_rows(result.aulc_seeds, dataset)))
    if dataset in result.penalties:
        ranking = penalty.penalty_ranking(result.penalties[dataset]).dropna()
        order = ", ".join(f"{name} {value:.2f}" for name, value in ranking.items())
        sentences.append(f"Penalty-matrix column sums (how often a strategy is significantly beaten, summed "
                         f"shares of BADGE checkpoints; lower is better): {order}.")
    elif cycles["strategy"].nunique() > 1:
        sentences.append("No penalty matrix: no BADGE checkpoint (random already within 0.99 of its final "
                         "mean accuracy at the initial size).")
    return sentences


def _design_sentence(cycles: pd.DataFrame) -> str:
    seeds = cycles.groupby("strategy")["seed"].nunique()
    if seeds.nunique() == 1:
        per = f"{count(int(seeds.iloc[0]), 'seed')} each"
    else:
        per = "seeds: " + ", ".join(f"{name} {int(n)}" for name, n in seeds.items())
    labels = cycles["n_labeled"]
    return (f"{count(len(seeds), 'strategy', 'strategies')} ({per}); "
            f"{count(cycles['cycle'].nunique(), 'cycle')} from "
            f"{labels.min():,.0f} to {labels.max():,.0f} labeled examples.")


def _strategy_sentences(
    comparisons: pd.DataFrame, cycles: pd.DataFrame, strategy: str, baseline: str
) -> list[str]:
    rows = comparisons[comparisons["strategy"] == strategy]
    per_cycle = rows[rows["metric"] == "test_acc"]
    sentences = _pairing_sentences(cycles, strategy, baseline)
    tested = per_cycle[(per_cycle["family"] == paired.SECONDARY) & per_cycle["t_p"].notna()]
    if tested.empty:
        return sentences + [f"**{strategy}** cannot be tested against {baseline} at any budget: fewer than 2 "
                            "paired seeds, or no budget where some strategy differs."]
    better = tested[tested["significant"] & (tested["mean_diff"] > 0)]
    worse = tested[tested["significant"] & (tested["mean_diff"] < 0)]
    text = f"**{strategy}** beats {baseline} at {len(better)} of {count(len(tested), 'tested budget')}"
    text += " in the secondary, exploratory family (Holm over strategy-budget pairs)"
    where = [f"better at {label_list(better['n_labeled'])} labels"] if len(better) else []
    if len(worse):
        text += f" and is worse at {len(worse)}"
        where.append(f"worse at {label_list(worse['n_labeled'])} labels")
    sentences.append(f"{text} ({'; '.join([*where, _pairs_text(tested['n_pairs'])])}).")
    return sentences


def _pairing_sentences(cycles: pd.DataFrame, strategy: str, baseline: str) -> list[str]:
    mine = set(cycles.loc[cycles["strategy"] == strategy, "seed"])
    theirs = set(cycles.loc[cycles["strategy"] == baseline, "seed"])
    common = len(mine & theirs)
    sentences = []
    for who, lacking in ((strategy, theirs - mine), (baseline, mine - theirs)):
        if lacking:
            sentences.append(f"{who} has no results for {count(len(lacking), 'seed', show=False)} "
                             f"{_int_list(lacking)}, so {strategy} and {baseline} are compared on the "
                             f"{count(common, 'seed')} both have.")
    return sentences


def savings_sentences(saved: pd.DataFrame, baseline: str) -> list[str]:
    """One sentence per row of savings.labels_saved's summary: the mean labels saved per seed with its interval,
    and the censored seeds, counted and bounded, never filled in."""
    return [_savings_sentence(row, baseline) for row in saved.itertuples(index=False)]


def savings_target(target: str, baseline: str) -> str:
    """'random's final accuracy at each seed' or '95% test accuracy'."""
    return f"{baseline}'s final accuracy at each seed" if target == savings.FINAL else f"{target} test accuracy"


def _savings_sentence(row: object, baseline: str) -> str:
    head = f"{row.strategy} against {baseline}, labels to reach {savings_target(row.target, baseline)}"
    if row.n_paired == 0:
        return (f"{head}: no seed where both curves reach it ({_censored_text(row, baseline)}), so no saving can be "
                "computed.")
    mean, word = row.mean_saving, "fewer" if row.mean_saving >= 0 else "more"
    interval = (f"95% CI {signed_labels(row.ci_low)} to {signed_labels(row.ci_high)}" if pd.notna(row.ci_low)
                else "no interval from 1 seed")
    text = (f"{head}: {signed_labels(mean)} labels saved, mean over {count(row.n_paired, 'paired seed')} ({interval}; "
            f"{baseline} needs {labels(row.mean_baseline_labels)} on average, so {abs(row.percent_saved):.0f}% {word})")
    censored = row.n_censored + row.n_baseline_censored + row.n_neither
    if not censored:
        return text + "."
    return f"{text}; {_censored_text(row, baseline)}, and the interval leaves those seeds out."


def _censored_text(row: object, baseline: str) -> str:
    """The censored seeds of a savings row: who never reaches the target, at how many seeds, and what that bounds."""
    parts = []
    if row.n_censored:
        parts.append(f"{row.strategy} never reaches it within {labels(row.max_labels)} labels at "
                     f"{count(row.n_censored, 'seed')} (censored: a saving below {signed_labels(row.censored_bound)} "
                     f"there, so leaving them out favours {row.strategy})")
    if row.n_baseline_censored:
        parts.append(f"{baseline} alone never reaches it at {count(row.n_baseline_censored, 'seed')} (censored: "
                     f"{row.strategy} saves more there than its curve shows, so leaving them out disfavours it)")
    if row.n_neither:
        parts.append(f"neither reaches it at {count(row.n_neither, 'seed')}")
    return "; ".join(parts)


def savings_caption(baseline: str, per_seed: str) -> str:
    """The labels-saved table's caption; per_seed: the file of every seed's values."""
    return (f"Labels {baseline} needs minus the labels the strategy needs to reach the target, per seed on the "
            "seed's own curve (first crossing, linear between budgets), paired by seed; mean and 95% t-interval over "
            "the seeds where both curves reach it. A curve that never reaches it is censored and left out of the "
            f"interval, counted in its column (per seed: `{per_seed}`). Beside the verdicts, not one of them.")


COST_CAPTION = (
    "Measured in the worker on the run's machine, under its load: selection seconds per selecting cycle (the scoring "
    "pass and the pick), training seconds per cycle and per job, and the selection's peak memory (MiB): the "
    "process's peak during the selection (rss: the resident-set high-water mark, reset before it; rss-lifetime: the "
    "process's lifetime peak, an upper bound; cuda: the device's allocated peak) and its rise above the level at the "
    "selection's start (max over cycles). n/a: rows written before the column existed. These numbers depend on the "
    "hardware and never enter a verdict.")


def signed_labels(n: float) -> str:
    """'+41', '-1,200' labels; a dash for a value that does not exist."""
    return DASH if pd.isna(n) else f"{n:+,.0f}"


def _aulc_sentence(aulc_summary: pd.DataFrame, aulc_seeds: pd.DataFrame) -> str:
    incomplete = int((~aulc_seeds["complete"].astype(bool)).sum())
    skipped = f" ({count(incomplete, 'incomplete curve')} left out)" if incomplete else ""
    if aulc_summary.empty:
        return f"No strategy has a complete learning curve, so there is no AULC{skipped}."
    best_first = aulc_summary.sort_values("mean", ascending=False)
    order = ", ".join(f"{r.strategy} {percent(r.mean)}%" for r in best_first.itertuples(index=False))
    return f"Mean AULC, best first: {order}{skipped}."


# ---------------------------------------------------------------- across settings


def rank_test_sentence(test: across.RankTest | None, unit: str) -> str:
    if test is None:
        return (f"No rank test: Friedman's test needs at least 3 strategies run in at least 2 {unit}s.")
    k, cd = len(test.strategies), test.critical_difference
    text = (f"Friedman's test of equal mean ranks over {test.n_settings} {unit}s and {k} strategies: chi-square "
            f"{test.statistic:.2f}, {_p_is(test.p)}. Nemenyi critical difference at alpha 0.05: {cd:.2f} ranks")
    if cd >= k - 1:
        return (text + f", more than the largest possible difference ({k - 1}), so with {test.n_settings} "
                f"{unit}s no pair of strategies can be told apart by rank: add {unit}s for a verdict.")
    ranks = test.mean_ranks
    apart = [f"{a} ahead of {b}" for a in ranks for b in ranks if ranks[b] - ranks[a] > cd]
    return text + (f"; pairs further apart than that: {', '.join(apart)}." if apart else
                   "; no pair of strategies is further apart than that.")


def wins_sentence(wins: pd.DataFrame, n: int, unit: str) -> str:
    parts = [f"{r.strategy} {r.wins}/{r.ties}/{r.losses}" + (f" ({r.untested} untested)" if r.untested else "")
             for r in wins.itertuples(index=False)]
    return (f"Wins/ties/losses against {wins['baseline'].iloc[0]} over the {n} {unit}s (primary endpoint, "
            f"Holm over every strategy and {unit}): {', '.join(parts)}.")


def chance_sentence(near: pd.DataFrame, n_cycles: int) -> str:
    """What curves.near_chance found on one dataset, and what to do about it ('' when nothing)."""
    if near.empty:
        return ""
    share = "every budget" if len(near) == n_cycles else f"{len(near)} of the {n_cycles} budgets"
    accuracies, chance = ", ".join(f"{percent(m)}%" for m in near["mean"]), percent(near["chance"].iloc[0])
    return (f"At {label_list(near['n_labeled'])} labels ({share}) the models barely beat guessing: mean test "
            f"accuracy {accuracies} over every strategy and seed, against {chance}% by chance. The AULC there "
            "measures an undertrained protocol, not the strategies: train longer (--epochs) or start from more labels "
            "(--initial) before reading these verdicts")


# ---------------------------------------------------------------- counts, lists and number formats


def count(n: int, word: str, plural: str | None = None, show: bool = True) -> str:
    """'1 seed', '3 seeds' (or just the word with show=False)."""
    text = word if n == 1 else plural or f"{word}s"
    return f"{n} {text}" if show else text


def label_list(labels: pd.Series) -> str:
    return ", ".join(f"{value:,.0f}" for value in sorted(labels))


def _int_list(values: set[int]) -> str:
    return ", ".join(str(v) for v in sorted(values))


def _pairs_text(n_pairs: pd.Series) -> str:
    low, high = int(n_pairs.min()), int(n_pairs.max())
    return f"{high} paired seeds" if low == high else f"{low} to {high} paired seeds"


def percent(x: float) -> str:
    return DASH if pd.isna(x) else f"{100 * x:.1f}"


def points(x: float) -> str:
    return DASH if pd.isna(x) else f"{100 * x:+.1f}"


def pvalue(p: float) -> str:
    if pd.isna(p):
        return DASH
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _p_is(p: float) -> str:
    """'p = 0.012' or 'p < 0.001' for a sentence."""
    text = pvalue(p)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def labels(n: float) -> str:
    return DASH if pd.isna(n) else f"{n:,.0f}"


def mean_pm(mean: float, low: float, high: float) -> str:
    if pd.isna(low):
        return percent(mean)
    return f"{percent(mean)} ± {100 * (high - low) / 2:.1f}"
