#!/usr/bin/env python3
"""Benchmark active-learning strategies: `python run_bench.py --strategies ll entropy --seeds 5`."""

import sys

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
