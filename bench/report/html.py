"""report/index.html: the report as one page that opens offline, by double-click, and can be mailed as it is.

The page is report.md rendered (markdown-it, raw HTML in the source left as text) into a Jinja2 template with
autoescaping on, under a first screen of the primary verdicts: one card per comparison, its verdict as a word and a
symbol on a colour, with the difference, interval, seeds and, when undecided, the seeds needed, all taken from the
verdict rows and the display report.tables already makes (nothing is recomputed here). The figures are embedded as
PNG data URIs, the CSVs each table came from are relative links, long tables sort by a click on a header (a few
lines of inline script; without it the page reads the same), and a Content-Security-Policy forbids the browser any
load beyond the page itself. No absolute path of the machine reaches the page (`without_paths`).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape
from markdown_it import MarkdownIt
from markdown_it.token import Token

from bench.analysis import verdicts
from bench.report import text
from bench.report.tables import verdict_display

PAGE = "index.html"
TEMPLATE = "index.html.j2"
SORTABLE_ROWS = 6  # a table with more body rows than this sorts by its headers
SYMBOLS = {verdicts.BETTER: "▲", verdicts.WORSE: "▼", verdicts.EQUIVALENT: "=", verdicts.UNDECIDED: "?"}
# An absolute POSIX path: a "/" that follows no word character, dot or slash (so tables/x.csv, 1/2 and the "//" of a
# URL stay; npz:/data/x.npz does not), then one or more path components.
ABSOLUTE_PATH = re.compile(r"(?<![\w./\\])/(?:[\w.~+-]+/)*([\w.~+-]+)")
CSV_NAME = re.compile(r"tables/[\w.-]+\.csv")

_ENVIRONMENT = Environment(loader=PackageLoader("bench.report", "templates"), autoescape=select_autoescape(["j2"]),
                           trim_blocks=True, lstrip_blocks=True)


def write_page(out: Path, cards: list[dict[str, str]], margin: float, links: Sequence[tuple[str, str]] = (),
               source: str | None = None) -> Path:
    """Write out/index.html: the verdict cards first, then source (None: out/report.md) rendered; links: (label,
    relative href) of the files beside the report (config.json), shown with the tables' CSVs."""
    source = without_paths((out / "report.md").read_text() if source is None else source)
    first, _, rest = source.partition("\n")
    titled = first.startswith("# ")
    page = _ENVIRONMENT.get_template(TEMPLATE).render(
        title=first[2:].strip() if titled else "Active-learning benchmark report",
        cards=[{key: without_paths(value) for key, value in card.items()} for card in cards],
        body=render_markdown(rest if titled else source, out),
        links=[{"label": label, "href": href} for label, href in links],
        csvs=sorted(p.relative_to(out).as_posix() for p in (out / "tables").glob("*.csv")),
        margin=text.margin_text(margin), symbols=SYMBOLS)
    path = out / PAGE
    path.write_text(page, encoding="utf-8")
    return path


def verdict_cards(rows: pd.DataFrame, plan: verdicts.SequentialPlan | None,
                  where: Sequence[str] | None = None) -> list[dict[str, str]]:
    """One card per verdict row, in the rows' order, with the numbers report.md's verdict table shows; where: each
    row's setting as the card names it (None: one setting, not named)."""
    if rows.empty:
        return []
    shown = verdict_display(rows, plan)
    cards = []
    for i, ((_, row), (_, cells)) in enumerate(zip(rows.iterrows(), shown.iterrows(), strict=True)):
        needed = row.get("seeds_needed", float("nan"))
        cards.append({
            "verdict": str(row["verdict"]), "strategy": str(row["strategy"]), "other": str(row["other"]),
            "where": where[i] if where is not None else "", "diff": cells["AULC diff (pts)"],
            "interval": cells["CI (pts)"], "level": cells["CI level"], "seeds": cells["seeds"],
            "needed": str(int(needed)) if row["verdict"] == verdicts.UNDECIDED and not pd.isna(needed) else "",
        })
    return cards


def without_paths(source: str) -> str:
    """source with each absolute path shortened to its last component (…/name): a folder or a dataset given by
    its full path names the machine it ran on."""
    return ABSOLUTE_PATH.sub(lambda m: f"…/{m.group(1)}", source)


def render_markdown(source: str, out: Path) -> str:
    """report.md as HTML: figures as data URIs, `tables/X.csv` as links, long tables marked sortable."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(source)
    for token in tokens:
        if token.type == "inline" and token.children:
            token.children = [new for child in token.children for new in _inline(child, out)]
    for i, token in enumerate(tokens):
        if token.type == "table_open" and _body_rows(tokens, i) > SORTABLE_ROWS:
            token.attrSet("class", "sortable")
    return md.renderer.render(tokens, md.options, {})


def _inline(token: Token, out: Path) -> list[Token]:
    if token.type == "image":
        src = str(token.attrGet("src") or "")
        png = out / src
        if src.startswith("plots/") and png.is_file():
            token.attrSet("src", "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii"))
        return [token]
    if token.type == "code_inline" and CSV_NAME.fullmatch(token.content):
        opening = Token("link_open", "a", 1, attrs={"href": token.content})
        return [opening, token, Token("link_close", "a", -1)]
    return [token]


def _body_rows(tokens: list[Token], start: int) -> int:
    rows, body = 0, False
    for token in tokens[start:]:
        if token.type == "table_close":
            break
        body = body or token.type == "tbody_open"
        rows += body and token.type == "tr_open"
    return rows
