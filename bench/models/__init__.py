"""Backbones and their auxiliary-head contract, the adapter that makes any nn.Module one, weights files, and the
building and checking of every model a run names."""
