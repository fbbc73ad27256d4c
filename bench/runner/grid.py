"""`--vary`: one comparison run across a grid of protocol settings, each setting a run folder of its own under one
parent (PARENT/SETTING/, resumable and checked as any run folder), the parent recording the grid (grid.json) and
holding the grid's report (report.md). The error is controlled over the whole grid (bench.analysis.grid_stats):
fixed seeds are tested together, Holm over every comparison of every setting; --seeds auto takes each setting's
looks on its own at Pocock's level for the whole family, and stops a setting once its comparisons are decided.
--track mlflow opens one tracker for the grid: the grid's run, each setting's parent under it, the grid's verdicts as
its tags.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.analysis import grid_stats, verdicts
from bench.analysis.families import PRIMARY, families
from bench.analysis.paired import ALPHA
from bench.core.config import RunConfig
from bench.core.errors import UserError
from bench.core.vary import Grid, Setting
from bench.data.datasets import load_dataset
from bench.report.grid_report import write_grid_report
from bench.results.identity import make_room, preview
from bench.results.lock import FolderLock, check_writable
from bench.results.store import CONFIG, CYCLES, RunStore, read_json, write_json
from bench.runner import seeds_auto
from bench.runner.benchmark import benchmark_round, dry_run, run_config
from bench.runner.devices import resolve_devices
from bench.runner.resolve import RunOptions, build_config, job_specs, resolve_baseline
from bench.runner.tracking import Tracker, open_tracker
from strategies import STRATEGIES

GRID = "grid.json"  # the parent's record of the grid: what a resumed --vary must ask again


@dataclass(frozen=True)
class GridRun:
    """A grid resolved before any work: the parent folder and each setting's checked configuration."""

    grid: Grid
    parent: Path
    settings: tuple[tuple[Setting, RunConfig], ...]
    name: str = ""  # the grid's name (--name, else the run's default name and -vary): its tracker experiment's

    @property
    def strategies(self) -> tuple[str, ...]:
        return self.settings[0][1].strategies


def resolve_grid(grid: Grid, preset: str = "quick", strategies: list[str] | None = None, seeds: int = 3,
                 protocol: dict[str, Any] | None = None, name: str | None = None, out: Path | None = None,
                 **build: Any) -> GridRun:
    """Every setting's RunConfig (bench.runner.resolve.build_config with the setting's fields over `protocol`),
    into PARENT/SETTING: PARENT is `out`, else results/NAME (NAME: the run's default name and -vary)."""
    base = build_config(preset, strategies, seeds, protocol, name=name, out=out, **build)
    if len(base.strategies) < 2:
        raise UserError(f"--vary asks whether a comparison holds across settings, and {base.strategies[0]!r} alone "
                        "makes none: name two strategies or more.")
    parent = Path(out) if out is not None else Path("results") / (name or f"{base.name}-vary")
    settings = []
    for setting in grid.settings():
        try:
            settings.append((setting, build_config(preset, strategies, seeds, {**(protocol or {}), **setting.protocol},
                                                   name=setting.slug, out=parent / setting.slug, **build)))
        except UserError as err:
            raise UserError(f"setting {setting.slug}: {err}") from None
    return GridRun(grid, parent, tuple(settings), name or f"{base.name}-vary")


def grid_record(run: GridRun, options: RunOptions) -> dict[str, Any]:
    """What grid.json holds: the grid, the question and its design (what a resumed run must ask again)."""
    baseline = resolve_baseline(options.baseline)
    return {"grid": run.grid.to_json(), "strategies": list(run.strategies), "baseline": baseline,
            "margin": options.margin, "design": "sequential" if options.max_seeds else "fixed",
            "seeds": options.max_seeds or len(run.settings[0][1].seeds),
            "comparisons": len(primary_pairs(run, options)), "labels": {s.slug: s.labels for s, _ in run.settings},
            "names": list(run.grid.names), "command": list(options.command)}


def primary_pairs(run: GridRun, options: RunOptions) -> list[tuple[str, str]]:
    """The first setting's primary comparisons (what grid.json records as the grid's question)."""
    return families(run.strategies, run.strategies, resolve_baseline(options.baseline))[PRIMARY]


def setting_pairs(run: GridRun, options: RunOptions) -> dict[str, list[tuple[str, str]]]:
    """Each setting's primary comparisons, among the strategies that setting runs (a setting whose model or data
    leaves a strategy out makes fewer)."""
    baseline = resolve_baseline(options.baseline)
    return {setting.slug: families(config.strategies, config.strategies, baseline)[PRIMARY]
            for setting, config in run.settings}


def plan_for(run: GridRun, options: RunOptions) -> verdicts.SequentialPlan:
    """--seeds auto's plan over the grid's family: every comparison of every setting, counted setting by setting."""
    return grid_stats.grid_plan(options.max_seeds or verdicts.MAX_SEEDS,
                                grid_stats.family_size(setting_pairs(run, options)), 1, options.margin, ALPHA)


def check_parent(run: GridRun, options: RunOptions) -> None:
    """The parent is no run's folder, and a grid it records is this one (unless --force or --fresh)."""
    parent = run.parent
    if (parent / CYCLES).exists() or (parent / CONFIG).exists():
        raise UserError(f"{parent} is a run's folder, not a grid's: give --vary another --name or --out.")
    if (parent / GRID).is_file() and options.on_existing == "resume":
        stored = read_json(parent / GRID)
        now = grid_record(run, options)
        # fixed seeds: more seeds or strategies widen each setting's folder, as they widen a run's, and the grid is
        # tested again as a whole; --seeds auto's looks were taken for one question and one plan
        keys = ("grid", "baseline", "margin", "design") + (("strategies", "seeds") if now["design"] != "fixed" else ())
        differ = [k for k in keys if not isinstance(stored, dict) or stored.get(k) != now[k]]
        if differ:
            raise UserError(f"{parent} holds another grid (its {', '.join(differ)} differ from this command's): "
                            "run its own command again to resume it, use --name for a new folder, or --force.")


def check_settings(run: GridRun, options: RunOptions) -> None:
    """What a run checks of its dataset, model and folder before any work, for every setting: a setting that cannot
    run, or whose folder holds another configuration, is refused before the first one starts. Each setting is resolved
    as its run resolves it (benchmark.run_config: a dataset of vectors settles precision and augmentation)."""
    loaded: dict[tuple[str, Path], Any] = {}
    for setting, config in run.settings:
        key = (config.protocol.dataset, config.data_root)
        if key not in loaded:
            loaded[key] = load_dataset(config.protocol.dataset, config.data_root, config.download)
        try:
            resolved, _ = run_config(config, loaded[key], resolve_devices(config.devices))
            if options.on_existing == "resume":  # the folder's refusals, read and not written (identity.preview)
                preview(resolved, job_specs, STRATEGIES.names())
        except UserError as err:
            raise UserError(f"setting {setting.slug}: {err}") from None


def grid_dry_run(run: GridRun, options: RunOptions) -> str:
    """The settings and every setting's jobs, as each run's dry run lists them."""
    lines = [grid_line(run, options)]
    for i, (setting, config) in enumerate(run.settings, 1):
        lines += [f"setting   {i}/{len(run.settings)} {setting.slug}", dry_run(config, options)]
    return "\n".join(lines)


def grid_line(run: GridRun, options: RunOptions) -> str:
    pairs = setting_pairs(run, options)
    k, counts = len(run.settings), [len(members) for members in pairs.values()]
    design = ("Pocock's boundary at each look, Bonferroni over them" if options.max_seeds
              else "Holm over them")
    family = (f"{counts[0]} comparison(s) x {k} settings = {sum(counts)}" if len(set(counts)) == 1 else
              f"{sum(counts)} comparisons over {k} settings ({', '.join(f'{s} {len(m)}' for s, m in pairs.items())})")
    return f"grid      {k} settings ({run.grid.describe()}) in {run.parent}; one family of {family}, {design}"


def run_grid(run: GridRun, options: RunOptions) -> tuple[Path | None, list[str]]:
    """Run every setting (--seeds N: each setting's jobs; --seeds auto: look by look, the undecided settings
    only), then write the grid's report. Returns report.md's path (None: nothing finished) and the failed jobs."""
    options.validate()
    check_parent(run, options)
    check_settings(run, options)
    check_writable(run.parent)
    run.parent.mkdir(parents=True, exist_ok=True)
    print(grid_line(run, options), flush=True)
    failures: list[str] = []
    tracker = open_tracker(options.track, options.tracking_uri)  # one for the grid: every setting into its runs
    with FolderLock(run.parent, advice="another --vary run is writing this grid").holding():
        resumed = options.on_existing == "resume" and (run.parent / GRID).is_file()  # check_parent: the same grid
        record = grid_record(run, options)
        write_json(run.parent / GRID, record)
        tracker.start_grid(run.name or run.parent.name, run.parent, record, resumed)
        if options.max_seeds:
            failures = _rounds(run, options, tracker)
        else:
            for i, (setting, config) in enumerate(run.settings, 1):
                print(f"setting   {i}/{len(run.settings)} {setting.slug}", flush=True)
                failures += [f"{setting.slug}/{key}" for key in benchmark_round(config, options, tracker=tracker)]
        written = report(run.parent)
        tracker.finish_grid(run.parent, failures)
        return written, failures


def _rounds(run: GridRun, options: RunOptions, tracker: Tracker | None = None) -> list[str]:
    """--seeds auto over the grid: at each look, every setting not yet decided runs the seeds of that look for the
    strategies of its undecided comparisons, then looks (replayed from its rows, so a resumed run resumes)."""
    plan = plan_for(run, options)
    print(f"rounds    --seeds auto per setting: looks at {', '.join(map(str, plan.looks))} seeds; nominal level "
          f"{plan.nominal:.5f} per look over the grid's {plan.comparisons} comparisons", flush=True)
    for _, config in run.settings:  # --force and --fresh act once, before any look reads the rows they set aside
        if config.out.is_dir():
            with FolderLock(config.out).holding():
                make_room(config.out, options.on_existing)
    resume = dataclasses.replace(options, on_existing="resume")  # a later look resumes the first, never sets it aside
    first = {setting.slug: True for setting, _ in run.settings}
    failures: list[str] = []
    for n in plan.looks:
        for i, (setting, config) in enumerate(run.settings, 1):
            found, history = seeds_auto.look(config, options, plan)
            if history and (not history[-1]["undecided"] or history[-1]["seeds"] >= n):
                continue  # decided, or this look was reached before (a resumed run)
            active = config.strategies if found is None else tuple(
                s for s in config.strategies if s in verdicts.strategies_to_run(found))
            print(f"setting   {i}/{len(run.settings)} {setting.slug}: {n} seeds", flush=True)
            round_config = dataclasses.replace(config, strategies=active, seeds=tuple(range(n)))
            failed = benchmark_round(round_config, resume, seeds_auto.analysis_record(config, options, plan, history),
                                     quiet=not first[setting.slug], tracker=tracker)
            first[setting.slug] = False
            failures += [f"{setting.slug}/{key}" for key in failed]
            _, history = seeds_auto.look(config, options, plan)
            _record(config, seeds_auto.analysis_record(config, options, plan, history))
            if history:
                latest = history[-1]
                print(f"look      {setting.slug} at {latest['seeds']} seeds: decided "
                      f"{'; '.join(latest['decided']) or 'nothing new'}; undecided "
                      f"{', '.join(latest['undecided']) or 'none'}", flush=True)
        if failures:  # a look cannot be reached without them
            break
    return failures


def _record(config: RunConfig, analysis: dict[str, Any]) -> None:
    """A setting's config.json analysis section brought up to date, under its folder's lock."""
    with FolderLock(config.out).holding():
        store = RunStore(config.out)
        stored = store.read_config()
        if stored is not None:
            store.write_config({**stored, "analysis": analysis})


def report(parent: Path) -> Path | None:
    """Write the grid's report and print its robustness lines; None when no setting has a finished cycle."""
    written = write_grid_report(parent)
    if written is None:
        print(f"failed    no setting of {parent} has a finished cycle to report", file=sys.stderr)
        return None
    path, lines = written
    print("\n".join([*lines, f"report    {path}"]), flush=True)
    return path
