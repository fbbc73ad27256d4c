"""How perf.perf measures: a harness variant and its baseline run alternately on equal work after a
warm-up, timed with the device's queued work included; the ratio is the median over pairs of time(baseline) /
time(harness). Memory is VmHWM in a fresh process. Each measurement becomes Rows with the load average
(/proc/loadavg) before and after; the rows are printed as one table and written to one JSON.

Nothing here knows what is measured: the measurements and their baselines live in perf.perf and
perf.reference.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import multiprocessing
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from rich.console import Console
from rich.table import Table

C = TypeVar("C")  # what every measurement of a run gets (perf.perf's Context)


# ---------------------------------------------------------------------------------------------- timing


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall seconds of fn(), including the device work it queued."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


@dataclass
class Comparison:
    """Seconds of each measured repetition of the harness and of its baseline, each doing `work` units."""

    harness: list[float]
    baseline: list[float]
    work: float  # units per repetition (images, jobs, cycles)
    unit: str  # what a unit is, for the rates

    @property
    def ratios(self) -> list[float]:
        """Per pair: time(baseline) / time(harness), the harness's throughput over the baseline's."""
        return [b / h for h, b in zip(self.harness, self.baseline, strict=True)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def best_ratio(self) -> float:
        """Fastest baseline over fastest harness repetition: each at its least disturbed."""
        return min(self.baseline) / min(self.harness)

    def rate(self, seconds: list[float]) -> float:
        """Units per second at the fastest repetition."""
        return self.work / min(seconds)

    def figure(self, seconds: list[float]) -> str:
        if self.unit == "cycle":  # one unit: its seconds read better than a rate below 1
            return f"{min(seconds):.1f} s"
        return f"{self.rate(seconds):,.{3 if self.unit == 'jobs' else 0}f} {self.unit}/s"

    def as_dict(self) -> dict[str, Any]:
        return {"seconds_harness": self.harness, "seconds_baseline": self.baseline, "work": self.work,
                "unit": self.unit, "ratios": self.ratios, "harness_rate": self.rate(self.harness),
                "baseline_rate": self.rate(self.baseline)}


def alternate(run_harness: Callable[[], float], run_baseline: Callable[[], float], pairs: int, work: float,
              unit: str, warm_harness: Callable[[], Any] | None = None,
              warm_baseline: Callable[[], Any] | None = None) -> Comparison:
    """Warm both up (by default with one unrecorded run each), then run harness, baseline, harness, ...
    `pairs` times. The run_* callables return the seconds their work took."""
    (warm_harness or run_harness)()
    (warm_baseline or run_baseline)()
    harness, baseline = [], []
    for _ in range(pairs):
        harness.append(run_harness())
        baseline.append(run_baseline())
    return Comparison(harness, baseline, work, unit)


# ---------------------------------------------------------------------------------------------- memory


def vm_hwm_mib() -> float:
    """This process's peak resident memory so far. VmHWM belongs to this address space alone, unlike
    getrusage's ru_maxrss, which Linux carries across exec (a child would report a larger parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("/proc/self/status has no VmHWM line: the memory figures need Linux")


def in_fresh_process(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) in a new interpreter (spawn, not fork): its VmHWM starts from nothing of this process."""
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


# ---------------------------------------------------------------------------------------------- rows


@dataclass
class Row:
    """One line of the table and of the JSON."""

    name: str  # the measurement (what --only selects)
    what: str  # what is measured, against what, in words
    harness: str  # the harness's figure, formatted
    baseline: str  # the baseline's figure, formatted
    ratio: float | None = None  # median over pairs of time(baseline) / time(harness)
    best_ratio: float | None = None  # fastest baseline / fastest harness repetition
    aim: float | None = None  # the ratio the harness should reach
    passed: bool | None = None  # the verdict of a check that has no ratio
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    load_before: list[float] = field(default_factory=list)  # /proc/loadavg: 1, 5, 15 minutes
    load_after: list[float] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.passed is not None:
            return "ok" if self.passed else "FAILED"
        if self.ratio is None or self.aim is None:
            return "-"
        return "met" if self.ratio >= self.aim else "missed"


def compared(name: str, what: str, comparison: Comparison, aim: float | None, note: str = "",
             **details: Any) -> Row:
    """The row of a comparison: rates at the fastest repetitions, the ratios, every repetition's seconds."""
    return Row(name, what, comparison.figure(comparison.harness), comparison.figure(comparison.baseline),
               comparison.ratio, comparison.best_ratio, aim, note=note, details={**details, **comparison.as_dict()})


def load_average() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def run_measurements(measurements: Mapping[str, Callable[[C], list[Row]]], names: list[str], ctx: C) -> list[Row]:
    """The named measurements in turn, the load average beside each; a failure becomes a FAILED row, so that
    one broken measurement does not hide the others."""
    rows: list[Row] = []
    for name in names:
        start, load_before = time.perf_counter(), load_average()
        try:
            new = measurements[name](ctx)
        except Exception as err:
            new = [Row(name, "failed", "-", "-", passed=False, note=f"{type(err).__name__}: {err}"[:160],
                       details={"traceback": traceback.format_exc()})]
        for row in new:
            row.load_before = row.load_before or load_before
            row.load_after = row.load_after or load_average()
            row.details["measurement_seconds"] = time.perf_counter() - start
        rows += new
        print(f"done {name} in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return rows


# ---------------------------------------------------------------------------------------------- output


def times(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def print_table(rows: list[Row], title: str) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("measurement", "what", "harness", "baseline", "ratio", "best", "aim", "", "load 1-min", "note"):
        table.add_column(column, justify="right" if column in ("harness", "baseline", "ratio", "best") else "left")
    for r in rows:
        load = f"{r.load_before[0]:.2f} -> {r.load_after[0]:.2f}"
        table.add_row(r.name, r.what, r.harness, r.baseline, times(r.ratio), times(r.best_ratio),
                      "-" if r.aim is None else f">= {r.aim:g}x", r.status, load, r.note)
    Console(width=220).print(table)


def write_results(out: Path, rows: list[Row], **header: Any) -> None:
    """The run's JSON: `header` (the machine, the sizes, ...) in the order given, then every row and its status."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**header, "rows": [{**dataclasses.asdict(r), "status": r.status} for r in rows]},
                              indent=2, default=str))
