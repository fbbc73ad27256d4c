"""bench.report.html: report/index.html on synthetic runs whose verdicts are known (one strategy of each of the four
words), parsed with the standard library's HTML parser. What the page does in a browser: test_html_browser.py."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from bench.report import html
from bench.report.grid_report import write_grid_report
from bench.report.layout import write_report
from bench.report.suite import write_suite
from conftest import FOUR_WORDS, four_verdicts

WORDS = FOUR_WORDS


class Page(HTMLParser):
    """The parts of a page the tests read: every element's tag and attributes, the cards' text, the tables."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.cards: list[dict[str, object]] = []
        self.tables: list[dict[str, object]] = []
        self._in_card = False
        self._field: str | None = None
        self._in_cell = False
        self.feed(source)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attributes))
        classes = attributes.get("class", "").split()
        if tag == "li" and "card" in classes:
            self.cards.append({"class": classes[1], "text": "", "fields": {}})
            self._in_card = True
        elif self._in_card and tag in ("dt", "dd"):
            self._field = tag
        if tag == "table":
            self.tables.append({"sortable": "sortable" in classes, "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th") and self.tables:
            self.tables[-1]["rows"][-1].append("")
            self._in_cell = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "li":
            self._in_card = False
        if tag in ("td", "th"):
            self._in_cell = False
        if tag in ("dt", "dd"):
            self._field = None

    def handle_data(self, data: str) -> None:
        if self._in_card:
            card = self.cards[-1]
            card["text"] += data
            if self._field == "dt":
                card["_key"] = data.strip()
            elif self._field == "dd":
                card["fields"][card.pop("_key")] = data.strip()
        if self._in_cell:
            self.tables[-1]["rows"][-1][-1] += data


def points(x: float) -> str:  # percentage points, one decimal, signed: as a reader is shown them
    return f"{100 * x:+.1f}"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    four_verdicts().to_parquet(folder / "cycles.parquet", index=False)
    (folder / "config.json").write_text(json.dumps({"name": "s"}))
    write_report(folder)
    return folder


@pytest.fixture(scope="module")
def page(run_dir: Path) -> Page:
    return Page((run_dir / "report" / "index.html").read_text(encoding="utf-8"))


def test_each_primary_comparison_is_a_card_with_its_word_symbol_and_the_tables_numbers(run_dir, page):
    table = pd.read_csv(run_dir / "report" / "tables" / "primary_digits.csv")
    assert sorted(table["verdict"]) == sorted(WORDS.values())  # the synthetic truth, as the analysis found it
    assert len(page.cards) == len(table)
    for card, (_, row) in zip(page.cards, table.iterrows(), strict=True):
        assert card["class"] == row["verdict"] == WORDS[row["strategy"]]
        assert f"{html.SYMBOLS[row['verdict']]} {row['verdict']}" in card["text"]  # a word and a symbol, not colour
        assert f"{row['strategy']} vs {row['other']}" in card["text"]
        fields = card["fields"]
        assert fields["AULC difference"] == f"{points(row['mean_diff'])} points"
        assert fields["interval"].startswith(f"{points(row['ci_low'])} to {points(row['ci_high'])} points (")
        assert fields["interval"].endswith(f"{round(100 * (1 - row['level']), 2):g}%)")
        assert fields["seeds"] == str(row["n_pairs"])
        undecided = row["verdict"] == "undecided"
        assert ("seeds needed" in fields) == undecided
        if undecided:
            assert fields["seeds needed"] == str(int(row["seeds_needed"])) and row["seeds_needed"] > row["n_pairs"]


def test_the_cards_come_first_then_the_report_in_its_order(run_dir, page):
    source = (run_dir / "report" / "index.html").read_text()
    cards, first_figure = source.index('class="card '), source.index("<img")
    assert cards < source.index("Primary endpoint: area under") < first_figure
    headings = re.findall(r"<h[23][^>]*>(.*?)</h[23]>", source)
    in_markdown = [line.lstrip("# ").replace("`", "") for line in (run_dir / "report" / "report.md").read_text()
                   .splitlines() if re.match(r"#{2,3} ", line)]
    assert [re.sub(r"<[^>]+>", "", h) for h in headings][1:1 + len(in_markdown)] == in_markdown


def test_the_page_loads_nothing_beyond_itself_and_every_link_is_a_file_of_the_report(run_dir, page):
    images = [attrs for tag, attrs in page.elements if tag == "img"]
    assert len(images) == len(list((run_dir / "report" / "plots").glob("*.png"))) > 0
    for tag, attrs in page.elements:
        for name in ("src", "href"):
            value = attrs.get(name)
            if value is None or (tag == "img" and name == "src"):
                continue
            if tag == "link" and value == "data:,":
                continue  # the empty icon: the browser asks for none
            assert not re.match(r"[a-z]+:", value), (tag, value)  # no scheme: no http, no file
            assert not value.startswith("/"), value
            assert (run_dir / "report" / value).resolve().is_file(), value  # relative, and it exists
        assert tag not in ("iframe", "object", "embed") and not (tag == "script" and "src" in attrs)
    hrefs = {attrs["href"] for tag, attrs in page.elements if tag == "a"}
    assert "../config.json" in hrefs
    assert {f"tables/{p.name}" for p in (run_dir / "report" / "tables").glob("*.csv")} <= hrefs
    policy = [a["content"] for t, a in page.elements
              if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert policy and "default-src 'none'" in policy[0] and "img-src data:" in policy[0]


def test_every_figure_is_its_png_embedded_with_alt_text(run_dir, page):
    embedded = {}
    for tag, attrs in page.elements:
        if tag == "img":
            assert attrs.get("alt", "").strip(), attrs.get("alt")
            prefix = "data:image/png;base64,"
            assert attrs["src"].startswith(prefix)
            embedded[attrs["alt"]] = base64.b64decode(attrs["src"][len(prefix):])
    on_disk = {p.read_bytes() for p in (run_dir / "report" / "plots").glob("*.png")}
    assert set(embedded.values()) == on_disk


def test_long_tables_are_sortable_and_short_ones_are_not(page):
    for table in page.tables:
        body_rows = len(table["rows"]) - 1  # less the header row
        assert table["sortable"] == (body_rows > html.SORTABLE_ROWS), (body_rows, table["rows"][0])
    assert any(t["sortable"] for t in page.tables) and not all(t["sortable"] for t in page.tables)


def test_the_page_prints(run_dir):
    source = (run_dir / "report" / "index.html").read_text()
    style = source[source.index("<style>"):source.index("</style>")]
    assert "@media print" in style and "print-color-adjust: exact" in style  # the verdict colours on paper too


def test_no_path_of_the_machine_reaches_the_page(tmp_path):
    home = "/users/alice/projects/data"
    rows = four_verdicts().assign(dataset=f"npz:{home}/cifar_slice.npz", run=f"{home}/runs/somewhere")
    folder = tmp_path / "run"
    folder.mkdir()
    rows.to_parquet(folder / "cycles.parquet", index=False)
    write_report(folder)
    source = (folder / "report" / "index.html").read_text()
    assert home in (folder / "report" / "report.md").read_text()  # the Markdown report names it: the page must not
    assert "/users/alice" not in source and str(tmp_path) not in source
    assert "…/somewhere" in source  # the run, named by its full path, shown by its last component


@pytest.mark.parametrize("source, shown", [
    ("/users/a/b.npz", "…/b.npz"),
    ("`npz:/data/x/y.npz` and /tmp/run", "`npz:…/y.npz` and …/run"),
    ("tables/pairs_digits.csv, 1/2 of it, plots/a.png", "tables/pairs_digits.csv, 1/2 of it, plots/a.png"),
    ("see https://example.org/a/b", "see https://example.org/a/b"),
    ("../config.json", "../config.json"),
])
def test_without_paths_shortens_absolute_paths_only(source, shown):
    assert html.without_paths(source) == shown


def test_markup_in_names_is_text_on_the_page(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    four_verdicts().assign(dataset="<script>alert(1)</script>").to_parquet(folder / "cycles.parquet", index=False)
    write_report(folder)
    source = (folder / "report" / "index.html").read_text()
    assert "<script>alert" not in source and "&lt;script&gt;alert(1)" in source
    assert source.count("<script>") == 1  # the page's own sorting script, nothing else


def test_a_suite_writes_its_page_with_each_settings_verdicts(tmp_path):
    folders = []
    for i, name in enumerate(["small", "large"]):
        folder = tmp_path / name
        folder.mkdir()
        four_verdicts(name, seed=10 * i).to_parquet(folder / "cycles.parquet", index=False)
        folders.append(folder)
    report, _ = write_suite(folders, "random", tmp_path / "suite", margin=0.01)
    page = Page((report.parent / "index.html").read_text())
    table = pd.concat([pd.read_csv(p) for p in sorted((report.parent / "tables").glob("primary_*.csv"))])
    assert len(page.cards) == len(table) == 2 * len(WORDS)
    shown = {(c["text"].split(" vs ")[0].split()[-1], c["text"].split("(setting ")[1].split(")")[0], c["class"])
             for c in page.cards}
    assert shown == set(zip(table["strategy"], table["dataset"], table["verdict"], strict=True))
    assert str(tmp_path) not in (report.parent / "index.html").read_text()


def test_a_grid_writes_its_page_with_a_card_per_setting_and_comparison(tmp_path):
    labels = {"budget-50": {"budget": 50}, "budget-100": {"budget": 100}}
    (tmp_path / "grid.json").write_text(json.dumps({
        "grid": {"settings": list(labels)}, "strategies": ["random", *WORDS], "baseline": "random", "margin": 0.01,
        "design": "fixed", "comparisons": len(WORDS), "labels": labels, "names": ["budget"]}))
    for i, slug in enumerate(labels):
        (tmp_path / slug).mkdir()
        four_verdicts(slug, seed=20 * i).to_parquet(tmp_path / slug / "cycles.parquet", index=False)
    assert write_grid_report(tmp_path) is not None
    index = tmp_path / "report" / "index.html"
    page = Page(index.read_text())
    found = pd.read_csv(tmp_path / "report" / "tables" / "grid_verdicts.csv")
    assert len(page.cards) == len(found) == 2 * len(WORDS)
    for card, (_, row) in zip(page.cards, found.iterrows(), strict=True):
        assert card["class"] == row["verdict"] and f"(budget {labels[row['dataset']]['budget']})" in card["text"]
        assert card["fields"]["AULC difference"] == f"{points(row['mean_diff'])} points"
    links = {a["href"] for t, a in page.elements if t == "a"}
    assert {"../grid.json", "../budget-50/", "../budget-100/"} <= links
    assert all((index.parent / href).resolve().exists() for href in links)
