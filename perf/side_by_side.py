"""One command on several versions of the code, interleaved, with the load average beside every time: what a piece of
machinery saves is the time of the code without it against the code with it, measured in the same run.

    python -m perf.side_by_side --version with=HEAD --version without=HEAD:perf/patches/no-exit.diff \\
        --repeat 2 --out /tmp/side.json -- python -m pytest -q -n 2 --dist loadgroup tests/test_cli.py

Each version is a git revision, optionally with a patch applied (REV:PATCH), checked out in a temporary worktree;
the command runs from inside it (so `bench` imports from that tree) with this interpreter's environment. Versions
run in turn (with, without, with, without, ...), so that a change of load falls on both sides alike.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def checkout(spec: str, into: Path) -> Path:
    """A worktree of REV (with PATCH applied, for REV:PATCH) at `into`."""
    rev, _, patch = spec.partition(":")
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(into), rev], check=True,
                   capture_output=True)
    if patch:
        subprocess.run(["git", "-C", str(into), "apply", str(Path(patch).resolve())], check=True)
    return into


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, command = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(prog="python -m perf.side_by_side", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="append", required=True, metavar="NAME=REV[:PATCH]")
    parser.add_argument("--repeat", type=int, default=1, help="rounds over the versions")
    parser.add_argument("--out", type=Path, help="JSON of every run")
    args = parser.parse_args(ours)
    if not command:
        parser.error("give the command after --")
    versions = dict(v.split("=", 1) for v in args.version)
    runs = []
    with tempfile.TemporaryDirectory(prefix="side-by-side-") as scratch:
        trees = {name: checkout(spec, Path(scratch) / name) for name, spec in versions.items()}
        try:
            for round_ in range(args.repeat):
                for name, tree in trees.items():
                    before, start = loadavg(), time.perf_counter()
                    done = subprocess.run(command, cwd=tree, capture_output=True, text=True, env=os.environ.copy())
                    runs.append({"version": name, "round": round_, "wall_s": round(time.perf_counter() - start, 2),
                                 "returncode": done.returncode, "load_before": before, "load_after": loadavg(),
                                 "tail": done.stdout.strip().splitlines()[-1:] or [""]})
                    print(f"{name:<12} round {round_}  {runs[-1]['wall_s']:8.1f} s  rc {done.returncode}  "
                          f"load {before} -> {runs[-1]['load_after']}", flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                               capture_output=True)
    if args.out:
        args.out.write_text(json.dumps({"command": command, "versions": versions, "runs": runs}, indent=2) + "\n")
    means = {name: sum(r["wall_s"] for r in runs if r["version"] == name) / args.repeat for name in versions}
    first = next(iter(versions))
    for name, mean in means.items():
        share = (mean - means[first]) / mean if mean else float("nan")
        print(f"{name:<12} mean {mean:8.1f} s" + ("" if name == first else f"  ({share:+.1%} of it saved by {first})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
