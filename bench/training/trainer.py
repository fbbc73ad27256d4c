"""The shared trainer: one for every strategy.

Images live on the device as uint8, padded once for random crops. A batch is gathered by index,
cropped and flipped per sample in one batched gather, normalised and fed channels_last. No PIL, no
DataLoader workers, no per-sample Python on the hot path. Evaluation happens once per cycle.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sysconfig
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.config import Protocol
from bench.core.seeding import use_deterministic
from bench.data.images import ImageData
from bench.models.backbones import AuxHead, Backbone
from bench.training.optim import build_optimizer, set_learning_rate


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


# ---------------------------------------------------------------------------------------------- precision


def cpu_has_bf16() -> bool:
    """Native bf16 matrix instructions (AVX512-BF16 / AMX): without them bf16 autocast is slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """auto: bf16 autocast on CUDA devices that support it natively (compute capability 8.0 on: Ampere and later)
    and on CPUs with native bf16, else fp32. tf32 computes in fp32 tensors (use_tf32 lets their matmuls round)."""
    if precision == "auto":
        if device.type == "cuda":  # torch.cuda.is_bf16_supported() counts emulation: slower than fp32 before 8.0
            native = bool(torch.version.hip) or torch.cuda.get_device_capability(device) >= (8, 0)
            return torch.bfloat16 if native else torch.float32
        return torch.bfloat16 if cpu_has_bf16() else torch.float32
    return {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def precision_name(precision: str, device: torch.device) -> str:
    """The precision a run computes in, by name: float32, tf32, bfloat16 or float16 (what config.json records and
    what a job's identity holds)."""
    return "tf32" if precision == "tf32" else str(resolve_precision(precision, device)).removeprefix("torch.")


def use_tf32(enabled: bool) -> None:
    """fp32 matmuls and convolutions on CUDA in IEEE fp32, or in TF32 (inputs rounded to 10 bits of mantissa) when
    enabled. torch 2.14 runs cuDNN's fp32 convolutions in TF32 by default, so "fp32" would not be fp32. Global
    settings, set by every trainer (the ops autocast keeps in fp32 follow them too); through the fp32_precision
    API only, as torch refuses a mix of it and the older allow_tf32 flags."""
    mode = "tf32" if enabled else "ieee"
    torch.backends.cuda.matmul.fp32_precision = mode
    torch.backends.cudnn.conv.fp32_precision = mode
    torch.backends.cudnn.rnn.fp32_precision = mode


# ---------------------------------------------------------------------------------------------- data on device


@dataclass
class DeviceData:
    """A dataset moved to the device once. Training images are zero-padded by `pad` pixels on each side."""

    x_train: torch.Tensor  # [N, C, H + 2 pad, W + 2 pad] uint8
    y_train: torch.Tensor  # [N] int64
    x_test: torch.Tensor  # [M, C, H, W] uint8
    y_test: torch.Tensor  # [M] int64
    scale: torch.Tensor  # [1, C, 1, 1] float32: 1 / (255 std)
    shift: torch.Tensor  # [1, C, 1, 1] float32: -mean / std
    pad: int
    flip: bool

    @classmethod
    def from_images(cls, data: ImageData, device: torch.device, augment: bool = True) -> DeviceData:
        pad = data.pad if augment else 0
        mean = torch.tensor(data.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(data.std, dtype=torch.float32).view(1, -1, 1, 1)
        return cls(
            # uint8 on the device: 4x fewer bytes to hold and gather than float32.
            x_train=F.pad(data.x_train, (pad, pad, pad, pad)).to(device),
            y_train=data.y_train.to(device),
            x_test=data.x_test.to(device),
            y_test=data.y_test.to(device),
            scale=(1.0 / (255.0 * std)).to(device),
            shift=(-mean / std).to(device),
            pad=pad,
            flip=data.flip and augment,
        )

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    def train_images(self, idx: torch.Tensor) -> torch.Tensor:
        """Un-augmented training images (the centre of the padded ones), for scoring. [B, C, H, W] uint8"""
        p = self.pad
        x = self.x_train[idx]
        return x[:, :, p:x.shape[2] - p, p:x.shape[3] - p] if p else x

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, H, W] -> normalised float32, channels_last (faster convolutions on CPU and GPU)."""
        x = x.float().mul_(self.scale).add_(self.shift)
        return x.contiguous(memory_format=torch.channels_last)


def crop_flip(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop of each padded image back to its original size, and random horizontal flips, drawn per
    image, as one gather for the whole batch. x: [B, C, H + 2 pad, W + 2 pad] uint8 -> [B, C, H, W]."""
    b, c, hp, wp = x.shape
    h, w = hp - 2 * pad, wp - 2 * pad
    dev = x.device
    oy = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=dev)  # [B, 1]
    ox = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=dev)
    rows = oy + torch.arange(h, device=dev)  # [B, H]
    cols = ox + torch.arange(w, device=dev)  # [B, W]
    if flip:
        flipped = torch.rand(b, 1, generator=generator, device=dev) < 0.5  # [B, 1]
        cols = torch.where(flipped, cols.flip(1), cols)
    pixels = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, h * w)  # [B, 1, H*W] into the padded image
    return x.flatten(2).gather(2, pixels.expand(b, c, h * w)).view(b, c, h, w)


def resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """[B, C, H, W] float -> [B, C, size, size], bilinear, antialiased where it shrinks (None: unchanged). After
    normalisation, which is per-channel affine and so commutes with interpolation: one float pass, no uint8 rounding."""
    if size is None or tuple(x.shape[2:]) == (size, size):
        return x
    shrink = size < x.shape[2] or size < x.shape[3]
    out = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    return out.contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------------------------------------- trainer


@dataclass
class FitResult:
    seconds: float
    final_loss: float  # mean training loss of the last epoch (cross-entropy + auxiliary term)


class Trainer:
    def __init__(self, data: DeviceData, protocol: Protocol, device: torch.device, compile: bool = False) -> None:
        self.data = data
        self.protocol = protocol
        self.device = device
        self.dtype = resolve_precision(protocol.precision, device)
        # Every worker builds its trainer before its first CUDA kernel: the process's numerics are set here.
        use_deterministic(protocol.deterministic and device.type == "cuda")  # the CPU keeps torch's defaults
        use_tf32(protocol.precision == "tf32")
        self.compile = compile  # torch.compile the model's and the aux head's forward (see compile_works)

    def _net(self, module: nn.Module) -> nn.Module:
        # A new wrapper per call is cheap: dynamo caches compiled code per code object, and a new model of the
        # same class (the next cycle's) reuses it, its parameters being inputs of the graph.
        return torch.compile(module) if self.compile else module

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, H, W] -> the network's input: normalised float32, resized when the protocol asks."""
        return resize(self.data.normalise(x), self.protocol.image_size)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def fit(self, model: Backbone, labeled: torch.Tensor, generator: torch.Generator,
            aux_head: AuxHead | None = None, aux_generator: torch.Generator | None = None) -> FitResult:
        """Train for protocol.epochs on the labeled indices ([L] int64 on the device).

        Fresh optimizers each call (as the reference code does per cycle); the aux head gets its own optimizer
        with the backbone's settings and its own random stream (aux_generator), so that a head which draws
        (BALD's dropout) leaves the backbone's augmentation draws as they are for every other strategy."""
        start = synced_clock(self.device)
        p, data = self.protocol, self.data
        model.train()
        net = self._net(model)
        optimizers = [build_optimizer(model.parameters(), p)]
        if aux_head is not None:
            aux_head.train()
            optimizers.append(build_optimizer(aux_head.parameters(), p))
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        n = labeled.numel()
        # batch norm cannot train on one image: such a batch is skipped (its sample comes round next epoch)
        skip_single = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for net in (model, aux_head) if net is not None
                          for m in net.modules())
        epoch_loss = torch.zeros((), device=self.device)
        for epoch in range(p.epochs):
            for opt in optimizers:
                set_learning_rate(opt, p, epoch)
            order = labeled[torch.randperm(n, generator=generator, device=self.device)]
            epoch_loss = torch.zeros((), device=self.device)  # summed on the device: no sync per step
            for first in range(0, n, p.batch_size):
                idx = order[first:first + p.batch_size]
                if skip_single and idx.numel() == 1 < n:
                    continue
                x = data.x_train[idx]
                if data.pad or data.flip:
                    x = crop_flip(x, data.pad, data.flip, generator)
                x, y = self.prepare(x), data.y_train[idx]
                with self.autocast():
                    out = net(x)
                    per_sample = F.cross_entropy(out.logits.float(), y, reduction="none")  # [B]
                    loss = per_sample.mean()
                    if aux_head is not None:
                        loss = loss + aux_head.training_loss(out, per_sample, y, epoch, aux_generator)
                for opt in optimizers:
                    opt.zero_grad()
                scaler.scale(loss).backward()
                for opt in optimizers:
                    scaler.step(opt)
                scaler.update()
                epoch_loss += loss.detach() * idx.numel()
            if not torch.isfinite(epoch_loss):  # one sync per epoch
                raise TrainingDiverged(f"training loss became {epoch_loss.item()} at epoch {epoch + 1}")
        return FitResult(synced_clock(self.device) - start, float(epoch_loss) / max(n, 1))

    @torch.inference_mode()
    def evaluate(self, model: Backbone) -> tuple[float, float]:
        """Test accuracy (0..1) and mean cross-entropy."""
        model.eval()
        net = self._net(model)
        data, bs = self.data, self.protocol.eval_batch_size
        correct = torch.zeros((), device=self.device)
        total_loss = torch.zeros((), device=self.device)
        for first in range(0, data.x_test.shape[0], bs):
            x, y = data.x_test[first:first + bs], data.y_test[first:first + bs]
            with self.autocast():
                logits = net(self.prepare(x)).logits.float()
            correct += (logits.argmax(1) == y).sum()
            total_loss += F.cross_entropy(logits, y, reduction="sum")
        m = data.x_test.shape[0]
        return float(correct) / m, float(total_loss) / m

    @torch.inference_mode()
    def infer(self, model: Backbone, idx: torch.Tensor, aux_head: AuxHead | None = None,
              stage_features: bool = False) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """One batched pass over training images idx ([n] int64): "logits" and "embeddings" always,
        "stage_features" (each stage's map, globally average-pooled) when asked, "aux_output" when an auxiliary
        head is given. The keys are the strategies' `needs` names. All float32 on the device."""
        model.eval()
        net = self._net(model)
        if aux_head is not None:
            aux_head.eval()
            aux_net = self._net(aux_head)
        parts: dict[str, list] = {"logits": [], "embeddings": [], "stage_features": [], "aux_output": []}
        for first in range(0, idx.numel(), self.protocol.eval_batch_size):
            x = self.prepare(self.data.train_images(idx[first:first + self.protocol.eval_batch_size]))
            with self.autocast():
                out = net(x)
                if aux_head is not None:
                    parts["aux_output"].append(aux_net(out).float().reshape(-1))
            parts["logits"].append(out.logits.float())
            parts["embeddings"].append(out.embedding.float())
            if stage_features:
                # a map pooled; a vector model's hidden layer ([B, width]) as it is
                parts["stage_features"].append([f.float().mean(dim=(2, 3)) if f.dim() == 4 else f.float()
                                                for f in out.features])
        result: dict[str, torch.Tensor | list[torch.Tensor]] = {
            "logits": torch.cat(parts["logits"]),  # [n, n_classes]
            "embeddings": torch.cat(parts["embeddings"]),  # [n, d]
        }
        if aux_head is not None:
            result["aux_output"] = torch.cat(parts["aux_output"])  # [n]
        if stage_features:
            stages = zip(*parts["stage_features"], strict=True)
            result["stage_features"] = [torch.cat(stage) for stage in stages]  # per stage: [n, C_s]
        return result


def synced_clock(device: torch.device) -> float:
    """time.perf_counter() once the device has run what was queued on it: on CUDA the host only queues kernels,
    so an unsynchronised read times their launches and leaves their work to whichever phase syncs next."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def compile_works(device: torch.device) -> str | None:
    """None when torch.compile can work here, else why not, in one line: inductor needs a working C++ compiler for
    the CPU; for CUDA, triton and what triton builds its kernel launchers with. Checked by the driver before a
    --compile run (a probe compilation of the model would cost tens of seconds; a one-line program costs a
    fraction of one), which otherwise runs uncompiled with a warning."""
    if device.type == "cuda":
        return _triton_problem()
    compiler = os.environ.get("CXX", "g++")
    if not shutil.which(compiler):
        return f"no C++ compiler {compiler!r} on PATH"
    return _compiler_problem(compiler, "C++")


def _triton_problem() -> str | None:
    """Why triton cannot launch a kernel here, or None. Importing is not enough: at its first launch triton
    compiles the kernel's launcher as a C extension, with CC, else gcc, else clang (as triton picks), and against
    Python.h; without them every compiled job fails at its first step."""
    if not importlib.util.find_spec("triton"):
        return "triton is not installed"
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        return (f"no Python.h in {include} (triton compiles its kernel launchers against it): install Python's "
                "development headers (python3-dev, or python3-devel)")
    named = os.environ.get("CC")
    compiler = shutil.which(named) if named else shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        which = f"{named!r}" if named else "(gcc or clang, or one named by CC)"
        return f"no C compiler {which} on PATH (triton builds its kernel launchers with one)"
    return _compiler_problem(compiler, "C")


def _compiler_problem(compiler: str, language: str) -> str | None:
    """Why the compiler cannot build a one-line program in language ("C" or "C++"), or None."""
    try:  # present is not working: a broken compiler would fail every job
        probe = subprocess.run([compiler, "-x", language.lower(), "-c", "-", "-o", os.devnull],
                               input="int main() { return 0; }\n", capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        return f"the {language} compiler {compiler!r} cannot run ({type(err).__name__})"
    if probe.returncode != 0:
        return f"the {language} compiler {compiler!r} fails on a one-line program (exit {probe.returncode})"
    return None
