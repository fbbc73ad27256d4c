"""The verdicts' design a run records in config.json ("analysis"), and the rule that keeps it: a folder whose
--seeds auto design has looked at data keeps that design. Its looks were taken at a nominal level fixed for its
plan; another maximum, margin, question or a fixed-seeds test chosen after them would change what those looks
mean, and no error bound would cover both. Without scipy (the dry run and every run import it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.analysis.families import question
from bench.core.errors import UserError

UNPLANNED = ("history", "stopped")  # what a design's record gains as it goes, not what it is


def margin_text(margin: float) -> str:
    """'1 AULC point', '0.5 AULC points' (a margin of one point reached by arithmetic, 0.1 * 0.1, is one point)."""
    return f"{100 * margin:g} AULC point{'' if round(100 * margin, 9) == 1 else 's'}"


def fixed_analysis(named: Sequence[str], prior: object, baseline: str, margin: float) -> dict[str, Any]:
    """The record of a fixed-seeds run: its baseline, margin and question (the strategies it names, in the order
    typed; a run naming one strategy keeps the folder's recorded question)."""
    recorded = prior.get("strategies", []) if isinstance(prior, dict) else []
    recorded = recorded if isinstance(recorded, list) else []
    return {"baseline": baseline, "margin": margin, "design": "fixed",
            "strategies": list(question(named, [s for s in recorded if isinstance(s, str)]))}


def looked_at(analysis: object) -> list[int]:
    """The seeds at each look a recorded --seeds auto design took ([] for a fixed design or none taken)."""
    if not isinstance(analysis, dict) or analysis.get("design") != "sequential":
        return []
    plan = analysis.get("sequential")
    history = plan.get("history") if isinstance(plan, dict) else None
    return [h["seeds"] for h in history if isinstance(h, dict) and isinstance(h.get("seeds"), int)] \
        if isinstance(history, list) else []


def _identity(analysis: dict[str, Any]) -> dict[str, Any]:
    plan = analysis.get("sequential")
    plan = {k: v for k, v in plan.items() if k not in UNPLANNED} if isinstance(plan, dict) else plan
    return {**analysis, "sequential": plan}


def describe(analysis: dict[str, Any]) -> str:
    """'at most 6 seeds, ±1 AULC point, entropy, random'."""
    plan = analysis.get("sequential") if isinstance(analysis.get("sequential"), dict) else {}
    names = analysis.get("strategies") or []
    return (f"at most {plan.get('max_seeds', '?')} seeds, ±{margin_text(float(analysis.get('margin', 0)))}"
            + (f", {' vs '.join(map(str, names))}" if len(names) == 2 else
               f", strategies {', '.join(map(str, names))}" if names else ""))


def check_design(prior: object, new: dict[str, Any], folder: Path) -> None:
    """Refuse, in one line, a run that would replace a --seeds auto design that has looked at data (the same
    design resumes; a design that looked at nothing, or a fixed one, may be replaced)."""
    seen = looked_at(prior)
    if not seen or _identity(prior) == _identity(new):  # type: ignore[arg-type]
        return
    what = ("a fixed-seeds run" if new.get("design") != "sequential"
            else f"--seeds auto with {describe(new)}")
    raise UserError(f"{folder}'s --seeds auto design ({describe(prior)}) has looked at "  # type: ignore[arg-type]
                    f"{', '.join(map(str, seen))} seeds, and {what} would replace it after those looks, when no "
                    "error bound covers both: run its own command again to resume it, report it as it stands "
                    "(run_bench.py report); another folder would rerun the same seeds, the data already looked at.")
