"""Pretrained weights from a local file (`--weights`): read as a state dict of tensors, nothing else unpickled,
and copied into a model by name and shape (an adapted module's names are its own)."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from bench.core.errors import UserError, regular_file
from bench.core.registry import file_sha256
from bench.models.adapter import AdaptedBackbone
from bench.models.backbones import Backbone

SHOWN_KEYS = 3  # missing or unexpected weight names an error line lists

_STATE: dict[tuple[str, str], dict[str, torch.Tensor]] = {}  # per process: (path, sha256) -> the state dict


def read_weights(path: Path | str, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """A state dict ({name: tensor}) from a file saved with torch.save(model.state_dict(), PATH), read with
    weights_only=True (nothing else is unpickled). With sha256, a file whose content changed is refused."""
    path = Path(path)
    key = (str(path.resolve()), sha256 or "")
    if sha256 and key in _STATE:
        return _STATE[key]
    fix = "give a state dict saved with torch.save(model.state_dict(), PATH)"
    regular_file(path, "a weights file (a state dict)")
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
