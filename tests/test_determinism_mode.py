"""The CUDA path's numerics, checked on the CPU: deterministic mode and its switch, fp32 that is IEEE fp32 unless
tf32 is asked for, auto precision on GPUs with emulated bf16, the CUDA generators seeded_globals restores, and
the device type and resolved precision in a folder's identity. torch.cuda is patched where a test needs a GPU."""

from __future__ import annotations

import torch

from bench import seeding


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
