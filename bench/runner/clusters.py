"""A dask cluster behind SLURM, PBS or LSF (`--backend dask --cluster slurm --cluster-option KEY=VALUE ...`), through
dask-jobqueue: the options checked against its cluster class, the job script it submits, the cluster scaled.

Each scheduler job runs one dask worker with one thread: one cycle at a time, on the device the job script gives it
(BENCH_WORKER_DEVICE: `cuda:0` of the GPU the scheduler handed the job when the run is on CUDA, else the CPU), while
the job still books its `cores` for torch's threads. The cluster is scaled to the jobs that can run at once: one per
(strategy, seed) job left to run, at most `max_jobs`.

A KEY is one of the cluster class's keyword arguments (SLURMCluster's `queue`, `account`, `walltime`, `memory`, ...),
checked against its signature, or one of the harness's own two: `gpus` (0 or 1: the scheduler's request for the
job's GPU, in its own syntax) and `max_jobs`. A list (`job_extra_directives`, `job_script_prologue`,
`worker_extra_args`, `job_directives_skip`) takes one item per `--cluster-option`: repeat the key.
"""

from __future__ import annotations

import inspect
import shutil
from dataclasses import dataclass
from typing import Any

from bench.core.errors import UserError
from bench.core.registry import unknown_name

CLUSTERS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "lsf": "LSFCluster"}  # --cluster: dask-jobqueue's class
PLACEHOLDER = "tcp://<insert-scheduler-address-here>:8786"  # dask-jobqueue's own, in a script not yet submitted
DEVICE_ENV = "BENCH_WORKER_DEVICE"  # the worker's device (bench.runner.scheduler reads it)

LISTS = {"job_extra_directives", "job_script_prologue", "worker_extra_args", "job_directives_skip", "job_extra",
         "env_extra", "extra", "header_skip"}  # repeat the key: one item each
INTEGERS = {"cores", "job_cpu", "ncpus", "mem", "gpus", "max_jobs"}  # mem: LSF's, in bytes
BOOLEANS = {"use_stdin"}
# What the harness sets, or what no text can give: refused in one line, with the reason.
FIXED = {
    "processes": "each job runs one worker process (one cycle at a time on its device)",
    "nanny": "the nanny restarts a worker whose CUDA context is poisoned",
    "n_workers": "the cluster is scaled to the jobs that can run at once (cap it with max_jobs)",
    "job_cls": "the harness gives the job class", "scheduler": "the harness starts the scheduler",
    "scheduler_cls": "the harness starts the scheduler", "scheduler_options": "it takes a dict, not text",
    "security": "it takes a Security object, not text", "loop": "it takes an event loop, not text",
    "asynchronous": "the harness drives the cluster synchronously", "dashboard_address": "the run shows no dashboard",
    "host": "dask-jobqueue takes it through scheduler_options; give interface=NAME instead",
}
GPU_REQUEST = {"slurm": "--gres=gpu:1", "pbs": "ngpus=1", "lsf": '-gpu "num=1"'}  # gpus=1, in each one's syntax


@dataclass(frozen=True)
class ClusterPlan:
    """A checked --cluster request: the class's keyword arguments, and the harness's own keys."""

    kind: str  # slurm | pbs | lsf
    kwargs: dict[str, Any]  # the cluster class's keyword arguments, as given (lists joined, numbers parsed)
    gpus: int  # 0 or 1: the GPU the job asks the scheduler for
    max_jobs: int | None  # the most scheduler jobs at once (None: one per job left to run)


def check_run(options: Any) -> ClusterPlan | None:
    """RunOptions' cluster and cluster_options, checked with the flags they need and refuse (None: no --cluster)."""
    kind, items = options.cluster, options.cluster_options
    if isinstance(items, (str, bytes)) or not isinstance(items, (tuple, list)):
        raise UserError(f"The 'cluster_options' parameter must be a tuple of KEY=VALUE strings. Got {items!r} instead.")
    if kind is None:
        if items:
            raise UserError("--cluster-option is for --cluster slurm, pbs or lsf: add --cluster, or drop the options.")
        return None
    if not isinstance(kind, str) or kind not in CLUSTERS:
        raise unknown_name("--cluster", str(kind), list(CLUSTERS))
    if options.backend != "dask":
        raise UserError(f"--cluster {kind} starts dask workers in {kind} jobs: add --backend dask.")
    if options.scheduler_address is not None:
        raise UserError(f"--cluster {kind} starts its own dask scheduler: drop --scheduler-address (or drop --cluster "
                        "to use the scheduler at that address).")
    if options.jobs_per_device != 1:
        raise UserError(f"--cluster {kind} runs one worker per job, on the job's device: drop --jobs-per-device (more "
                        "jobs at once: --cluster-option max_jobs=N).")
    return plan(kind, items)


def for_run(options: Any, devices: list[str]) -> ClusterPlan | None:
    """check_run, and the jobs' device checked against the run's devices: before any work."""
    chosen = check_run(options)
    if chosen is not None:
        worker_device(chosen, devices)
    return chosen


def describe(chosen: ClusterPlan, devices: list[str], ready: int) -> str:
    """What --dry-run says of the cluster: how many jobs at once, and the script each one submits."""
    jobs = min(ready, chosen.max_jobs or ready)
    return (f"cluster   {chosen.kind}: {jobs} job(s) at once, each running one dask worker from this script\n"
            f"{job_script(chosen, worker_device(chosen, devices)).rstrip()}")


def worker_device(chosen: ClusterPlan, devices: list[str]) -> str:
    """The device each job's worker is given: the GPU its job got (cuda:0 of what the scheduler shows it) when the run
    resolves to CUDA, else the CPU. The run's device type is part of its jobs' identity, so the two agree."""
    device = "cuda:0" if devices[0].startswith("cuda") else "cpu"
    if chosen.gpus and device == "cpu":
        raise UserError(f"--cluster-option gpus=1 books a GPU per job, but this run resolves --devices to the CPU, and "
                        "a job's identity holds its device type: start the run where --devices sees CUDA (an "
                        f"interactive {chosen.kind} job, say), or drop gpus=1 to run CPU jobs.")
    return device


def cluster_class(kind: str) -> type:
    """dask-jobqueue's cluster class for --cluster KIND (the optional dependency, imported when a run asks for it)."""
    if kind not in CLUSTERS:
        raise unknown_name("--cluster", kind, list(CLUSTERS))
    try:
        import dask_jobqueue
    except ImportError:
        raise UserError(f"--cluster {kind} needs dask-jobqueue: pip install 'al-bench[dask]' (or pip install "
                        "dask-jobqueue).") from None
    return getattr(dask_jobqueue, CLUSTERS[kind])


def accepted(cls: type) -> set[str]:
    """The keyword arguments cls takes: its own (JobQueueCluster's) and those its job class passes down."""
    names: set[str] = set()
    for klass in (cls, *(k for k in cls.job_cls.__mro__ if "__init__" in vars(k) and k is not object)):
        names |= {p.name for p in inspect.signature(klass.__init__).parameters.values()
                  if p.kind is not p.VAR_KEYWORD and p.name != "self"}
    return names - {"job_kwargs", "base_class_kwargs"}


def plan(kind: str, options: tuple[str, ...] | list[str]) -> ClusterPlan:
    """--cluster KIND with its --cluster-option KEY=VALUE items, checked (one UserError, before any work)."""
    cls = cluster_class(kind)
    known = sorted(accepted(cls) - FIXED.keys() | {"gpus", "max_jobs"})
    given: dict[str, Any] = {}
    for item in options:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--cluster-option {item!r} must read KEY=VALUE, e.g. walltime=02:00:00 (a list: repeat "
                            "the key, one item each).")
        if key in FIXED:
            raise UserError(f"--cluster-option {key} cannot be set: {FIXED[key]}.")
        if key not in known:
            raise unknown_name(f"--cluster-option key of {CLUSTERS[kind]}", key, known)
        if key in LISTS:
            given.setdefault(key, []).append(text)
        elif key in given:
            raise UserError(f"--cluster-option {key} is given twice ({given[key]!r} and {text!r}): give it once.")
        else:
            given[key] = _value(key, text)
    gpus, max_jobs = given.pop("gpus", 0), given.pop("max_jobs", None)
    if gpus not in (0, 1):
        raise UserError(f"--cluster-option gpus must be 0 or 1: a job's one worker runs on one GPU; more GPUs "
                        f"at once are more jobs (max_jobs). Got {gpus} instead.")
    if max_jobs is not None and max_jobs < 1:
        raise UserError(f"--cluster-option max_jobs must be a positive integer. Got {max_jobs} instead.")
    return ClusterPlan(kind, given, gpus, max_jobs)


def _value(key: str, text: str) -> Any:
    if key in INTEGERS:
        try:
            return int(text)
        except ValueError:
            raise UserError(f"--cluster-option {key} must be an integer. Got {text!r} instead.") from None
    if key in BOOLEANS:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise UserError(f"--cluster-option {key} must be true or false. Got {text!r} instead.")
        return text.lower() in ("true", "1", "yes")
    return text


def job_kwargs(chosen: ClusterPlan, device: str) -> dict[str, Any]:
    """The class's keyword arguments for this run: the user's, one process per job, the GPU asked for in the
    scheduler's syntax, and the worker's device exported last in the job script (no set-up line can change it)."""
    kwargs = {**chosen.kwargs, "processes": 1}
    kwargs["job_script_prologue"] = [*kwargs.get("job_script_prologue", []), f"export {DEVICE_ENV}={device}"]
    if chosen.gpus and chosen.kind == "pbs":  # PBS asks for it inside the select statement
        kwargs["resource_spec"] = f"{kwargs.get('resource_spec') or _pbs_default(kwargs)}:{GPU_REQUEST['pbs']}"
    elif chosen.gpus:
        kwargs["job_extra_directives"] = [*kwargs.get("job_extra_directives", []), GPU_REQUEST[chosen.kind]]
    return kwargs


def _pbs_default(kwargs: dict[str, Any]) -> str:
    """PBSCluster's own resource_spec for these cores and memory, which ngpus=1 extends."""
    from dask.utils import parse_bytes
    from dask_jobqueue.pbs import pbs_format_bytes_ceil

    if "cores" not in kwargs or "memory" not in kwargs:
        raise UserError("--cluster pbs with gpus=1 needs cores=N and memory=SIZE (or resource_spec=...): the GPU is "
                        "asked for in the select statement they make.")
    return f"select=1:ncpus={kwargs['cores']}:mem={pbs_format_bytes_ceil(parse_bytes(kwargs['memory']))}"


def single_threaded(job_cls: type) -> type:
    """job_cls whose dask worker runs one task at a time (one cycle on its device), while the job still books its
    `cores`: dask-jobqueue gives a worker cores / processes threads, which would run that many cycles at once."""
    return type(job_cls.__name__, (job_cls,), {"worker_process_threads": 1, "__module__": __name__})


def _split(cls: type, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the cluster's own keyword arguments, the job's): a job is built from the second alone."""
    own = {p for p in inspect.signature(cls.__init__).parameters} - {"interface", "protocol", "config_name"}
    return {k: v for k, v in kwargs.items() if k in own}, {k: v for k, v in kwargs.items() if k not in own}


def job_script(chosen: ClusterPlan, device: str) -> str:
    """The script each job would submit (dask-jobqueue's cluster.job_script(), before a scheduler has an address)."""
    cls = cluster_class(chosen.kind)
    _, for_job = _split(cls, job_kwargs(chosen, device))
    try:
        return single_threaded(cls.job_cls)(PLACEHOLDER, name="dummy-name", **for_job).job_script()
    except (ValueError, TypeError) as err:
        raise UserError(f"--cluster {chosen.kind}: {_first_line(err)}") from None


def start(chosen: ClusterPlan, device: str, ready: int) -> tuple[Any, int]:
    """The cluster, scaled to the jobs that can run at once, and that number."""
    cls = cluster_class(chosen.kind)
    jobs = min(ready, chosen.max_jobs or ready)
    command = cls.job_cls.submit_command.split()[0]
    if jobs and shutil.which(command) is None:
        raise UserError(f"--cluster {chosen.kind} submits its jobs with {command}, which is not on PATH here: run "
                        f"from a node of the {chosen.kind} cluster (a login node).")
    try:
        cluster = cls(job_cls=single_threaded(cls.job_cls), scheduler_options={"dashboard_address": None},
                      **job_kwargs(chosen, device))
    except (ValueError, TypeError) as err:
        raise UserError(f"--cluster {chosen.kind}: {_first_line(err)}") from None
    cluster.scale(jobs=jobs)
    try:  # submitted now, not in the background: a refused submission is one line, not a run waiting forever
        # scale's own pass and this one hold one lock: when it returns, every job was submitted or refused
        cluster.sync(cluster._correct_state)
        refused = [job for job in cluster.workers.values() if job.status.name == "created"]  # distributed.core.Status
        if refused:  # the background pass logged why and went on: submit one once more, to hear it
            cluster.sync(_started, refused[0])
    except RuntimeError as err:  # dask-jobqueue's: the command's exit status, stdout and stderr
        for name, job in list(cluster.workers.items()):  # a refused job never started: nothing of it to cancel
            if job.status.name == "created":
                job.status = type(job.status).failed
                del cluster.workers[name], cluster.worker_spec[name]
        cluster.close(timeout=10)
        said = [line for line in str(err).partition("stderr:")[2].splitlines() if line.strip()]
        raise UserError(f"--cluster {chosen.kind}: {command} refused the job: "
                        f"{said[0].strip() if said else _first_line(err)}") from None
    return cluster, jobs


async def _started(job: Any) -> None:
    await job  # dask's ProcessInterface: starts a job not yet started, and raises what its start raises


def threads(chosen: ClusterPlan) -> int | None:
    """The torch threads of a CUDA job's worker: the cores the job books (None: torch's default there)."""
    return chosen.kwargs.get("job_cpu") or chosen.kwargs.get("ncpus") or chosen.kwargs.get("cores")


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]
