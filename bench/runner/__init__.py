"""A benchmark as a Python call: resolving a run, its console, the scheduler and devices, seeds in rounds."""
