"""Backbones and their auxiliary-head contract, the models for vectors, the adapter that makes any nn.Module one,
weights files, and the building and checking of every model a run names."""

# The built-in models register on import: whatever module a process reaches the registry through, it holds them all.
from bench.models import backbones, mlp  # noqa: F401
