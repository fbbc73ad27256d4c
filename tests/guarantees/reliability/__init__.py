"""Reliability suite: bad input, faults (kills, interrupts, full disk, failing jobs), determinism."""
