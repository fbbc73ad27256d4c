"""The report's tables: each *_display shapes a frame of analysis.record for showing (its numbers in report.text's
formats), markdown_table and latex_table render a shown frame, and write_table writes tables/STEM.csv (the raw
numbers, full precision), .md and .tex (the shown frame).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from bench.analysis import verdicts
from bench.report import text

# ---------------------------------------------------------------- display tables


def learning_curve_display(summary: pd.DataFrame) -> pd.DataFrame:
    labels = summary.groupby("cycle")["n_labeled"].mean()
    cells = summary.assign(cell=[text.mean_pm(r.mean, r.ci_low, r.ci_high) for r in summary.itertuples()])
    wide = cells.pivot(index="strategy", columns="cycle", values="cell").fillna(text.DASH)
    wide.columns = [text.labels(labels[c]) for c in wide.columns]
    return wide.reset_index()


def comparison_display(comparisons: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "strategy": comparisons["strategy"],
        "labels": ["AULC" if m == "aulc" else text.labels(n) for m, n in
                   zip(comparisons["metric"], comparisons["n_labeled"], strict=True)],
        "pairs": comparisons["n_pairs"].astype(str),
        "diff (pts)": comparisons["mean_diff"].map(text.points),
        **_test_columns(comparisons),
        "family": comparisons["family"],
    })


def _test_columns(tests: pd.DataFrame) -> dict[str, object]:
    """The columns every paired-test table shows: difference, interval, p-values, verdict."""
    return {
        "95% CI (pts)": [f"{text.points(lo)} to {text.points(hi)}" for lo, hi in
                         zip(tests["ci_low"], tests["ci_high"], strict=True)],
        "t-test p": tests["t_p"].map(text.pvalue),
        "Holm p": tests["p_holm"].map(text.pvalue),
        "Wilcoxon p": tests["wilcoxon_p"].map(text.pvalue),
        "significant": tests["significant"].map({True: "yes", False: "no"}),
    }


def aulc_display(aulc_summary: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "strategy": aulc_summary["strategy"],
        "seeds": aulc_summary["n_seeds"].astype(str),
        "AULC (%)": aulc_summary["mean"].map(text.percent),
        "95% CI (%)": [f"{text.percent(lo)} to {text.percent(hi)}" for lo, hi in
                       zip(aulc_summary["ci_low"], aulc_summary["ci_high"], strict=True)],
        "std (pts)": aulc_summary["std"].map(text.percent),
    })


def penalty_display(matrix: pd.DataFrame) -> pd.DataFrame:
    shown = matrix.apply(lambda column: column.map(lambda v: text.DASH if pd.isna(v) else f"{v:.2f}"))
    shown.loc["column sum"] = [f"{v:.2f}" for v in matrix.sum(axis=0, skipna=True)]
    return shown.rename_axis(index="better \\ worse", columns=None).reset_index()


def savings_display(saved: pd.DataFrame) -> pd.DataFrame:
    """savings.labels_saved's summary: the mean labels saved over the paired seeds, its interval, and the seeds
    censored on either side (counted, never filled in)."""
    def whole(n: float) -> str:
        return text.DASH if pd.isna(n) else f"{n:,.0f}"

    return pd.DataFrame({
        "strategy": saved["strategy"],
        "target": [text.savings_target(t, b) for t, b in zip(saved["target"], saved["baseline"], strict=True)],
        "seeds (paired / run)": [f"{p} / {n}" for p, n in zip(saved["n_paired"], saved["n_seeds"], strict=True)],
        "labels saved": saved["mean_saving"].map(text.signed_labels),
        "95% CI": [f"{text.signed_labels(lo)} to {text.signed_labels(hi)}" if pd.notna(lo) else text.DASH
                   for lo, hi in zip(saved["ci_low"], saved["ci_high"], strict=True)],
        "baseline labels": saved["mean_baseline_labels"].map(whole),
        "saved (%)": saved["percent_saved"].map(lambda v: text.DASH if pd.isna(v) else f"{v:+.0f}"),
        "censored": saved["n_censored"].astype(str),
        "baseline censored": saved["n_baseline_censored"].astype(str),
        "neither": saved["n_neither"].astype(str),
    })


NOT_MEASURED = "n/a"  # a cost the folder's rows do not hold (written before the column existed)


def cost_display(cost: pd.DataFrame) -> pd.DataFrame:
    """cost.cost_table: seconds and MiB as measured on the run's machine; n/a where the rows lack the column."""
    def number(fmt: str):
        return lambda v: NOT_MEASURED if pd.isna(v) else format(v, fmt)

    return pd.DataFrame({
        "strategy": cost["strategy"],
        "seeds": cost["n_seeds"].astype(str),
        "select s/cycle (mean)": cost["select_mean_s"].map(number(".3f")),
        "select s/cycle (max)": cost["select_max_s"].map(number(".3f")),
        "train s/cycle": cost["train_mean_s"].map(number(".2f")),
        "train s/job": cost["train_total_s"].map(number(",.1f")),
        "select peak (MiB)": cost["peak_mb"].map(number(",.0f")),
        "select rise (MiB)": cost["rise_mb"].map(number(",.1f")),
        "memory measured as": cost["memory"].map(lambda v: v if isinstance(v, str) and v else NOT_MEASURED),
    })


def verdict_display(rows: pd.DataFrame, plan: verdicts.SequentialPlan | None) -> pd.DataFrame:
    def seeds(n: float) -> str:
        return text.DASH if pd.isna(n) else f"{int(n)}"

    sequential = plan is not None and (rows["family"] == verdicts.PRIMARY).all()
    frame = {
        "strategy": rows["strategy"], "other": rows["other"], "seeds": rows["n_pairs"].astype(str),
        "AULC diff (pts)": rows["mean_diff"].map(text.points),
        "CI (pts)": [f"{text.points(lo)} to {text.points(hi)}" for lo, hi in
                     zip(rows["ci_low"], rows["ci_high"], strict=True)],
        "CI level": rows["level"].map(lambda v: text.DASH if pd.isna(v) else text.confidence(v)),
    }
    if sequential:
        frame["decided at"] = rows["look"].map(seeds)
    else:
        frame.update({"t-test p": rows["t_p"].map(text.pvalue), "Holm p": rows["p_holm"].map(text.pvalue),
                      "TOST p": rows["tost_p"].map(text.pvalue), "seeds needed": rows["seeds_needed"].map(seeds)})
    frame["verdict"] = rows["verdict"]
    return pd.DataFrame(frame)


# ---------------------------------------------------------------- table writers


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table: first column left-aligned, the others right-aligned."""
    def cells(values: Iterable[object]) -> str:
        return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"

    rule = "| " + " | ".join(":---" if i == 0 else "---:" for i in range(frame.shape[1])) + " |"
    body = [cells(row) for row in frame.itertuples(index=False)]
    return "\n".join([cells(frame.columns), rule, *body])


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "–": "--",
}


def latex_escape(value: str) -> str:
    return "".join(_LATEX_ESCAPES.get(char, char) for char in value)


def latex_table(frame: pd.DataFrame) -> str:
    """A booktabs tabular (needs \\usepackage{booktabs}); first column left-aligned, the others right."""
    def cells(values: Iterable[object]) -> str:
        return " & ".join(latex_escape(str(v)) for v in values) + r" \\"

    align = "l" + "r" * (frame.shape[1] - 1)
    body = [cells(row) for row in frame.itertuples(index=False)]
    return "\n".join([rf"\begin{{tabular}}{{{align}}}", r"\toprule", cells(frame.columns), r"\midrule",
                      *body, r"\bottomrule", r"\end{tabular}"])


def write_table(out: Path, stem: str, raw: pd.DataFrame, display: pd.DataFrame, caption: str) -> list[str]:
    """Write tables/STEM.csv (raw numbers), .md and .tex (display); return report.md lines."""
    raw.to_csv(out / "tables" / f"{stem}.csv", index=False)
    markdown = markdown_table(display)
    (out / "tables" / f"{stem}.md").write_text(markdown + "\n")
    (out / "tables" / f"{stem}.tex").write_text(latex_table(display) + "\n")
    return [f"{caption} (`tables/{stem}.csv`)", "", markdown, ""]
