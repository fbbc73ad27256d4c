"""Step d of perf/gpu_check.sh: core-set, BADGE and BALD selecting on the device at pool scale, timed, with
their host syncs counted: aten._local_scalar_dense (what .item() and indexing with a 0-d tensor lower to) on any
device, and on CUDA the synchronising calls torch.cuda.set_sync_debug_mode("warn") reports."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from perf.check_log import Setting, StepLog
from perf.perf import SIZES as PERF_SIZES
from perf.perf import selection_inputs, selection_setting
from perf.timing import timed
from strategies import create_strategy

# ---------------------------------------------------------------------------------------------- d. selection


class ScalarReads(TorchDispatchMode):
    """Counts aten._local_scalar_dense: the op behind .item(), float(t) and indexing with a 0-d tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


def host_syncs(run: Callable[[], Any], device: torch.device) -> dict[str, int]:
    """Scalar reads of one run (any device) and, on CUDA, the synchronising calls torch's sync debug mode warns of."""
    with ScalarReads() as reads:
        run()
    counts = {"scalar_reads": reads.count}
    if device.type == "cuda":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                run()
                torch.cuda.synchronize(device)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts["sync_warnings"] = sum("synchroniz" in str(w.message) for w in caught)
    return counts


def step_selection(log: StepLog, s: Setting) -> None:
    sizes = dataclasses.replace(PERF_SIZES["full"], dim=s.sizes.dim, classes=s.sizes.classes, picks=s.sizes.picks,
                                centres=s.sizes.centres)
    results = {}
    for method in sizes.selection_methods:
        strategy = create_strategy(method)
        strategy.select(selection_inputs(method, 200, sizes, n_centres=50, seed=1, device=s.device), 10)  # warm-up
        inputs = selection_inputs(method, s.sizes.pool, sizes, sizes.centres, device=s.device)
        seconds = timed(lambda: strategy.select(inputs, sizes.picks), s.device)  # noqa: B023 (called at once)
        syncs = host_syncs(lambda: strategy.select(inputs, sizes.picks), s.device)  # noqa: B023
        results[method] = {"seconds": seconds, **syncs}
        counted = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in syncs.items())
        log.line(f"{method}: {sizes.picks:,} of {s.sizes.pool:,} x {sizes.dim}-d ({selection_setting(method, sizes)}) "
                 f"on {s.device}: {seconds:.2f} s; host syncs: {counted} (the picks' copy to the host included)")
    log.record["data"]["selections"] = results
    log.headline(", ".join(f"{m} {r['seconds']:.2f} s / {r.get('sync_warnings', r['scalar_reads'])} syncs"
                           for m, r in results.items()))
