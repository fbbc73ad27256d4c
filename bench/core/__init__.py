"""The ground floor: the protocol and its configuration, user errors, seeds, registries, provenance, processes and
signals. It imports nothing else of bench, and nothing heavy: it is what `--help` and a bad flag may load."""
