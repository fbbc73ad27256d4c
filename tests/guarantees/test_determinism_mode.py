"""The CUDA path's numerics, checked on the CPU: deterministic mode and its switch, fp32 that is IEEE fp32 unless
tf32 is asked for, auto precision on GPUs with emulated bf16, the CUDA generators seeded_globals restores, and
the device type and resolved precision in a folder's identity. torch.cuda is patched where a test needs a GPU."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import types

import pandas as pd
import pytest
import torch

from bench.analysis.paired import compare_to_baseline
from bench.analysis.record import stored_design
from bench.core import seeding
from bench.core.config import Protocol, protocol_identity
from bench.core.errors import UserError
from bench.models.build import check_deterministic
from bench.results.identity import config_differences
from bench.runner.benchmark import benchmark_round, dry_run
from bench.runner.resolve import RunOptions, build_config, resolve_numerics
from bench.training.linear_probe import embeddings_file
from bench.training.trainer import Trainer, precision_name, resolve_precision
from conftest import TINY


class FakeCudaGenerators:
    """Two CUDA devices' generators, held as CPU generators, behind torch.cuda's rng functions."""

    def __init__(self, monkeypatch) -> None:
        self.generators = [torch.Generator().manual_seed(100), torch.Generator().manual_seed(101)]
        monkeypatch.setattr(torch.cuda, "default_generators", tuple(self.generators), raising=False)
        monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device=0: self.generators[int(device)].get_state())
        monkeypatch.setattr(torch.cuda, "set_rng_state",
                            lambda state, device=0: self.generators[int(device)].set_state(state))
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "manual_seed_all", self.refuse)  # the lazy path would hide a leak
        monkeypatch.setattr(torch.cuda, "manual_seed", self.refuse)

    @staticmethod
    def refuse(seed: int) -> None:
        raise AssertionError("every CUDA device's generator was seeded, and seeded_globals restores one")

    def draws(self) -> list[float]:
        return [torch.rand(1, generator=torch.Generator().set_state(g.get_state())).item() for g in self.generators]


def test_seeded_globals_seeds_and_restores_the_cuda_generator_of_its_device_and_no_other(monkeypatch):
    fake = FakeCudaGenerators(monkeypatch)
    before = fake.draws()
    with seeding.seeded_globals(0, "purpose", device="cuda:1"):
        inside = fake.draws()
        expected = torch.rand(1, generator=torch.Generator().manual_seed(seeding.derive_seed(0, "purpose"))).item()
        assert inside[1] == expected  # device 1 seeded from (seed, purpose)
        assert inside[0] == before[0]  # device 0 left alone
    assert fake.draws() == before  # and restored after the block


def test_seeded_globals_on_the_cpu_touches_no_cuda_generator(monkeypatch):
    fake = FakeCudaGenerators(monkeypatch)
    before = fake.draws()
    cpu_before = torch.get_rng_state()
    with seeding.seeded_globals(3, "init"):
        assert torch.rand(1).item() == torch.rand(1, generator=torch.Generator().manual_seed(
            seeding.derive_seed(3, "init"))).item()
    assert fake.draws() == before and torch.equal(torch.get_rng_state(), cpu_before)


# ---------------------------------------------------------------------------------------------- global torch settings


@pytest.fixture
def torch_settings():
    """The global settings the trainer sets, restored after the test."""
    saved = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision,
             torch.backends.cudnn.rnn.fp32_precision, torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled(),
             os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    yield
    (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision,
     torch.backends.cudnn.rnn.fp32_precision, torch.backends.cudnn.deterministic,
     torch.backends.cudnn.benchmark) = saved[:5]
    torch.use_deterministic_algorithms(saved[5])
    if saved[6] is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved[6]


def tf32_flags() -> tuple[str, str, str]:
    return (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision,
            torch.backends.cudnn.rnn.fp32_precision)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "auto"])
def test_fp32_is_ieee_fp32_whatever_the_precision_unless_tf32_is_asked(torch_settings, precision):
    # torch 2.14's default: cuDNN convolutions in TF32 (10 bits of mantissa), so "fp32" on CUDA would not be fp32
    torch.backends.cudnn.conv.fp32_precision = torch.backends.cudnn.rnn.fp32_precision = "tf32"
    Trainer(None, Protocol(precision=precision), torch.device("cpu"))
    assert tf32_flags() == ("ieee", "ieee", "ieee")
    trainer = Trainer(None, Protocol(precision="tf32"), torch.device("cpu"))
    assert tf32_flags() == ("tf32", "tf32", "tf32") and trainer.dtype == torch.float32


def test_tf32_resolves_and_is_described_as_tf32():
    assert precision_name("tf32", torch.device("cpu")) == "tf32"
    assert resolve_precision("tf32", torch.device("cpu")) == torch.float32  # fp32 tensors; the matmuls round
    assert precision_name("fp32", torch.device("cpu")) == "float32"
    assert precision_name("bf16", torch.device("cpu")) == "bfloat16"
    Protocol(precision="tf32").validate()


def test_deterministic_mode_sets_cudnn_torch_and_cublas(torch_settings, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.backends.cudnn.benchmark = True
    seeding.use_deterministic(True)
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert torch.are_deterministic_algorithms_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    seeding.use_deterministic(False)
    assert not torch.backends.cudnn.deterministic and not torch.are_deterministic_algorithms_enabled()


def gpu(monkeypatch, major: int, emulated_bf16: bool = True) -> None:
    """torch.cuda reporting one GPU of compute capability major.0 (bf16 emulated below 8.0 when emulated_bf16)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device=None: types.SimpleNamespace(major=major, minor=0, name=f"GPU sm_{major}0"))
    monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda device: emulated_bf16)


@pytest.mark.parametrize(("major", "expected"), [(7, torch.float32), (8, torch.bfloat16), (9, torch.bfloat16)])
def test_auto_precision_takes_bf16_only_where_the_gpu_has_it_natively(monkeypatch, major, expected):
    gpu(monkeypatch, major)  # a V100 or T4 (7.x) emulates bf16: slower than fp32
    assert resolve_precision("auto", torch.device("cuda:0")) == expected


def test_the_trainer_turns_deterministic_mode_on_for_cuda_unless_asked_not_to(torch_settings, monkeypatch):
    gpu(monkeypatch, 8)
    Trainer(None, Protocol(precision="fp32"), torch.device("cuda:0"))
    assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    Trainer(None, Protocol(precision="fp32", deterministic=False), torch.device("cuda:0"))
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    seeding.use_deterministic(True)
    Trainer(None, Protocol(precision="fp32"), torch.device("cpu"))  # the CPU keeps torch's defaults
    assert not torch.are_deterministic_algorithms_enabled()


# ---------------------------------------------------------------------------------------------- a job's identity


def identity_hash(config, strategy: str, **extra) -> str:
    """The job hash as it was computed before the device type and precision entered it, plus `extra`."""
    identity = {"protocol": protocol_identity(config.protocol), "dataset": config.dataset_fingerprint,
                "strategy": strategy, "params": dict(sorted(config.strategy_params.get(strategy, {}).items())),
                **extra}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]


def test_the_device_type_resolved_precision_and_mode_enter_the_job_identity_and_a_cpu_run_keeps_its_own():
    config = build_config(strategies=["random"], seeds=1)
    cpu = dataclasses.replace(config, device_type="cpu", precision_used="float32")
    assert cpu.job_hash("random") == config.job_hash("random") == identity_hash(config, "random")
    gpu_bf16 = dataclasses.replace(config, device_type="cuda", precision_used="bfloat16")
    gpu_fp32 = dataclasses.replace(config, device_type="cuda", precision_used="float32")
    assert gpu_bf16.job_hash("random") == identity_hash(
        config, "random", numerics={"device_type": "cuda", "precision": "bfloat16"})
    nondeterministic = build_config(strategies=["random"], seeds=1, protocol={"deterministic": False})
    tf32 = build_config(strategies=["random"], seeds=1, protocol={"precision": "tf32"})
    hashes = {c.job_hash("random") for c in (cpu, gpu_bf16, gpu_fp32, nondeterministic, tf32)}
    assert len(hashes) == 5
    # auto on a CPU with native bf16: the rows keep the CPU identity they always had; config.json tells them apart
    cpu_bf16 = dataclasses.replace(config, precision_used="bfloat16")
    assert cpu_bf16.job_hash("random") == cpu.job_hash("random")
    stored = json.loads(json.dumps(cpu.result_defining(), default=str))
    assert config_differences(stored, cpu_bf16) == ["precision 'float32' -> 'bfloat16'"]
    assert gpu_bf16.result_defining()["device_type"] == "cuda" and gpu_bf16.result_defining()["precision"] == "bfloat16"


def test_a_folder_written_before_the_device_type_was_recorded_is_a_cpu_folder_in_its_recorded_precision():
    config = dataclasses.replace(build_config(strategies=["random"], seeds=1), precision_used="float32")
    old = {k: v for k, v in json.loads(json.dumps(config.result_defining(), default=str)).items()
           if k not in ("device_type", "precision")}
    assert config_differences({**old, "precision": "torch.float32"}, config) == []
    assert config_differences(old, config) == []  # no precision recorded: as its protocol's precision on a CPU
    on_gpu = dataclasses.replace(config, device_type="cuda", precision_used="bfloat16")
    assert config_differences({**old, "precision": "torch.float32"}, on_gpu) == [
        "device_type 'cpu' -> 'cuda'", "precision 'float32' -> 'bfloat16'"]


def test_a_cpu_folder_refuses_to_resume_on_a_gpu_in_one_line(cli, tmp_path, tiny_npz, monkeypatch, torch_settings):
    out = tmp_path / "run"
    args = ["--strategies", "random", "--dataset", f"npz:{tiny_npz}", *TINY, "--seeds", "1", "--out", out]
    assert cli(*args, "--devices", "cpu", "--precision", "fp32")[0] == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["device_type"], config["precision"], config["protocol"]["deterministic"]) == (
        "cpu", "float32", True)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    gpu(monkeypatch, 8)
    status, _, err = cli(*args, "--devices", "cuda:0", "--precision", "fp32")
    assert status == 2 and err.count("\n") == 1 and "device_type 'cpu' -> 'cuda'" in err, err
    status, _, err = cli(*args, "--devices", "cpu", "--precision", "fp32", "--nondeterministic")
    assert status == 2 and "protocol.deterministic True -> False" in err, err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("model", ["torchvision:vgg11", "torchvision:alexnet"])
def test_a_model_deterministic_mode_cannot_train_on_cuda_is_refused_unless_nondeterministic(monkeypatch, model):
    gpu(monkeypatch, 8)
    config = build_config(strategies=["random"], seeds=1, protocol={"model": model}, devices="cuda:0")
    with pytest.raises(UserError, match="cannot train deterministically on CUDA.*--nondeterministic"):
        dry_run(config)
    with pytest.raises(UserError, match="cannot train deterministically"):
        benchmark_round(config, RunOptions())
    check_deterministic(model, "cuda", False)  # asked for: allowed
    check_deterministic(model, "cpu", True)  # the CPU's kernels are deterministic
    check_deterministic("torchvision:resnet18", "cuda", True)  # its pooling to 1x1 is a mean


def test_describe_run_and_config_json_name_tf32(monkeypatch):
    config = build_config(strategies=["random"], seeds=1, protocol={"precision": "tf32"}, devices="cpu")
    assert "precision tf32 -> tf32" in dry_run(config)
    assert resolve_numerics(config, ["cpu"]).result_defining()["precision"] == "tf32"  # config.json's "precision"
    with pytest.raises(UserError, match="--precision tf32 has no effect with --train-mode frozen"):
        build_config(strategies=["random"], protocol={"precision": "tf32", "train_mode": "frozen"})


# ---------------------------------------------------------------------------------------------- statistical pairing


def cycles_with_noisy_cycle_0(n_test: int) -> pd.DataFrame:
    """random and entropy, 4 seeds, 3 budgets; at cycle 0 the two differ by at most one test example (the
    noise of nondeterministic kernels), afterwards by 3 to 6 examples."""
    noise = [1, -1, 0, 1]  # test examples, per seed, at cycle 0
    gain = [[3, 5], [4, 6], [5, 3], [6, 4]]
    rows = []
    for seed in range(4):
        base = [40 + seed, 55 + seed, 62 + seed]  # correct test examples of random
        other = [base[0] + noise[seed], base[1] + gain[seed][0], base[2] + gain[seed][1]]
        for strategy, correct in (("random", base), ("entropy", other)):
            rows += [{"run": "r", "dataset": "d", "model": "m", "strategy": strategy, "seed": seed, "cycle": c,
                      "n_labeled": 20 + 10 * c, "test_acc": k / n_test, "ll_spearman": math.nan}
                     for c, k in enumerate(correct)]
    return pd.DataFrame(rows)


def test_nondeterministic_pairing_leaves_out_budgets_within_one_test_example():
    cycles = cycles_with_noisy_cycle_0(n_test=100)
    exact = compare_to_baseline(cycles, "random")  # deterministic: only differences of exactly zero are left out
    per_budget = exact[exact["metric"] == "test_acc"].set_index("cycle")["family"]
    assert per_budget.to_dict() == {0: "secondary", 1: "secondary", 2: "secondary"}
    noisy = compare_to_baseline(cycles, "random", tolerance=1 / 100)
    per_budget = noisy[noisy["metric"] == "test_acc"].set_index("cycle")
    assert per_budget["family"].to_dict() == {0: "left out", 1: "secondary", 2: "secondary"}
    # Holm over the two budgets left: the smaller p times 2, the larger times 1 (step-down, monotone)
    p = sorted(per_budget.loc[[1, 2], "t_p"])
    assert sorted(per_budget.loc[[1, 2], "p_holm"]) == pytest.approx([min(1, 2 * p[0]), max(2 * p[0], p[1])])
    assert math.isnan(per_budget.loc[0, "p_holm"])


def write_config(folder, deterministic: bool | None, device_type: str | None = "cuda", n_test: int = 100) -> None:
    protocol = {} if deterministic is None else {"deterministic": deterministic}
    folder.mkdir(exist_ok=True)
    where = {} if device_type is None else {"device_type": device_type}
    (folder / "config.json").write_text(json.dumps({"protocol": protocol, "dataset": {"n_test": n_test}, **where}))


def test_the_pairing_tolerance_is_one_test_example_only_where_the_run_was_nondeterministic_on_cuda(tmp_path):
    write_config(tmp_path / "a", False, n_test=250)
    write_config(tmp_path / "b", True)
    write_config(tmp_path / "c", None)  # a folder written before the switch existed: deterministic
    write_config(tmp_path / "d", False, "cpu")  # the CPU's kernels are deterministic whatever the switch
    write_config(tmp_path / "e", False, None)  # a folder written before the device type was: the CPU
    assert stored_design(tmp_path / "a").tolerance == pytest.approx(1 / 250)
    assert {stored_design(tmp_path / name).tolerance for name in "bcde"} == {0}


def test_a_nondeterministic_cuda_run_reports_statistical_pairing(cli, tmp_path, tiny_npz):
    out = tmp_path / "run"
    assert cli("--strategies", "random", "entropy", "--dataset", f"npz:{tiny_npz}", *TINY, "--seeds", "2",
               "--devices", "cpu", "--out", out)[0] == 0
    assert "pairing is statistical" not in (out / "report" / "report.md").read_text()
    config = json.loads((out / "config.json").read_text())
    config["device_type"], config["protocol"]["deterministic"] = "cuda", False  # as a GPU run would record it
    (out / "config.json").write_text(json.dumps(config))
    assert cli("report", out)[0] == 0
    report = (out / "report" / "report.md").read_text()
    assert "pairing is statistical, not exact" in report
    assert "within one test example of random" in report  # cycle 0: identical here, and so within one


def test_frozen_embeddings_computed_on_a_gpu_are_cached_apart_from_the_cpus(tmp_path):
    config = build_config(strategies=["random"], seeds=1, protocol={"train_mode": "frozen"}, out=tmp_path)
    cpu = embeddings_file(dataclasses.replace(config, precision_used="float32"))
    assert cpu == embeddings_file(config)  # the CPU's cache keeps its name
    assert embeddings_file(dataclasses.replace(config, device_type="cuda", precision_used="float32")) != cpu
