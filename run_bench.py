#!/usr/bin/env python3
"""Benchmark active-learning strategies: `python run_bench.py --strategies ll entropy --seeds 5`."""

from bench.cli import entry

if __name__ == "__main__":
    entry()
