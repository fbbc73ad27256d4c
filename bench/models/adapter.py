"""Any nn.Module whose forward returns logits, adapted to the Backbone contract (`AdaptedBackbone`).

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
from dataclasses import dataclass
from types import ModuleType

import torch
from torch import nn

from bench.core.errors import UserError
from bench.models.backbones import Backbone, ModelOutput, full_precision


@dataclass(frozen=True)
class Plan:
    """Where an adapted module's outputs are read: graph node names from torchvision's NodePathTracer."""

    classifier: str  # qualified name of the last nn.Linear
    embedding: str  # the node that feeds it
    stages: tuple[str, ...]  # modules whose outputs are the stage maps
    stage_channels: tuple[int, ...]
    channels_last: tuple[bool, ...]  # per stage: its output is [B, H, W, C] (permuted to [B, C, H, W])


# Per process: tracing a large model takes a second, and every cycle builds one. Keyed by the module's class
# itself, not its name (two model files may register one name with classes of one name and other structures), and
# by its structure (one class built with another --model-param, a width, has other stage channels).
_PLANS: dict[tuple, Plan] = {}


def structure(module: nn.Module) -> tuple:
    """What decides a module's plan beyond its class: its layers as it prints them and its tensors' shapes."""
    return repr(module), tuple((name, tuple(t.shape)) for name, t in module.state_dict().items())


class AdaptedBackbone(Backbone):
    """An nn.Module whose forward returns logits, as a Backbone: the graph up to its last nn.Linear's input gives
    the embedding and the stage maps; that Linear, in fp32, gives the logits (strategies rank them: full
    precision, as every Backbone's head). State-dict names: `body.` + the module's own names, and
    `classifier.weight/bias`."""

    def __init__(self, module: nn.Module, name: str, in_channels: int, input_size: tuple[int, ...],
                 repeat: int = 0) -> None:
        super().__init__()
        self.name, self.repeat = name, repeat  # repeat: 3 = grayscale repeated to 3 channels for the module
        key = (name, type(module), structure(module), in_channels, tuple(input_size), repeat)
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
                        "the logits): use another model, or return a bench Backbone from the factory.")
    tracer = feature_extraction().NodePathTracer()
    try:
        graph = tracer.trace(module)
    except Exception as err:  # torch.fx cannot trace data-dependent control flow
        raise UserError(f"Model {name!r} cannot be traced by torch.fx ({type(err).__name__}: "
                        f"{(str(err).splitlines() or [''])[0]}): return a bench Backbone from the factory.") \
            from None
    calls = [n for n in graph.nodes if n.op == "call_module" and n.target == linears[-1]]
    if len(calls) != 1 or not calls[0].args or not isinstance(calls[0].args[0], torch.fx.Node):
        raise UserError(f"The last nn.Linear of model {name!r} ({linears[-1]}) is not called once on one input, so it "
                        "cannot be the classifier: return a Backbone (bench.models.backbones) from the factory.")
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
    # NaN where the classifier gives NaN too is the classifier's output: non-finite weights are refused on their own
    if not isinstance(whole, torch.Tensor) or whole.shape != logits.shape or not torch.allclose(
            whole, logits, atol=1e-5, equal_nan=True):
        raise UserError(f"The forward of model {name!r} does not return its last nn.Linear's output "
                        f"({found.classifier}): return the logits from the last nn.Linear, or return a "
                        "bench.models.backbones.Backbone from the factory.")


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
