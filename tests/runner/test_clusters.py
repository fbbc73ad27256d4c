"""SLURM, PBS and LSF through dask-jobqueue, without a scheduler: the job script each writes (read against the
directives each scheduler documents), bad options refused in one line before any work, and a fake `sbatch`,
`squeue` and `scancel` on PATH that start the generated script as a local process, from which a real dask worker
connects and a run ends with the rows of the same run on this machine's processes."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest
from guarantees.reliability.support import picks, rows
from launch import run_cli

from bench.runner import clusters
from conftest import ROOT, one_line

pytest.importorskip("dask_jobqueue")

# Two (strategy, seed) jobs of a tiny digits protocol: two scheduler jobs at once.
DIGITS = ["--dataset", "digits", "--strategies", "entropy", "random", "--seeds", "1", "--initial", "20", "--budget",
          "20", "--cycles", "3", "--epochs", "2"]
SLURM = ["--backend", "dask", "--cluster", "slurm", "--cluster-option", "cores=1", "--cluster-option", "memory=4GB",
         "--cluster-option", "walltime=00:10:00"]

# The fake scheduler: sbatch keeps a copy of the script (dask-jobqueue deletes its file once submitted, as a real
# scheduler spools it), starts it in a session of its own and prints the job id (its process group) as SLURM does;
# squeue lists the jobs whose group is alive; scancel ends a job's whole group.
SBATCH = """
import pathlib, subprocess, sys
state = pathlib.Path({state!r})
script = pathlib.Path(sys.argv[-1]).read_text()
spool = state / f"spool-{{len(list(state.glob('spool-*')))}}-{{id(script)}}.sh"
spool.write_text(script)
log = open(spool.with_suffix(".log"), "w")
job = subprocess.Popen(["bash", str(spool)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                       start_new_session=True, cwd=state)
(state / f"{{job.pid}}.job").write_text(str(spool))
print(f"Submitted batch job {{job.pid}}")
"""
SQUEUE = """
import os, pathlib
print("JOBID")
for f in sorted(pathlib.Path({state!r}).glob("*.job")):
    try:
        os.killpg(int(f.stem), 0)
        print(f.stem)
    except ProcessLookupError:
        pass
"""
SCANCEL = """
import os, signal, sys, time
for job in sys.argv[1:]:
    try:
        os.killpg(int(job), signal.SIGTERM)
    except ProcessLookupError:
        continue
    for _ in range(100):
        time.sleep(0.05)
        try:
            os.killpg(int(job), 0)
        except ProcessLookupError:
            break
    else:
        os.killpg(int(job), signal.SIGKILL)
"""


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sbatch, squeue and scancel on PATH; yields (PATH, the jobs' process groups so far). At the end, any group still
    alive fails the test (after being ended: no stray worker outlives it)."""
    bin_dir, state = tmp_path / "bin", tmp_path / "jobs"
    bin_dir.mkdir()
    state.mkdir()
    for name, body in (("sbatch", SBATCH), ("squeue", SQUEUE), ("scancel", SCANCEL)):
        tool = bin_dir / name
        tool.write_text(f"#!{sys.executable}\n" + body.format(state=str(state)))
        tool.chmod(0o755)
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    monkeypatch.setenv("PATH", path)
    groups = lambda: sorted(int(f.stem) for f in state.glob("*.job"))  # noqa: E731
    yield path, groups
    stray = [g for g in groups() if _alive(g)]
    for group in stray:
        os.killpg(group, signal.SIGKILL)
    assert not stray, f"job process groups still alive after the test: {stray}"


def _squeue() -> list[str]:
    import subprocess

    return subprocess.run(["squeue"], capture_output=True, text=True, check=True).stdout.split()[1:]


# ---------------------------------------------------------------------------------------------- the job script


def test_a_slurm_script_books_the_gpu_account_walltime_and_runs_one_single_threaded_worker_on_it():
    chosen = clusters.plan("slurm", ["queue=gpu", "account=ml-lab", "walltime=02:00:00", "cores=8", "memory=32GB",
                                     "gpus=1", "job_script_prologue=module load cuda/12.4",
                                     "job_script_prologue=source ~/al/.venv/bin/activate",
                                     "job_extra_directives=--constraint=a100"])
    lines = clusters.job_script(chosen, "cuda:0").splitlines()
    for directive in ("#SBATCH -p gpu", "#SBATCH -A ml-lab", "#SBATCH -t 02:00:00", "#SBATCH --cpus-per-task=8",
                      "#SBATCH --mem=30G", "#SBATCH --constraint=a100", "#SBATCH --gres=gpu:1"):
        assert directive in lines  # 32 GB = 29.8 GiB, which SLURM books rounded up as 30G
    setup = lines.index("module load cuda/12.4")  # the set-up lines as given, then the device, then the worker
    assert lines[setup:setup + 3] == ["module load cuda/12.4", "source ~/al/.venv/bin/activate",
                                      "export BENCH_WORKER_DEVICE=cuda:0"]
    worker = lines[setup + 3].split()
    assert worker[:3] == [sys.executable, "-m", "distributed.cli.dask_worker"] and worker[3] == clusters.PLACEHOLDER
    assert worker[worker.index("--nthreads") + 1] == "1" and "--nanny" in worker  # 8 cores booked, one cycle at a time
    assert "--nworkers" not in worker


def test_pbs_and_lsf_ask_for_the_gpu_in_their_own_syntax():
    pbs = clusters.job_script(clusters.plan("pbs", ["queue=gpu", "cores=8", "memory=32GB", "gpus=1",
                                                    "walltime=02:00:00"]), "cuda:0").splitlines()
    assert "#PBS -l select=1:ncpus=8:mem=30GB:ngpus=1" in pbs and "#PBS -l walltime=02:00:00" in pbs
    lsf = clusters.job_script(clusters.plan("lsf", ["queue=gpu", "cores=8", "memory=32GB", "gpus=1",
                                                    "walltime=02:00"]), "cuda:0").splitlines()
    assert '#BSUB -gpu "num=1"' in lsf and "#BSUB -n 8" in lsf and "#BSUB -W 02:00" in lsf
    assert "--nthreads 1" in lsf[-1] and "--nthreads 1" in pbs[-1]


def test_the_dry_run_script_is_the_one_the_cluster_submits(capsys, cli, fake_slurm):
    options = ["queue=short", "cores=2", "memory=4GB", "job_script_prologue=echo set-up"]
    chosen = clusters.plan("slurm", options)
    cluster, jobs = clusters.start(chosen, "cpu", 0)  # a scheduler, and no job submitted
    try:
        assert jobs == 0 and fake_slurm[1]() == []
        submitted = cluster.job_script().replace(cluster.scheduler_address, clusters.PLACEHOLDER)
    finally:
        cluster.close()
    assert clusters.job_script(chosen, "cpu") == submitted
    status, out, err = cli("--dry-run", *DIGITS, *SLURM[:4], *[a for o in options for a in ("--cluster-option", o)])
    assert status == 0, err
    assert "cluster   slurm: 2 job(s) at once" in out and submitted.rstrip() in out


# ---------------------------------------------------------------------------------------------- bad options


@pytest.mark.parametrize(("args", "says"), [
    (["--backend", "dask", "--cluster", "sgee"], "Unknown --cluster 'sgee'"),
    (["--backend", "dask", "--cluster", "slurm", "--cluster-option", "walltime"], "must read KEY=VALUE"),
    (["--backend", "dask", "--cluster", "slurm", "--cluster-option", "qeue=gpu"],
     "Unknown --cluster-option key of SLURMCluster 'qeue' (did you mean 'queue'?)"),
    (["--backend", "dask", "--cluster", "lsf", "--cluster-option", "account=ml"],  # LSF's is project
     "Unknown --cluster-option key of LSFCluster 'account'"),
    (["--backend", "dask", "--cluster", "slurm", "--cluster-option", "processes=4"], "one worker process"),
    (["--backend", "dask", "--cluster", "slurm", "--cluster-option", "cores=many"], "cores must be an integer"),
    (["--backend", "dask", "--cluster", "slurm", "--cluster-option", "gpus=2"], "gpus must be 0 or 1"),
    (["--cluster", "slurm"], "add --backend dask"),
    (["--backend", "dask", "--cluster", "slurm", "--scheduler-address", "tcp://head:8786"],
     "drop --scheduler-address"),
    (["--cluster-option", "queue=gpu"], "--cluster-option is for --cluster"),
    (["--backend", "dask", "--cluster", "slurm", "--jobs-per-device", "2"], "one worker per job"),
    (["--backend", "dask", "--cluster", "slurm", "--devices", "cpu", "--cluster-option", "gpus=1"],
     "resolves --devices to the CPU"),
])
def test_a_bad_cluster_option_is_one_line_and_status_2_before_any_work(cli, tmp_path, fake_slurm, args, says):
    status, out, err = cli(*DIGITS, *args, "--out", tmp_path / "run")
    assert status == 2 and says in one_line(err)
    assert not (tmp_path / "run").exists() and fake_slurm[1]() == []  # no folder, no job submitted


def test_without_dask_jobqueue_a_cluster_run_says_how_to_install_it(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # what `import dask_jobqueue` meets when it is absent
    status, _, err = cli(*DIGITS, *SLURM, "--out", tmp_path / "run")
    assert status == 2 and "--cluster slurm needs dask-jobqueue: pip install 'al-bench[dask]'" in one_line(err)
    assert not (tmp_path / "run").exists()


def test_a_submission_the_scheduler_refuses_or_cannot_make_is_one_line_not_a_run_that_waits(cli, tmp_path,
                                                                                             monkeypatch):
    refusing = tmp_path / "refusing"
    refusing.mkdir()
    (refusing / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: Invalid account or account/partition "
                                     "combination specified' >&2\nexit 1\n")
    (refusing / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{refusing}{os.pathsep}{os.environ['PATH']}")
    status, _, err = cli(*DIGITS, *SLURM, "--cluster-option", "account=nobody", "--out", tmp_path / "run")
    assert status == 2 and one_line(err) == ("error: --cluster slurm: sbatch refused the job: sbatch: error: Invalid "
                                             "account or account/partition combination specified")
    assert not (tmp_path / "run" / "cycles.parquet").exists()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no sbatch at all: not a node of the cluster
    status, _, err = cli(*DIGITS, *SLURM, "--out", tmp_path / "run")
    assert status == 2 and "submits its jobs with sbatch, which is not on PATH here" in one_line(err)


# ---------------------------------------------------------------------------------------------- the fake scheduler


def test_a_dask_worker_starts_from_the_generated_script_and_connects(fake_slurm):
    from dask.distributed import Client

    chosen = clusters.plan("slurm", ["cores=2", "memory=4GB", "job_script_prologue=export FROM_PROLOGUE=yes"])
    cluster, jobs = clusters.start(chosen, "cpu", 1)
    try:
        with Client(cluster) as client:
            client.wait_for_workers(1, timeout=120)
            assert jobs == 1 and list(client.nthreads().values()) == [1]  # one thread although 2 cores are booked
            seen = client.run(lambda: (os.environ.get("BENCH_WORKER_DEVICE"), os.environ.get("FROM_PROLOGUE"),
                                       os.getpgid(0)))
            (device, prologue, group), = seen.values()
            assert (device, prologue) == ("cpu", "yes")  # the script's lines ran before the worker
            assert fake_slurm[1]() == [group] and _squeue() == [str(group)]  # the worker is the submitted job
    finally:
        cluster.close()
    deadline = time.monotonic() + 30
    while _alive(group) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(group) and _squeue() == []  # closing the cluster cancelled its job


def test_a_run_on_the_fake_slurm_gives_the_rows_of_the_same_run_on_this_machine(tmp_path, fake_slurm):
    path, groups = fake_slurm
    local = run_cli(*DIGITS, "--out", tmp_path / "local")
    assert local.returncode == 0, local.stderr
    result = run_cli(*DIGITS, *SLURM, "--out", tmp_path / "slurm", env={"PATH": path})
    assert result.returncode == 0, result.stderr
    assert len(groups()) == 2  # one scheduler job per (strategy, seed) job
    assert not any(_alive(g) for g in groups())  # the run cancelled its jobs as it ended
    assert len(rows(tmp_path / "slurm")) == 6  # 2 jobs x 3 cycles
    for table in (rows, picks):
        pd_equal(table(tmp_path / "slurm"), table(tmp_path / "local"))


def pd_equal(left, right) -> None:
    import pandas as pd

    pd.testing.assert_frame_equal(left, right, check_exact=True)


def test_the_sample_job_script_in_docs_clusters_is_what_its_command_prints():
    import shlex

    page = (ROOT / "docs" / "clusters.md").read_text().split("## SLURM, PBS and LSF", 1)[1]
    command = page.split("    python run_bench.py", 1)[1].split("\n\n", 1)[0].replace("\\\n", " ")
    argv = shlex.split(command)
    options = [argv[i + 1] for i, word in enumerate(argv) if word == "--cluster-option"]
    jobs = len(argv[argv.index("--strategies") + 1:argv.index("--seeds")]) * int(argv[argv.index("--seeds") + 1])
    sample = page.split("After the job lines, it says:\n\n```\n", 1)[1].split("```", 1)[0]
    chosen = clusters.plan(argv[argv.index("--cluster") + 1], options)
    assert sample.rstrip() == clusters.describe(chosen, argv[argv.index("--devices") + 1].split(","), jobs)
    assert "#SBATCH --gres=gpu:1" in sample and "8 job(s) at once" in sample  # 15 jobs, max_jobs=8
