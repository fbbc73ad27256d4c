"""`--seeds auto`: seeds in planned rounds into one folder, until every primary comparison is decided.

Round k runs seeds 0..n_k-1 (n_k from bench.analysis.verdicts.plan_looks: 5, 10, 15, 20, 30, ...) for the strategies of
the comparisons still undecided, then looks: bench.analysis.verdicts' group-sequential design decides what it can. The
looks are replayed from cycles.parquet each time, so a killed run, run again, resumes at the same look and
reaches the same decisions. config.json records the plan, each look and why it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

from bench.analysis import curves, paired, verdicts
from bench.analysis.families import PRIMARY, families
from bench.core.config import RunConfig
from bench.core.errors import UserError
from bench.results.identity import make_room
from bench.results.lock import FolderLock
from bench.results.store import RunStore
from bench.runner.benchmark import benchmark_round, finish
from bench.runner.resolve import RunOptions, RunResult, resolve_baseline
from bench.runner.tracking import Tracker, open_tracker


def primary_pairs(config: RunConfig, options: RunOptions) -> list[tuple[str, str]]:
    """The comparisons the rounds look at: analysis.families.families' primary family of the strategies named, the one
    the report and the console's compare line answer."""
    return families(config.strategies, config.strategies, resolve_baseline(options.baseline))[PRIMARY]


def plan_for(config: RunConfig, options: RunOptions) -> verdicts.SequentialPlan:
    pairs = primary_pairs(config, options)
    return verdicts.make_plan(options.max_seeds or verdicts.MAX_SEEDS, len(pairs), paired.ALPHA, options.margin)


def look(config: RunConfig, options: RunOptions, plan: verdicts.SequentialPlan) -> tuple[Any, list[dict]]:
    """The verdicts and looks so far, from the folder's rows of the strategies named (the folder may hold more)."""
    rows = RunStore(config.out).cycles() if config.out.exists() else None
    pairs = primary_pairs(config, options)
    if rows is None or rows.empty:
        return None, []
    rows = rows[rows["strategy"].isin(config.strategies)]
    aulc = curves.aulc_per_seed(rows)
    return verdicts.sequential_verdicts(aulc, {str(d): pairs for d in aulc["dataset"].unique()}, plan)


def analysis_record(config: RunConfig, options: RunOptions, plan: verdicts.SequentialPlan,
                    history: list[dict]) -> dict[str, Any]:
    """What config.json records of the design: the question (the strategies named, in the order typed), the plan,
    each look, and where it stands."""
    return {"baseline": resolve_baseline(options.baseline), "margin": options.margin, "design": "sequential",
            "strategies": list(config.strategies),
            "sequential": {**plan.to_json(), "max_seeds": plan.looks[-1], "history": history,
                           "stopped": verdicts.stop_reason(history, plan)}}


def check_rounds(config: RunConfig) -> None:
    """--seeds auto needs a comparison to decide: with one strategy the rounds would run to --max-seeds."""
    if len(config.strategies) < 2:
        raise UserError(f"--seeds auto runs seeds until every comparison is decided, and {config.strategies[0]!r} "
                        "alone makes none: name two strategies or more (random to compare against random sampling), "
                        "or give --seeds N.")


def benchmark_in_rounds(config: RunConfig, options: RunOptions) -> RunResult:
    """Run --seeds auto: each round the undecided comparisons' strategies at the next look's seeds."""
    check_rounds(config)
    plan = plan_for(config, options)
    print(f"rounds    --seeds auto: looks at {', '.join(map(str, plan.looks))} seeds; {verdicts.SEQUENTIAL_METHOD}, "
          f"nominal level {plan.nominal:.4f} per look over {plan.comparisons} comparison(s)", flush=True)
    tracker = open_tracker(options.track, options.tracking_uri)  # every round into the same runs
    with contextlib.ExitStack() as held:  # the folder's lock, from the first look to the report's last write
        return _rounds(config, options, plan, held, tracker)


def _rounds(config: RunConfig, options: RunOptions, plan: verdicts.SequentialPlan,
            held: contextlib.ExitStack, tracker: Tracker) -> RunResult:
    if config.out.is_dir():
        held.enter_context(FolderLock(config.out).holding())
        make_room(config.out, options.on_existing)  # --force and --fresh act once, before round 1 looks
    options = dataclasses.replace(options, on_existing="resume")  # round 2 resumes round 1, never sets it aside
    failures: list[str] = []
    first = True
    for n in plan.looks:
        found, history = look(config, options, plan)
        if history and (not history[-1]["undecided"] or history[-1]["seeds"] >= n):
            if not history[-1]["undecided"]:
                break
            continue  # this look was reached before (a resumed run): go on to the next
        active = config.strategies if found is None else tuple(
            s for s in config.strategies if s in verdicts.strategies_to_run(found))
        round_config = dataclasses.replace(config, strategies=active, seeds=tuple(range(n)))
        failures = benchmark_round(round_config, options, analysis_record(config, options, plan, history),
                                   quiet=not first, held=held, tracker=tracker)
        first = False
        if failures:  # the look cannot be reached without them
            break
        _, history = look(config, options, plan)
        _record(config, analysis_record(config, options, plan, history))  # before the next round: a kill keeps it
        if history:
            latest = history[-1]
            print(f"look      {latest['seeds']} seeds: decided {'; '.join(latest['decided']) or 'nothing new'}; "
                  f"undecided {', '.join(latest['undecided']) or 'none'}", flush=True)
    _, history = look(config, options, plan)
    _record(config, analysis_record(config, options, plan, history))
    return finish(config.out, failures, options, tracker)


def _record(config: RunConfig, analysis: dict[str, Any]) -> None:
    """config.json's analysis section brought up to date, under the folder's lock."""
    store = RunStore(config.out)
    lock = FolderLock(config.out)
    lock.acquire()
    try:
        stored = store.read_config()
        if stored is not None:
            store.write_config({**stored, "analysis": analysis})
    finally:
        lock.release()
