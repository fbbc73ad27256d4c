"""Runs the job list: strategies x seeds, fanned out over devices (joblib's loky) or a dask cluster.

The unit of work is one cycle of one job. A worker gets the job's state (weights, labeled set), runs the
cycle and sends back the row and the new state; the driver alone writes the store and the checkpoints,
so workers need no shared filesystem. It is a work queue, not waves: whenever a worker finishes, the next
ready cycle goes out, a job's next cycle first (so that jobs finish early and checkpoints stay few).

Every worker runs on the device it was given: the inline pool's (one CPU slot, built-in code only), a loky
worker's slot (claimed at its start; a worker that replaces one takes the slot it leaves), a local dask worker's
(set in its environment, BENCH_WORKER_DEVICE), a SLURM, PBS or LSF job's (exported by its job script: clusters);
only a worker of a remote dask cluster started without one picks its best device. User code (strategy and model
files) always runs in a worker process, so that a job whose code ends its process fails alone. A CUDA error that
poisons a worker's context fails its job, and the pool is restarted once the other cycles in flight are back, so that
no later cycle runs in that process.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import sys
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.managers import SyncManager
from pathlib import Path
from typing import Any

import torch

from bench.core.config import Protocol
from bench.core.errors import UserError
from bench.core.processes import die_with_parent
from bench.core.registry import IMPORTED_CODE, code_digest
from bench.data.datasets import load_dataset
from bench.data.vectors import VectorData
from bench.models.build import load_model_file
from bench.runner import clusters
from bench.training.jobs import CycleResult, JobSpec, JobState
from bench.training.linear_probe import worker_data
from bench.training.loop import next_cycle
from bench.training.trainer import DeviceData, Trainer
from bench.training.vector_trainer import VectorDeviceData, VectorTrainer
from strategies import load_strategy_file


@dataclass(frozen=True)
class DataSource:
    """How a worker finds the dataset (each worker loads it once and keeps it on its device), and the
    user's strategy and model files (a worker process imports them before running a strategy they define, and
    imports the model files before building any model)."""

    spec: str
    root: str
    download: bool
    strategy_files: tuple[str, ...] = ()  # absolute paths given with --strategy-file
    model_files: tuple[str, ...] = ()  # absolute paths given with --model-file
    code: tuple[tuple[str, str], ...] = ()  # (path, digest of what the driver's import ran): a worker checks its own
    compile: bool = False  # torch.compile the model (--compile, checked to work by the driver)
    embeddings: str = ""  # frozen mode: the run's embeddings file (absolute path), read instead of the images
    embeddings_sha256: str = ""  # its content's digest: a worker checks it


@dataclass
class Outcome:
    """What a worker sends back for one cycle: the result and the next state, or the error."""

    spec: JobSpec
    result: CycleResult | None = None
    state: JobState | None = None
    error: str | None = None  # one line
    traceback: str | None = None
    lost: bool = False  # the worker process died (its other in-flight cycles may have died with it)
    poisoned: bool = False  # a CUDA error left the worker's context unusable: the pool must restart


# ---------------------------------------------------------------------------------------------- worker side

_WORKER: dict[str, Any] = {"device": None, "cache": {}, "strategy_files": set(), "poisoned": False}
DEVICE_ENV = clusters.DEVICE_ENV  # a dask worker's device, set in its environment when it starts


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone (the number may now be another user's process)
        return False
    return True


def claim_slot(slots: list[str], holders: Any, lock: Any, pid: int) -> str:
    """The device of the first slot no live worker holds, now held by `pid`. loky replaces a worker that exits
    (its memory grew, or it died with the pool) by starting a new one: that one takes the slot left free, so the
    workers stay spread over the devices as asked."""
    with lock:
        for i, device in enumerate(slots):
            if i not in holders or not _alive(holders[i]):
                holders[i] = pid
                return device
    raise RuntimeError(f"no free device slot among {slots}: more workers than slots")


def _start_worker(slots: list[str], holders: Any, lock: Any, threads: int | None, driver: int) -> None:
    """loky initializer: die with the driver, and take a free device slot."""
    die_with_parent(driver)
    _WORKER["device"] = claim_slot(slots, holders, lock, os.getpid())
    if threads:
        torch.set_num_threads(threads)


def _worker_device(device: str | None = None) -> str:
    """The device given (the inline pool's), this worker's slot or environment's, else the best one here (a
    worker of a remote dask cluster started without BENCH_WORKER_DEVICE)."""
    device = device or _WORKER["device"] or os.environ.get(DEVICE_ENV)
    if device is None:
        device = "cuda:0" if torch.cuda.is_available() else "cpu"
    return device


def _poisons_context(err: BaseException) -> bool:
    """A CUDA error after which every kernel of this process fails (a device-side assert, an illegal address)."""
    return isinstance(err, RuntimeError) and ("CUDA error" in str(err) or "device-side assert" in str(err))


def _trainer(source: DataSource, protocol: Protocol, device: str) -> tuple[Trainer, int]:
    key, on = (source, device, protocol.augment), torch.device(device)
    if key not in _WORKER["cache"]:  # frozen mode: the driver's embeddings file, for every worker, as vectors
        data = (worker_data(source.embeddings, source.embeddings_sha256) if source.embeddings
                else load_dataset(source.spec, source.root, source.download))
        device_data = (VectorDeviceData.from_vectors(data, on) if isinstance(data, VectorData)
                       else DeviceData.from_images(data, on, protocol.augment))
        _WORKER["cache"] = {key: (device_data, data.n_classes)}
    device_data, n_classes = _WORKER["cache"][key]
    if isinstance(device_data, VectorDeviceData):
        return VectorTrainer(device_data, protocol, on), n_classes
    return Trainer(device_data, protocol, on, compile=source.compile), n_classes


def _import_strategy_files(source: DataSource) -> None:
    """A fresh worker process knows the built-in strategies only: import the user's files once, whatever strategy
    the job runs (a file may change more than its own strategies: the reliability tests' fault injection does)."""
    for path in source.strategy_files:
        if path not in _WORKER["strategy_files"] and path not in IMPORTED_CODE:  # the driver imported its own
            _WORKER["strategy_files"].add(path)
            load_strategy_file(Path(path))


def _check_code(source: DataSource) -> None:
    """The files this process imported ran the code the driver hashed into the jobs' identity."""
    for path, digest in source.code:
        if path in IMPORTED_CODE and code_digest(path) != digest:
            raise UserError(f"{path} (or a module it imports) changed since the run started: this worker would run "
                            "other code than the job's identity records; run the same command again")


def execute(spec: JobSpec, state: JobState, source: DataSource, threads: int | None = None,
            device: str | None = None) -> Outcome:
    """Run one cycle of one job in whatever process this is, on `device` (None: this worker's, see _worker_device).
    Errors come back as data, with the traceback."""
    if _WORKER["poisoned"]:  # sent here before the pool restarts: it runs on a fresh worker instead
        return Outcome(spec, error="worker lost: its CUDA context was poisoned by an earlier cycle", lost=True)
    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    try:
        _import_strategy_files(source)
        for path in source.model_files:  # each imported once per process
            load_model_file(path)
        _check_code(source)
        trainer, n_classes = _trainer(source, spec.protocol, _worker_device(device))
        result, after = next_cycle(spec, trainer, n_classes, state)
        return Outcome(spec, result, after)
    except Exception as err:  # isolated: the other jobs go on
        _WORKER["poisoned"] = _poisons_context(err)
        return Outcome(spec, error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(),
                       poisoned=_WORKER["poisoned"])
    except SystemExit as stop:  # sys.exit() in a strategy or model file ends this job, never the run (or its status)
        return Outcome(spec, error=f"SystemExit: the job's code called sys.exit({stop.code!r}), which ends a job, "
                       "not the run", traceback=traceback.format_exc())


# ---------------------------------------------------------------------------------------------- pools


class InlinePool:
    """One job at a time in this process, on the CPU: one CPU worker running built-in code only."""

    capacity = 1

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def submit(self, fn: Callable[..., Outcome], *args: Any) -> cf.Future:
        future: cf.Future = cf.Future()
        try:
            future.set_result(fn(*args))
        except BaseException as err:
            future.set_exception(err)
            if not isinstance(err, Exception):
                raise
        return future

    def wait_first(self, futures: list) -> set:
        return {f for f in futures if f.done()}

    def restart(self) -> None:
        _WORKER["poisoned"] = False  # this process cannot be replaced; a CPU job leaves no CUDA context behind

    def close(self) -> None:
        pass


class LokyPool:
    """joblib's loky processes, each bound to one device slot (CUDA is initialised in workers only)."""

    device = None  # each worker's is its slot

    def __init__(self, slots: list[str], threads: int | None) -> None:
        from joblib.externals.loky import get_reusable_executor

        # The Manager's server process holds which worker holds which slot. Forked where fork is the norm (it
        # starts in milliseconds; the folder lock closes itself in forked children, see store.FolderLock), spawned
        # elsewhere; either way a child of this process, so that it can die with it.
        self._manager = SyncManager(ctx=multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn"))
        self._manager.start(die_with_parent, (os.getpid(),))
        lock = self._manager.Lock()
        self.capacity = len(slots)
        # No idle timeout: a worker keeps its dataset and device for the run. A restarted pool's workers claim
        # from an empty table (the old ones may not be reaped yet).
        self._start = lambda: get_reusable_executor(
            max_workers=len(slots), initializer=_start_worker, reuse=False, timeout=None,
            initargs=(slots, self._manager.dict(), lock, threads, os.getpid()))
        self._executor = self._start()

    def submit(self, fn: Callable[..., Outcome], *args: Any) -> cf.Future:
        try:
            return self._executor.submit(fn, *args)
        except cf.BrokenExecutor:  # a worker died (killed, out of memory): loky refuses work until restarted
            self._executor = self._start()
            return self._executor.submit(fn, *args)

    def wait_first(self, futures: list) -> set:
        return cf.wait(futures, return_when=cf.FIRST_COMPLETED).done

    def restart(self) -> None:
        self._executor.shutdown(wait=True, kill_workers=True)
        self._executor = self._start()

    def close(self) -> None:
        try:
            self._executor.shutdown(wait=True, kill_workers=True)
        finally:  # an interrupted shutdown still stops the Manager
            self._manager.shutdown()


DASK_CONNECT_TIMEOUT_S = 30  # a scheduler that does not answer by then is reported unreachable


class DaskPool:
    """A dask.distributed cluster: the given scheduler, or a local cluster of one single-threaded worker process
    per slot, each on its slot's device."""

    device = None  # each worker's is its own (see _worker_device)

    def __init__(self, address: str | None, slots: list[str], cluster: Any = None, capacity: int = 0) -> None:
        try:
            from dask.distributed import Client, Nanny, Scheduler, SpecCluster
        except ImportError:
            raise UserError("--backend dask needs dask.distributed: pip install 'al-bench[dask]' "
                            "(or pip install 'dask[distributed]').") from None
        self._cluster = cluster  # a SLURM, PBS or LSF cluster (bench.runner.clusters), already scaled
        if cluster is not None:
            address = cluster.scheduler_address
        elif address is None:  # the nanny keeps a worker's environment across its restarts, and so its device
            workers = {i: {"cls": Nanny, "options": {"nthreads": 1, "env": {DEVICE_ENV: slot}}}
                       for i, slot in enumerate(slots)}
            self._cluster = SpecCluster(workers, scheduler={"cls": Scheduler, "options": {"dashboard_address": None}},
                                        silence_logs=logging.WARNING)
            address = self._cluster.scheduler_address
        try:
            self._client = Client(address, timeout=DASK_CONNECT_TIMEOUT_S)
        except OSError as err:
            if self._cluster is not None:  # its jobs are cancelled, not left queued
                self._cluster.close()
            raise UserError(f"Cannot reach the dask scheduler at {address} ({err}): check --scheduler-address "
                            "and that `dask scheduler` is running.") from None
        # a scheduler's jobs may not have started yet: their workers, one thread each, are the capacity
        self.capacity = capacity or max(1, sum(self._client.nthreads().values()))

    def submit(self, fn: Callable[..., Outcome], *args: Any):
        return self._client.submit(fn, *args, pure=False)

    def wait_first(self, futures: list) -> set:
        from dask.distributed import wait

        return set(wait(futures, return_when="FIRST_COMPLETED").done)

    def restart(self) -> None:
        self._client.restart()  # every worker, through its nanny (`dask worker` starts one by default)

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


# One intra-op thread per CPU worker, whatever --jobs is: torch's CPU reductions sum in an order that follows the
# thread count, so a job's numbers would otherwise depend on --jobs, and a folder resumed or widened with another
# --jobs would pair rows computed differently (78.6% vs 77.8% at cycle 0 where the design says identical).
CPU_THREADS_PER_WORKER = 1


def make_pool(backend: str, devices: list[str], jobs: int, jobs_per_device: int, address: str | None,
              isolate: bool = False, cluster: clusters.ClusterPlan | None = None):
    """The pool for this run, and the torch thread count each worker should use (None: leave as is). One CPU slot
    runs in this process unless `isolate` (the run imports user code, which may end the process it runs in); a
    CUDA slot always runs in a worker of its own, whose context dies with it. cluster: SLURM, PBS or LSF jobs of one
    worker each, as many as `jobs`, on the device their job script gives them."""
    if cluster is not None:
        started, n = clusters.start(cluster, clusters.worker_device(cluster, devices), jobs)
        threads = CPU_THREADS_PER_WORKER if devices == ["cpu"] else clusters.threads(cluster)
        return DaskPool(None, [], cluster=started, capacity=n), threads
    slots = ["cpu"] * jobs if devices == ["cpu"] else [d for d in devices for _ in range(jobs_per_device)]
    # CUDA workers launch kernels and gather batches on the CPU: a fair share of the cores each (a CPU worker
    # keeps one thread, see above)
    threads = CPU_THREADS_PER_WORKER if devices == ["cpu"] else max(1, (os.cpu_count() or 1) // len(slots))
    if backend == "dask":
        return DaskPool(address, slots), (threads if address is None else None)
    if slots == ["cpu"] and not isolate:
        return InlinePool(), threads
    return LokyPool(slots, threads), threads


# ---------------------------------------------------------------------------------------------- driver


class Driver:
    """Keeps every worker busy and hands each finished cycle to `on_cycle` (the single writer)."""

    def __init__(self, pool, source: DataSource, threads: int | None,
                 on_cycle: Callable[[Outcome], None], on_failure: Callable[[Outcome], None]) -> None:
        self.pool, self.source, self.threads = pool, source, threads
        self.on_cycle, self.on_failure = on_cycle, on_failure

    def run(self, ready: list[tuple[JobSpec, JobState]]) -> None:
        queue = deque(ready)
        # Cycles in flight when a worker died: a dead loky worker takes every in-flight cycle with it, so
        # each is retried alone; the one that dies alone is the culprit and fails, the others go on.
        suspects: deque[tuple[JobSpec, JobState]] = deque()
        in_flight: dict[Any, tuple[JobSpec, JobState, bool]] = {}
        restart = False  # a worker's CUDA context is poisoned: nothing more goes out until the pool restarts

        def submit(spec: JobSpec, state: JobState, alone: bool) -> None:
            future = self.pool.submit(execute, spec, state, self.source, self.threads, self.pool.device)
            in_flight[future] = (spec, state, alone)

        while queue or suspects or in_flight:
            if restart and not in_flight:
                self.pool.restart()
                restart = False
            if not restart and suspects and not in_flight:  # while restarting, the cycles in flight come back first
                submit(*suspects.popleft(), True)
            while not restart and not suspects and queue and len(in_flight) < self.pool.capacity:
                submit(*queue.popleft(), False)
            for future in self.pool.wait_first(list(in_flight)):
                spec, state, alone = in_flight.pop(future)
                outcome = self._outcome(future, spec)
                restart = restart or outcome.poisoned
                if outcome.lost and not alone:
                    suspects.append((spec, state))
                    continue
                if outcome.error is not None:
                    self.on_failure(outcome)
                    continue
                self.on_cycle(outcome)
                if outcome.state.cycle < spec.protocol.cycles:
                    queue.appendleft((spec, outcome.state))

    @staticmethod
    def _outcome(future: Any, spec: JobSpec) -> Outcome:
        try:
            return future.result()
        except Exception as err:  # the worker process itself died (out of memory, killed)
            first_line = (str(err).splitlines() or [""])[0]
            return Outcome(spec, error=f"worker lost: {type(err).__name__}: {first_line}",
                           traceback=traceback.format_exc(), lost=True)
