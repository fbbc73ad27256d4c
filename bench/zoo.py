"""Models from outside the harness: torchvision's classification models (`torchvision:NAME`), a user's model file
(`--model-file`), any nn.Module adapted to the Backbone contract, and pretrained weights from a local file.

An adapted module keeps its own code. torchvision's feature extraction (torch.fx) turns it into a graph that
returns the classifier's input (the embedding) and its stage feature maps; its last nn.Linear becomes the
Backbone's classifier, run in fp32 on that embedding. A stage is a container submodule (a top-level one, or a
child of a top-level one that spans several resolutions, such as torchvision's `features`) whose output is a
[B, C, H, W] map, or a [B, H, W, C] one (Swin's), handed on as [B, C, H, W]: the last one at each resolution
(layer1..layer4 for a ResNet). A model without such maps (a ViT) offers no stage features.
"""

from __future__ import annotations

import contextlib
import io
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from bench.errors import UserError
from bench.models import MODELS, Backbone, Factory, ModelOutput, full_precision
from bench.registry import code_digest, file_sha256, import_user_file, unknown_name
from bench.seeding import globals_seeded_with

TORCHVISION = "torchvision:"
NATIVE_SIZE = (224, 224)  # torchvision's ImageNet input: the probe size when the caller gives none
SHOWN_KEYS = 3  # missing or unexpected weight names an error line lists


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


def build_model(name: str, in_channels: int, n_classes: int, generator_seed: int,
                input_size: tuple[int, int] | None = None) -> Backbone:
    """A model whose initial weights depend only on generator_seed (global RNG state is restored): a Backbone
    as its factory builds it, or any other nn.Module adapted (input_size: the [H, W] it will be fed, which
    decides its stages; default torchvision's native 224 x 224)."""
    factory = model_factory(name)
    with globals_seeded_with(generator_seed):
        try:
            module = factory(in_channels, n_classes)
        except UserError:
            raise
        except Exception as err:  # the user's factory: one line, before any work
            reason = (str(err).strip().splitlines() or [""])[0][:200]
            raise UserError(f"Model {name!r}'s factory raised {type(err).__name__} ({reason}) when building it for "
                            f"{in_channels}-channel images and {n_classes} classes: fix the model file.") from None
        if isinstance(module, Backbone):
            return module
        if not isinstance(module, nn.Module):
            raise UserError(f"Model {name!r}'s factory returned a {type(module).__name__}, not a torch.nn.Module: "
                            "return the network (a Backbone, or a module whose forward returns logits).")
        repeat = 3 if name.startswith(TORCHVISION) and in_channels == 1 else 0
        return AdaptedBackbone(module, name, in_channels, input_size or NATIVE_SIZE, repeat)


# ---------------------------------------------------------------------------------------------- adapter


@dataclass(frozen=True)
class Plan:
    """Where an adapted module's outputs are read: graph node names from torchvision's NodePathTracer."""

    classifier: str  # qualified name of the last nn.Linear
    embedding: str  # the node that feeds it
    stages: tuple[str, ...]  # modules whose outputs are the stage maps
    stage_channels: tuple[int, ...]
    channels_last: tuple[bool, ...]  # per stage: its output is [B, H, W, C] (permuted to [B, C, H, W])


_PLANS: dict[tuple, Plan] = {}  # per process: tracing a large model takes a second, and every cycle builds one


class AdaptedBackbone(Backbone):
    """An nn.Module whose forward returns logits, as a Backbone: the graph up to its last nn.Linear's input gives
    the embedding and the stage maps; that Linear, in fp32, gives the logits (strategies rank them: full
    precision, as every Backbone's head). State-dict names: `body.` + the module's own names, and
    `classifier.weight/bias`."""

    def __init__(self, module: nn.Module, name: str, in_channels: int, input_size: tuple[int, int],
                 repeat: int = 0) -> None:
        super().__init__()
        self.name, self.repeat = name, repeat  # repeat: 3 = grayscale repeated to 3 channels for the module
        key = (name, type(module).__qualname__, in_channels, tuple(input_size), repeat)
        if key not in _PLANS:
            _PLANS[key] = plan(module, name, (1, repeat or in_channels, *input_size))
        self.plan = _PLANS[key]
        nodes = {stage: f"stage{i}" for i, stage in enumerate(self.plan.stages)}
        self.body = feature_extraction().create_feature_extractor(module, {**nodes, self.plan.embedding: "embedding"})
        self.classifier = module.get_submodule(self.plan.classifier)  # after the body: state-dict order as the module's
        self.embedding_dim = self.classifier.in_features
        self.stage_channels = list(self.plan.stage_channels)

    def file_key(self, key: str) -> str:
        """The module's own name for one of this adapter's state-dict names (what a saved state dict holds)."""
        if key.startswith("classifier."):
            return f"{self.plan.classifier}.{key.removeprefix('classifier.')}"
        return key.removeprefix("body.")

    def forward(self, x: torch.Tensor) -> ModelOutput:
        if self.repeat:
            x = x.expand(-1, self.repeat, -1, -1)
        out = self.body(x)
        features = [out[f"stage{i}"].permute(0, 3, 1, 2) if last else out[f"stage{i}"]
                    for i, last in enumerate(self.plan.channels_last)]  # each [B, C, H, W]
        # The head in fp32 even under bf16 autocast (see Backbone.forward); the embedding is the network's own value.
        with full_precision(x):
            embedding = torch.flatten(out["embedding"].float(), 1)  # [B, d]
            return ModelOutput(self.head(embedding), embedding, features)


def feature_extraction() -> ModuleType:
    """torchvision's feature extraction: NodePathTracer names a graph's nodes, create_feature_extractor cuts it."""
    from torchvision.models import feature_extraction as fx

    return fx


def plan(module: nn.Module, name: str, probe_shape: tuple[int, ...]) -> Plan:
    """Find the classifier, the node feeding it and the stage modules of `module` (one probe forward pass, in eval
    mode, on zeros of probe_shape)."""
    linears = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UserError(f"Model {name!r} has no nn.Linear classifier (the last nn.Linear must map the embedding to "
                        "the logits): use another model, or return a bench.models.Backbone from the factory.")
    tracer = feature_extraction().NodePathTracer()
    try:
        graph = tracer.trace(module)
    except Exception as err:  # torch.fx cannot trace data-dependent control flow
        raise UserError(f"Model {name!r} cannot be traced by torch.fx ({type(err).__name__}: "
                        f"{(str(err).splitlines() or [''])[0]}): return a bench.models.Backbone from the factory.") \
            from None
    calls = [n for n in graph.nodes if n.op == "call_module" and n.target == linears[-1]]
    if len(calls) != 1 or not calls[0].args or not isinstance(calls[0].args[0], torch.fx.Node):
        raise UserError(f"Model {name!r}'s last nn.Linear ({linears[-1]}) is not called once on one input, so it "
                        "cannot be the classifier: return a bench.models.Backbone from the factory.")
    result = Plan(linears[-1], tracer.node_to_qualname[calls[0].args[0]], *_stages(module, probe_shape))
    _check_output(module, result, name, probe_shape)
    return result


def fx_quiet() -> contextlib.AbstractContextManager:
    """A probe whose failure we turn into one line: torch.fx's traced modules print their generated code's
    traceback to stderr before raising, which would stand before that line."""
    return contextlib.redirect_stderr(io.StringIO())


def _check_output(module: nn.Module, found: Plan, name: str, probe_shape: tuple[int, ...]) -> None:
    """The classifier on the embedding must give the module's own output (eval mode, a random probe)."""
    x = torch.rand(2, *probe_shape[1:], generator=torch.Generator().manual_seed(0))
    embedding = feature_extraction().create_feature_extractor(module, {found.embedding: "embedding"}).eval()
    was_training = module.training
    try:
        with torch.no_grad(), fx_quiet():
            whole = module.eval()(x)
            logits = module.get_submodule(found.classifier)(torch.flatten(embedding(x)["embedding"], 1))
    except (RuntimeError, ValueError, AssertionError):
        return  # the input is too small or of the wrong size: check_input_size says so in one line
    finally:
        module.train(was_training)
    if not isinstance(whole, torch.Tensor) or whole.shape != logits.shape or not torch.allclose(whole, logits,
                                                                                               atol=1e-5):
        raise UserError(f"Model {name!r}'s forward does not return its last nn.Linear's output "
                        f"({found.classifier}): return the logits from the last nn.Linear, or return a "
                        "bench.models.Backbone from the factory.")


def _output_shapes(module: nn.Module, containers: dict[str, nn.Module],
                   shape: tuple[int, ...]) -> tuple[dict[str, list[tuple[int, ...]]], list[str]] | None:
    """One forward pass in eval mode on zeros of `shape`: each container's output shapes (in call order of its
    first call) and the order of first calls; None when the forward fails on that size."""
    outputs: dict[str, list[tuple[int, ...]]] = {}
    order: list[str] = []

    def hook(name: str):
        def record(_m: nn.Module, _inputs: object, output: object) -> None:
            if name not in outputs:
                order.append(name)
            outputs.setdefault(name, []).append(tuple(output.shape) if isinstance(output, torch.Tensor) else ())
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in containers.items()]
    was_training = module.training
    try:
        with torch.no_grad():
            module.eval()(torch.zeros(shape))
    except (RuntimeError, ValueError, AssertionError):
        return None  # the input is too small or of the wrong size: check_input_size says so in one line
    finally:
        module.train(was_training)
        for h in handles:
            h.remove()
    return outputs, order


def _stages(module: nn.Module, probe_shape: tuple[int, ...]) -> tuple[tuple[str, ...], tuple[int, ...],
                                                                     tuple[bool, ...]]:
    """The last container (a module with children) at each resolution among the top-level ones, or among the
    children of a top-level one whose outputs span several resolutions; 4-D outputs only, each called once.
    A map's layout is read from a second probe at twice the size: the dimensions that grow are spatial, so a
    [B, H, W, C] map (Swin's) is told from a [B, C, H, W] one. Returns the stages, their channels and, per
    stage, whether it is channels-last ([B, H, W, C]; the adapter permutes it)."""
    containers = {n: m for n, m in module.named_modules() if n and n.count(".") <= 1 and any(m.children())}
    probed = _output_shapes(module, containers, probe_shape)
    if probed is None:
        return (), (), ()
    outputs, order = probed
    doubled = _output_shapes(module, containers, (*probe_shape[:2], *(2 * s for s in probe_shape[2:])))

    def is_map(n: str) -> bool:
        return n in outputs and len(outputs[n]) == 1 and len(outputs[n][0]) == 4

    def is_channels_last(n: str) -> bool:  # dims 1 and 2 follow the input's size and dim 3 does not: [B, H, W, C]
        if doubled is None or len(doubled[0].get(n, [])) != 1:
            return False  # the model takes one input size only: read as [B, C, H, W]
        (_, a1, _, a3), (_, b1, _, b3) = outputs[n][0], doubled[0][n][0]
        return a1 != b1 and a3 == b3

    channels_last = {n: is_channels_last(n) for n in containers if is_map(n)}

    def spatial(n: str) -> tuple[int, ...]:
        return outputs[n][0][1:3] if channels_last[n] else outputs[n][0][2:]

    chosen: list[str] = []
    for top in [n for n in containers if "." not in n]:
        inner = [n for n in containers if n.startswith(f"{top}.") and is_map(n)]
        if len({spatial(n) for n in inner}) > 1:
            chosen += inner
        elif is_map(top):
            chosen.append(top)
    chosen.sort(key=order.index)
    last = [n for i, n in enumerate(chosen) if i + 1 == len(chosen) or spatial(chosen[i + 1]) != spatial(n)]
    return (tuple(last), tuple(outputs[n][0][3 if channels_last[n] else 1] for n in last),
            tuple(channels_last[n] for n in last))


def check_input_size(model_name: str, channels: int, height: int, width: int,
                     stage_users: Sequence[str] = ()) -> Backbone:
    """Refuse, before any work, an image size the model cannot take: run its forward pass once on one zero image
    [1, channels, height, width] on the CPU and turn a failure (a feature map pooled down to nothing) into a
    UserError; refuse the strategies in stage_users (they read stage feature maps) when the model has none.
    Eval mode: a single image in training mode would trip batch norm, whatever its size. Returns the model."""
    model = build_model(model_name, channels, 2, 0, (height, width)).eval()  # any class count and weights will do
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


def check_contract(name: str, channels: int, height: int, width: int, n_classes: int) -> None:
    """Refuse, before any work, a model factory that breaks its contract: one that raises, returns one instance
    twice (the next job would start from the last one's trained weights), ignores n_classes, builds non-finite
    weights, or a Backbone whose forward returns something else than a ModelOutput."""
    fix = "a factory (in_channels, n_classes) must return a new network each call"
    models = [build_model(name, channels, n_classes, seed, (height, width)) for seed in (0, 1)]
    if models[0] is models[1] or _shared(models[0], models[1]):
        raise UserError(f"Model {name!r}'s factory returned the same network (or the same parameters) twice: {fix}, "
                        "or every job would start from the last one's trained weights.")
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


# ---------------------------------------------------------------------------------------------- weights


_STATE: dict[tuple[str, str], dict[str, torch.Tensor]] = {}  # per process: (path, sha256) -> the state dict


def read_weights(path: Path | str, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """A state dict ({name: tensor}) from a file saved with torch.save(model.state_dict(), PATH), read with
    weights_only=True (nothing else is unpickled). With sha256, a file whose content changed is refused."""
    path = Path(path)
    key = (str(path.resolve()), sha256 or "")
    if sha256 and key in _STATE:
        return _STATE[key]
    fix = "give a state dict saved with torch.save(model.state_dict(), PATH)"
    if path.is_dir():
        raise UserError(f"Weights file {str(path)!r} is a folder: {fix}.")
    if not path.is_file():
        raise UserError(f"Weights file {str(path)!r} does not exist: {fix}.")
    if sha256 and file_sha256(path) != sha256:
        raise UserError(f"Weights file {path} changed since the run started (sha256 {sha256[:12]}...): restore it, "
                        "or start a new run with --name.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a file torch.load cannot read fails in many ways (IndexError for plain text)
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        if "weights_only" in str(err) or isinstance(err, pickle.UnpicklingError):  # never pass on torch's advice
            reason = "it holds Python objects other than tensors, and nothing but tensors is ever unpickled"
        raise UserError(f"Weights file {path} cannot be read as a state dict of tensors ({reason[:200]}): "
                        f"{fix}.") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                               for k, v in state.items()):
        nested = [k for k, v in state.items() if isinstance(v, dict)] if isinstance(state, dict) else []
        held = f"a dict whose entry {nested[0]!r} holds a dict" if nested else f"a {type(state).__name__}"
        raise UserError(f"Weights file {path} holds {held}, not a state dict of tensors: {fix}.")
    if sha256:
        _STATE.clear()  # one file per run: keep the latest only
        _STATE[key] = state
    return state


def load_weights(model: Backbone, state: dict[str, torch.Tensor], path: Path | str, name: str) -> list[str]:
    """Copy a state dict into the model. Names are the module's own (an adapted model's `file_key`); every tensor
    must match by name and shape, except the classifier when its shape differs (another class count): that one
    keeps its initialisation. Returns the classifier names left out; a mismatch is one UserError line."""
    own = model.state_dict()
    file_key = model.file_key if isinstance(model, AdaptedBackbone) else (lambda k: k)
    names = {file_key(k): k for k in own}  # file name -> model name
    missing = [k for k in names if k not in state]
    unexpected = [k for k in state if k not in names]
    if missing or unexpected:
        raise UserError(f"Weights file {path} does not fit model {name!r}: {_few('missing', missing)}"
                        f"{'; ' if missing and unexpected else ''}{_few('unexpected', unexpected)}: "
                        "save the state dict of the same architecture.")
    classifier = {k for k in names if names[k].startswith("classifier.")}
    wrong = [k for k in names if state[k].shape != own[names[k]].shape]
    kept = [k for k in wrong if k in classifier]
    others = [k for k in wrong if k not in classifier]
    if others:
        k = others[0]
        raise UserError(f"Weights file {path} does not fit model {name!r}: {k} is {list(state[k].shape)} in the file "
                        f"and {list(own[names[k]].shape)} in the model ({len(others)} tensor(s) differ): save the "
                        "state dict of the same architecture and input channels.")
    odd = [k for k in names if k not in kept and (state[k].layout != torch.strided or state[k].is_complex()
                                                  or state[k].is_quantized or state[k].is_floating_point()
                                                  != own[names[k]].is_floating_point())]
    if odd:
        k = odd[0]
        raise UserError(f"Weights file {path} does not fit model {name!r}: {k} is a {state[k].layout} "
                        f"{state[k].dtype} tensor where the model holds {own[names[k]].dtype}: save the plain "
                        "(dense, real) state dict of the same architecture.")
    try:
        model.load_state_dict({names[k]: v for k, v in state.items() if k not in kept}, strict=False)
    except (RuntimeError, TypeError, ValueError) as err:
        reason = (str(err).strip().splitlines() or [""])[0][:200]
        raise UserError(f"Weights file {path} cannot be loaded into model {name!r} ({reason}): save the state "
                        "dict of the same architecture.") from None
    return kept


def _few(kind: str, keys: list[str]) -> str:
    if not keys:
        return ""
    more = f" (+{len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else ""
    return f"{kind} keys {', '.join(keys[:SHOWN_KEYS])}{more}"


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
                             "nn.Module with @bench.models.register_model('my-net').")
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


def check_setup(name: str, channels: int, height: int, width: int, n_classes: int, stage_users: Sequence[str] = (),
                weights: Path | None = None, weights_sha256: str | None = None, frozen: bool = False) -> str:
    """Every check of the model a run makes before any work (input size, stage features for the strategies that
    read them, the weights against the model); returns what the run says about its model, in words (frozen: the
    weights go into the one fixed backbone of a frozen-feature run, whose classifier is never used)."""
    model = check_input_size(name, channels, height, width, stage_users)
    check_contract(name, channels, height, width, n_classes)
    notes = []
    if isinstance(model, AdaptedBackbone):
        notes.append(f"stages {', '.join(model.plan.stages) or 'none'}, embedding {model.embedding_dim} "
                     f"({model.plan.embedding} -> {model.plan.classifier})")
        if model.repeat:
            notes.append(f"1-channel images repeated to {model.repeat}")
    if weights is not None:
        state = read_weights(weights, weights_sha256)
        full = build_model(name, channels, n_classes, 0, (height, width))
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
