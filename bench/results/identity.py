"""A results folder's identity, widening and resume: which configuration a folder holds (config.json, and the
job hash every row and checkpoint carries), what a run may add to it, and what is finished. The riskiest
logic of the harness, kept apart so that it is findable and tested on its own (tests/results/test_identity.py,
tests/guarantees/test_properties.py)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from bench.core.config import CPU_PRECISION, OPTIONAL_FIELDS, RunConfig
from bench.core.errors import UserError
from bench.results.store import CONFIG, CYCLES, RunStore
from bench.training.jobs import JobSpec


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def config_differences(stored: dict[str, Any], config: RunConfig) -> list[str]:
    """Fields that decide the numbers and differ between a folder's config.json and this run."""
    now = json.loads(json.dumps(config.result_defining(), default=str))
    common = set(stored.get("strategy_params", {})) & set(now["strategy_params"])
    stored_protocol = stored.get("protocol", {})  # an optional field a folder predates is at its default
    stored_protocol = {**OPTIONAL_FIELDS, **stored_protocol} if isinstance(stored_protocol, dict) else stored_protocol
    old = _flatten({"protocol": stored_protocol, "dataset_fingerprint": stored.get("dataset_fingerprint"),
                    "model_fingerprint": stored.get("model_fingerprint") or {},
                    "strategy_params": {k: v for k, v in stored.get("strategy_params", {}).items() if k in common},
                    **stored_numerics(stored)})
    new = _flatten({"protocol": now["protocol"], "dataset_fingerprint": now["dataset_fingerprint"],
                    "model_fingerprint": now["model_fingerprint"],
                    "strategy_params": {k: v for k, v in now["strategy_params"].items() if k in common},
                    "device_type": now["device_type"], "precision": now["precision"]})
    shown = {k: k.encode("unicode_escape").decode() for k in set(old) | set(new)}  # a hand-edited key stays one line
    return [f"{shown[k]} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(shown) if old.get(k) != new.get(k)]


def stored_numerics(stored: dict[str, Any]) -> dict[str, Any]:
    """The device type and precision a folder's config.json records. A folder written before the device type was
    recorded ran on the CPU, in the precision it records as a torch dtype ("torch.float32"), or failing that the
    one its protocol's precision gives on a CPU without native bf16."""
    protocol = stored.get("protocol") if isinstance(stored.get("protocol"), dict) else {}
    precision = stored.get("precision")
    if not isinstance(precision, str):
        precision = CPU_PRECISION.get(protocol.get("precision", "auto"), precision)
    return {"device_type": stored.get("device_type", "cpu"),
            "precision": precision.removeprefix("torch.") if isinstance(precision, str) else precision}


def finished(spec: JobSpec, cycles: set[int]) -> bool:
    """Whether a job with these finished cycles (RunStore.done_cycles) is done."""
    return cycles >= set(range(spec.protocol.cycles))


def _stored_shape_error(stored: dict[str, Any]) -> str | None:
    """What is wrong with a hand-edited config.json's shape, or None."""
    checks = {
        "protocol": lambda v: isinstance(v, dict),
        "strategies": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "seeds": lambda v: isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v),
        "strategy_params": lambda v: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()),
    }
    bad = [key for key, ok in checks.items() if key not in stored or not ok(stored[key])]
    return f"its {', '.join(bad)} {'is' if len(bad) == 1 else 'are'} missing or of the wrong type" if bad else None


def widen(config: RunConfig, stored: dict[str, Any], folder: Path, known: Collection[str]) -> RunConfig:
    """This run plus the folder's stored jobs: stored strategies keep their stored parameters; a command that
    contradicts them, or the stored protocol, is refused with the differing fields named, and so is a stored
    strategy not among `known` (the registered names)."""
    problem = _stored_shape_error(stored)
    if problem:
        raise UserError(f"{folder / CONFIG} is not a configuration this harness wrote ({problem}): move the folder's "
                        "results away, or use --name for a new folder.")
    differences = config_differences(stored, config)
    if differences:
        raise UserError(f"{folder} holds results of another configuration ({'; '.join(differences)}): "
                        "use --name for a new folder, or --force to move the old results aside.")
    strategies = tuple(dict.fromkeys([*stored["strategies"], *config.strategies]))
    unknown = [s for s in strategies if s not in known]
    if unknown:
        raise UserError(f"{folder} holds results of strategy {unknown[0]!r}, which is not registered: pass the "
                        "--strategy-file that defines it again, or use --name for a new folder.")
    kept = {s: stored["strategy_params"][s] for s in strategies if s not in config.strategies
            and s in stored["strategy_params"]}
    return dataclasses.replace(config, strategies=strategies, strategy_params={**kept, **config.strategy_params},
                               seeds=tuple(sorted(set(stored["seeds"]) | set(config.seeds))))


def check_identity(store: RunStore, config: RunConfig) -> None:
    """Every stored row must carry its job's identity under this configuration (protocol, dataset content,
    strategy parameters): a folder is never extended under another configuration."""
    rows = store.cycles()
    if rows.empty:
        return
    if "config_hash" not in rows.columns:
        raise UserError(f"{store.folder / CYCLES} has no config_hash column, so its rows' configuration is unknown: "
                        "use --name for a new folder, or --force to move the old results aside.")
    expected = rows["strategy"].map({s: config.job_hash(s) for s in config.strategies})
    wrong = rows[rows["config_hash"].astype(str) != expected]
    if wrong.empty:
        return
    first = wrong.iloc[0]
    known = first["strategy"] in config.strategies
    why = (f"{first['strategy']}/seed{first['seed']} cycle {first['cycle']} was computed under configuration "
           f"{first['config_hash']}, this run is {expected[wrong.index[0]]}" if known else
           f"it holds rows of strategy {first['strategy']!r}, whose parameters are unknown without its config.json")
    raise UserError(f"{store.folder} holds {len(wrong)} row(s) of another configuration ({why}; the protocol, "
                    "the device type or precision, the dataset's content or a strategy's parameters differ): use "
                    "--name for a new folder, or --force to move the old results aside.")


def make_room(folder: Path, on_existing: str) -> None:
    """--force: the folder's results moved into previous-<time>/ inside it; --fresh: deleted (once the user said
    yes); resume: nothing. Once per run, with its lock held: a later step of the same run resumes."""
    if on_existing == "force":
        aside = RunStore.move_results_aside(folder)
        if aside is not None:
            print(f"moved     the previous results to {aside}")
    elif on_existing == "fresh":
        RunStore.delete_results(folder)


def open_store(config: RunConfig, on_existing: str, known: Collection[str]) -> tuple[RunStore, RunConfig, bool]:
    """The folder's store (resuming what it holds), the run's config widened to the stored jobs, and whether the
    folder held anything; refuses a folder whose configuration or rows are of another configuration."""
    make_room(config.out, on_existing)
    store = RunStore(config.out)
    return store, *_identify(store, config, known)


def _identify(store: RunStore, config: RunConfig, known: Collection[str]) -> tuple[RunConfig, bool]:
    """config widened to the jobs the store holds, every stored row checked against it; and whether it holds
    anything. Reads only."""
    stored = store.read_config()
    widened = widen(config, stored, store.folder, known) if stored is not None else config
    check_identity(store, widened)
    return widened, stored is not None or not store.cycles().empty


def preview(config: RunConfig, specs_of: Callable[[RunConfig], list[JobSpec]],
            known: Collection[str]) -> tuple[RunConfig, str | None]:
    """What a run into config.out would find, read and not written (a dry run): the configuration widened to
    the folder's jobs, and the line the run would print about them (None where the folder holds nothing).
    The run's refusals of the folder are raised as the run raises them. specs_of: the jobs of a configuration;
    known: the registered strategies."""
    if not config.out.is_dir():
        return config, None
    store = RunStore(config.out)  # the folder exists: reading it creates and changes nothing
    widened, held = _identify(store, config, known)
    if not held:
        return widened, None
    specs = specs_of(dataclasses.replace(widened, strategies=config.strategies, seeds=config.seeds))
    ready = [s for s in specs if not finished(s, store.done_cycles(s.strategy, s.seed))]
    return widened, folder_line(store, config, specs, ready)


def covered(asked: RunConfig, widened: RunConfig) -> list[str]:
    """The strategies a run's report covers: those it names, then those its folder already holds."""
    return list(dict.fromkeys([*asked.strategies, *widened.strategies]))


def folder_line(store: RunStore, asked: RunConfig, specs: list[JobSpec], ready: list) -> str:
    """What a resumed folder holds and what this run adds, in one line."""
    rows = store.cycles()
    seeds_of = ({str(name): sorted({int(s) for s in group["seed"]}) for name, group in rows.groupby("strategy")}
                if not rows.empty else {})
    held, seeds = sorted(seeds_of), sorted({s for held_seeds in seeds_of.values() for s in held_seeds})
    holds = _holdings(seeds_of) if held else "no finished cycle"
    more = set(held) - set(asked.strategies) or set(seeds) - set(asked.seeds)  # the report covers the folder
    report = f"; the report covers {holds} and what this run adds" if more else ""
    return (f"resume    {len(specs) - len(ready)} of {len(specs)} jobs already finished in {store.folder}, which "
            f"holds {holds}; this run asks {', '.join(asked.strategies)} for seeds {_span(list(asked.seeds))} and "
            f"runs {len(ready)} job{'s' if len(ready) != 1 else ''}, no others{report}")


def _holdings(seeds_of: dict[str, list[int]]) -> str:
    """'entropy, random (seeds 0-4)' where every strategy holds the same seeds, else each strategy with its own:
    'entropy (seeds 0-4), margin (seeds 0-2)' (one span for all would claim seeds a strategy lacks)."""
    names = sorted(seeds_of)
    if len({tuple(seeds) for seeds in seeds_of.values()}) == 1:
        return f"{', '.join(names)} (seeds {_span(seeds_of[names[0]])})"
    return ", ".join(f"{name} (seeds {_span(seeds_of[name])})" for name in names)


def _span(seeds: list[int]) -> str:
    """'0-4' for a run of consecutive seeds, else the list."""
    if seeds and seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2:
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))
