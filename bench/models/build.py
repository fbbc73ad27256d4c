"""Every model a run can name, built and checked before any work: the registered models and torchvision's
classification models (`torchvision:NAME`), a user's model file (`--model-file`), and the contract checks (input
size, stage features, a factory that returns a new network each call, the --weights file against the model).

A factory's plain nn.Module is adapted to the Backbone contract by bench.models.adapter; weights files are read and
loaded by bench.models.weights.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from bench.core.errors import UserError, regular_file
from bench.core.registry import code_digest, file_sha256, import_user_file, unknown_name
from bench.core.seeding import globals_seeded_with
from bench.models.adapter import AdaptedBackbone, fx_quiet
from bench.models.backbones import MODELS, Backbone, Factory, ModelOutput
from bench.models.mlp import VECTOR_MODELS  # importing it registers the vector models, linear and mlp
from bench.models.weights import load_weights, read_weights

TORCHVISION = "torchvision:"
NATIVE_SIZE = (224, 224)  # torchvision's ImageNet input: the probe size when the caller gives none


# ---------------------------------------------------------------------------------------------- names


# torchvision is imported where a model needs it (it takes seconds to import): every run does not pay for it.


def torchvision_names() -> list[str]:
    """torchvision's classification models (detection, segmentation and video models are left out)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def model_factory(name: str) -> Factory:
    """The factory (in_channels, n_classes) -> nn.Module for a registered name or `torchvision:NAME`."""
    if name.startswith(TORCHVISION):
        arch = name.removeprefix(TORCHVISION)
        known = torchvision_names()
        if arch not in known:
            raise unknown_name("torchvision classification model", arch, known)
        return lambda in_channels, n_classes: _torchvision(arch, in_channels, n_classes)
    return MODELS.get(name, also=[f"{TORCHVISION}NAME"])


def check_model(name: str) -> None:
    model_factory(name)


def _torchvision(arch: str, in_channels: int, n_classes: int) -> nn.Module:
    if in_channels not in (1, 3):
        raise UserError(f"torchvision models take 3-channel images (1-channel images are repeated to 3); this "
                        f"dataset has {in_channels} channels: use a registered model or a --model-file.")
    import torchvision

    return torchvision.models.get_model(arch, weights=None, num_classes=n_classes)


def check_model_params(name: str, params: Mapping[str, str]) -> None:
    """Refuse, in one line, a --model-param the model's factory does not take."""
    if not params:
        return
    factory = model_factory(name)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin or C callable: its parameters cannot be read, let the call say
        return
    taken = [p.name for p in list(signature.parameters.values())[2:]
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    unknown = sorted(set(params) - set(taken))
    if unknown and not takes_any:
        listed = ", ".join(taken) or "none"
        raise UserError(f"Model {name!r} has no parameter {unknown[0]!r} (its parameters: {listed}); give "
                        "--model-param KEY=VALUE with one of them, or drop it.")


def build_model(name: str, in_channels: int, n_classes: int, generator_seed: int,
                input_size: tuple[int, ...] | None = None, params: Mapping[str, str] | None = None) -> Backbone:
    """A model whose initial weights depend only on generator_seed (global RNG state is restored): a Backbone
    as its factory builds it, or any other nn.Module adapted (input_size: the [H, W] it will be fed, which
    decides its stages; default torchvision's native 224 x 224; () for vectors [B, in_channels]). params: the
    --model-param values, passed to the factory by keyword."""
    factory = model_factory(name)
    params = dict(params or {})
    check_model_params(name, params)
    with globals_seeded_with(generator_seed):
        try:
            module = factory(in_channels, n_classes, **params)
        except UserError:
            raise
        except Exception as err:  # the user's factory: one line, before any work
            reason = (str(err).strip().splitlines() or [""])[0][:200]
            shape = f"vectors of {in_channels} features" if input_size == () else f"{in_channels}-channel images"
            raise UserError(f"The factory of model {name!r} raised {type(err).__name__} ({reason}) when building it "
                            f"for {shape} and {n_classes} classes: fix the model file.") from None
        if isinstance(module, Backbone):
            return module
        if not isinstance(module, nn.Module):
            raise UserError(f"The factory of model {name!r} returned a {type(module).__name__}, not a torch.nn.Module: "
                            "return the network (a Backbone, or a module whose forward returns logits).")
        repeat = 3 if name.startswith(TORCHVISION) and in_channels == 1 else 0
        return AdaptedBackbone(module, name, in_channels, NATIVE_SIZE if input_size is None else input_size, repeat)


# ---------------------------------------------------------------------------------------------- contract checks


def check_input_size(model_name: str, channels: int, height: int, width: int, stage_users: Sequence[str] = (),
                     params: Mapping[str, str] | None = None) -> Backbone:
    """Refuse, before any work, an image size the model cannot take: run its forward pass once on one zero image
    [1, channels, height, width] on the CPU and turn a failure (a feature map pooled down to nothing) into a
    UserError; refuse the strategies in stage_users (they read stage feature maps) when the model has none.
    Eval mode: a single image in training mode would trip batch norm, whatever its size. params: the run's
    --model-param values (the network checked is the one the run trains). Returns the model."""
    # any class count and weights will do; the params decide the network's shape
    model = build_model(model_name, channels, 2, 0, (height, width), params).eval()
    try:
        with torch.no_grad(), fx_quiet():
            out = model(torch.zeros(1, channels, height, width))
    except MemoryError:
        raise UserError(f"Images of {height}x{width} pixels need more memory than this machine has for one forward "
                        f"pass of model {model_name!r}: use a smaller --image-size.") from None
    except (RuntimeError, ValueError, AssertionError) as err:  # torchvision's ViT asserts its input size
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        if "allocate" in reason or "out of memory" in reason.lower():
            raise UserError(f"Images of {height}x{width} pixels need more memory than this machine has for one "
                            f"forward pass of model {model_name!r} ({reason[:120]}): use a smaller --image-size.") \
                from None
        raise UserError(f"Images of {height}x{width} pixels ({channels} channel(s)) are too small for model "
                        f"{model_name!r}: its forward pass fails on them ({reason}). Use larger images "
                        "(--image-size) or another --model.") from None
    _check_model_output(model_name, out)
    if stage_users and not out.features:
        raise UserError(f"Strategy {stage_users[0]!r} reads the backbone's stage feature maps, and model "
                        f"{model_name!r} has none (no 4-D stage outputs): use a convolutional model or drop "
                        f"{stage_users[0]!r}.")
    return model


def check_contract(name: str, channels: int, height: int, width: int, n_classes: int,
                   params: Mapping[str, str] | None = None) -> None:
    """Refuse, before any work, a model factory that breaks its contract: one that raises, returns one instance
    twice (the next job would start from the last one's trained weights), ignores n_classes, builds non-finite
    weights, or a Backbone whose forward returns something else than a ModelOutput (params: the run's
    --model-param values)."""
    fix = "a factory (in_channels, n_classes) must return a new network each call"
    models = [build_model(name, channels, n_classes, seed, (height, width), params) for seed in (0, 1)]
    if models[0] is models[1] or _shared(models[0], models[1]):
        raise UserError(f"The factory of model {name!r} returned the same network (or the same parameters) twice: "
                        f"{fix}, or every job would start from the last one's trained weights.")
    model = models[0].eval()
    _check_finite(model, f"Model {name!r}", "initialise every parameter to finite values")
    with torch.no_grad(), fx_quiet():
        out = model(torch.zeros(2, channels, height, width))
    _check_model_output(name, out)
    if tuple(out.logits.shape) != (2, n_classes):
        raise UserError(f"Model {name!r} gives logits of shape {list(out.logits.shape)} for 2 images of a "
                        f"{n_classes}-class dataset, not [2, {n_classes}]: {fix}, with n_classes outputs.")


def _check_model_output(name: str, out: object) -> None:
    if not isinstance(out, ModelOutput):
        raise UserError(f"Model {name!r} is a Backbone whose forward returns a {type(out).__name__}, not a "
                        "ModelOutput(logits, embedding, features): return one, or register a plain nn.Module "
                        "(its forward returning logits), which the harness adapts.")


def _shared(a: nn.Module, b: nn.Module) -> bool:
    ours = {t.data_ptr() for t in a.state_dict().values() if t.numel()}
    return any(t.numel() and t.data_ptr() in ours for t in b.state_dict().values())


def _check_finite(model: nn.Module, what: str, fix: str) -> None:
    bad = [k for k, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise UserError(f"{what} has NaN or infinite values in {bad[0]} ({len(bad)} tensor(s)): {fix}.")


# ---------------------------------------------------------------------------------------------- model files


_MODEL_FILES: dict[str, list[str]] = {}  # resolved path -> the names it registered (each file imported once)
_MODEL_SOURCE: dict[str, Path] = {}  # model name -> the file that registered it


def load_model_file(path: Path | str) -> list[str]:
    """Import a user's model file (once per process); returns the model names it registered."""
    path = Path(path)
    resolved = str(path.resolve())
    if resolved in _MODEL_FILES and all(name in MODELS for name in _MODEL_FILES[resolved]):
        return _MODEL_FILES[resolved]  # imported already (a registry scoped in a test may have forgotten it)
    added = import_user_file(path, MODELS, "registers no model: decorate a function (in_channels, n_classes) -> "
                             "nn.Module with @bench.models.backbones.register_model('my-net').")
    _MODEL_FILES[resolved] = added
    _MODEL_SOURCE.update({name: Path(resolved) for name in added})
    return added


def model_file(name: str) -> Path | None:
    """The file that registered model `name` (None: a built-in or torchvision model)."""
    return _MODEL_SOURCE.get(name)


# ---------------------------------------------------------------------------------------------- a run's model


def model_fingerprint(name: str, weights: Path | None) -> dict[str, str]:
    """sha256 of the files that decide a model's numbers beyond its name: the --weights file (read and checked
    to be a state dict) and the model file that registered `name`."""
    found = {}
    if weights is not None:
        regular_file(weights, "a weights file (a state dict)")
        if not Path(weights).is_file():
            what = "is a folder" if Path(weights).is_dir() else "does not exist"
            raise UserError(f"Weights file {str(weights)!r} {what}: give a state dict saved with "
                            "torch.save(model.state_dict(), PATH).")
        found["weights"] = file_sha256(Path(weights))
        read_weights(weights, found["weights"])
    source = model_file(name)
    if source is not None:  # the file and the helper modules it imported, as they were run
        found["model_file"] = code_digest(source)
    return found


# torchvision models whose adaptive average pooling to 7x7 (VGG) or 6x6 (AlexNet) has no deterministic CUDA backward
NONDETERMINISTIC_ON_CUDA = {f"{TORCHVISION}vgg": "7x7", f"{TORCHVISION}alexnet": "6x6"}


def check_deterministic(name: str, device_type: str, deterministic: bool) -> None:
    """Refuse, before any work, a model that cannot train in CUDA's deterministic mode (torch would raise at its
    first backward pass, in every job)."""
    pool = next((size for prefix, size in NONDETERMINISTIC_ON_CUDA.items() if name.startswith(prefix)), None)
    if pool is not None and device_type == "cuda" and deterministic:
        raise UserError(f"Model {name!r} cannot train deterministically on CUDA: its adaptive average pooling to "
                        f"{pool} has no deterministic CUDA backward. Pass --nondeterministic (seeds then pair "
                        "statistically, not exactly), run on the CPU (--devices cpu), or use another --model.")


def check_vector_setup(name: str, dim: int, n_classes: int, stage_users: Sequence[str] = (),
                       params: Mapping[str, str] | None = None, weights: Path | None = None,
                       weights_sha256: str | None = None) -> str:
    """Every check of a vectors run's model before any work: it takes vectors [B, dim] (an image model does not),
    gives [B, n_classes] logits, has hidden layers for the strategies that read stages, takes the weights file;
    returns what the run says about it, in words."""
    try:
        model = build_model(name, dim, n_classes, 0, (), params).eval()
        with torch.no_grad(), fx_quiet():
            out = model(torch.zeros(2, dim))
    except UserError:
        raise
    except (RuntimeError, ValueError, TypeError, AssertionError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise UserError(f"Model {name!r} does not take vectors of {dim} features (its forward pass fails on a batch "
                        f"[2, {dim}]: {reason}): use --model linear or mlp, or a --model-file whose network takes "
                        "[batch, features].") from None
    _check_model_output(name, out)
    if tuple(out.logits.shape) != (2, n_classes):
        raise UserError(f"Model {name!r} gives logits of shape {list(out.logits.shape)} for 2 vectors of a "
                        f"{n_classes}-class dataset, not [2, {n_classes}]: build it with n_classes outputs.")
    if stage_users and not out.features:
        raise UserError(f"Strategy {stage_users[0]!r} reads the model's stages (its hidden layers, on vectors), and "
                        f"model {name!r} has none: use --model mlp or drop {stage_users[0]!r}.")
    _check_finite(model, f"Model {name!r}", "initialise every parameter to finite values")
    widths = ", ".join(map(str, getattr(model, "stage_channels", []))) or "none"
    notes = [f"vectors of {dim} features, hidden layers {widths}, embedding {model.embedding_dim}"]
    if weights is not None:
        state = read_weights(weights, weights_sha256)
        kept = load_weights(build_model(name, dim, n_classes, 0, (), params), state, weights, name)
        notes.append(f"weights {weights}: {len(state) - len(kept)} of {len(state)} tensors loaded after each seed's "
                     "initialisation")
    return "; ".join(notes)


def check_image_model(name: str) -> None:
    """Refuse a vector model (linear, mlp) on images, in one line."""
    if name in VECTOR_MODELS:
        raise UserError(f"Model {name!r} takes feature vectors, and this dataset holds images: use an image model "
                        f"(cnn, resnet18, torchvision:NAME), or --train-mode frozen to embed the images first (its "
                        f"head is the linear model).")


def check_setup(name: str, channels: int, height: int, width: int, n_classes: int, stage_users: Sequence[str] = (),
                weights: Path | None = None, weights_sha256: str | None = None, frozen: bool = False,
                params: Mapping[str, str] | None = None) -> str:
    """Every check of the model a run makes before any work (input size, stage features for the strategies that
    read them, the weights against the model), each on the network the run trains (params: its --model-param
    values); returns what the run says about its model, in words (frozen: the weights go into the one fixed
    backbone of a frozen-feature run, whose classifier is never used)."""
    model = check_input_size(name, channels, height, width, stage_users, params)
    check_contract(name, channels, height, width, n_classes, params)
    notes = []
    if isinstance(model, AdaptedBackbone):
        notes.append(f"stages {', '.join(model.plan.stages) or 'none'}, embedding {model.embedding_dim} "
                     f"({model.plan.embedding} -> {model.plan.classifier})")
        if model.repeat:
            notes.append(f"1-channel images repeated to {model.repeat}")
    if weights is not None:
        state = read_weights(weights, weights_sha256)
        full = build_model(name, channels, n_classes, 0, (height, width), params)
        kept = load_weights(full, state, weights, name)
        _check_finite(full, f"Model {name!r} with the weights of {weights}", "save weights from a network that "
                      "trained without diverging")
        where = "into the frozen backbone" if frozen else "after each seed's initialisation"
        note = f"weights {weights} (sha256 {(weights_sha256 or file_sha256(Path(weights)))[:12]}): " \
               f"{len(state) - len(kept)} of {len(state)} tensors loaded {where}"
        if kept and not frozen:
            note += (f"; classifier {', '.join(kept)} not loaded ({list(state[kept[0]].shape)} in the file for "
                     f"{n_classes} classes here: each seed keeps its own)")
        notes.append(note)
    return "; ".join(notes)
