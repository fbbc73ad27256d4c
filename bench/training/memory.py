"""The peak memory of one phase of a worker (the selection of a cycle), for the report's cost table.

On CUDA: torch.cuda.reset_peak_memory_stats before the phase and max_memory_allocated after it, the tensors' own
peak on the device ("cuda"). On the CPU: the process's resident-set high-water mark (VmHWM in /proc/self/status),
reset to the current resident set by writing "5" to /proc/self/clear_refs before the phase ("rss"). Where that
reset is refused (not Linux, a kernel or sandbox without it), getrusage's ru_maxrss, the peak over the process's
whole life, which may predate the phase ("rss-lifetime": an upper bound, and no rise is computed from it).

Megabytes are MiB (2**20 bytes). The numbers depend on the machine, the allocator and what the process did before
(freed memory the allocator keeps is reused without raising the resident set): they describe a pick's cost, never
a verdict."""

from __future__ import annotations

import math
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

MIB = 2**20
STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
RESET_HWM = "5"  # clear_refs: reset the peak resident set size to the current one (Linux >= 4.0)
SOURCES = ("cuda", "rss", "rss-lifetime")  # what select_memory says was measured


@dataclass(frozen=True)
class Peak:
    """What one phase's measurement found."""

    peak_mb: float  # the process's (CUDA: the device's allocated) peak during the phase, MiB
    rise_mb: float  # the peak above the level at the phase's start, MiB; NaN for a lifetime peak
    source: str  # one of SOURCES

    def columns(self) -> dict[str, float | str]:
        """The cycle row's columns: select_peak_mb, select_rise_mb, select_memory."""
        return {"select_peak_mb": self.peak_mb, "select_rise_mb": self.rise_mb, "select_memory": self.source}


def _status_kib(field: str) -> int | None:
    """A 'VmHWM:   1234 kB' line of /proc/self/status in KiB, or None where there is none."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _lifetime_peak_kib() -> int:
    """getrusage's ru_maxrss in KiB (macOS reports bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def _reset_hwm() -> bool:
    """Reset the resident-set high-water mark to the current resident set; False where refused."""
    try:
        CLEAR_REFS.write_text(RESET_HWM)
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


# the row of a cycle that picks nothing
NOT_MEASURED = {"select_peak_mb": math.nan, "select_rise_mb": math.nan, "select_memory": ""}


class PeakMemory:
    """The peak over a phase: `meter = PeakMemory(device).start()`, the phase, then `meter.stop()` (a Peak)."""

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self._start = 0  # bytes (CUDA) or KiB (CPU) at the phase's start
        self._rss = False  # whether the high-water mark was reset (else a lifetime peak)

    def start(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            self._rss = _reset_hwm()
            self._start = _status_kib("VmRSS") or 0
        return self

    def stop(self) -> Peak:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            return Peak(peak / MIB, (peak - self._start) / MIB, "cuda")
        if self._rss:
            peak = _status_kib("VmHWM") or 0
            return Peak(peak / 1024, max(peak - self._start, 0) / 1024, "rss")
        return Peak(_lifetime_peak_kib() / 1024, math.nan, "rss-lifetime")
