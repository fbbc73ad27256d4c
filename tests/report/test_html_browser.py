"""report/index.html in a real browser: Debian's headless Chromium, driven by selenium through the system's
chromedriver (nothing downloaded). Without a browser the tests skip with one line, except under CI (CI=true), where
.ci/run installs one and a missing browser fails.

REFRESH_EXAMPLE_SCREENSHOT=1 writes docs/example-report/screenshot.png, the README's picture, from the example's page.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.report import html
from bench.report.layout import write_report
from conftest import FOUR_WORDS as WORDS
from conftest import ROOT, four_verdicts

EXAMPLE = ROOT / "docs" / "example-report"
WIDTH, HEIGHT = 1200, 900  # px: the window, and so the screenshot


def _browser_or_skip() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        chromium = None
    if chromium and driver:
        return chromium, driver
    why = ("no chromium, chromedriver and selenium here (apt-get install chromium chromium-driver; "
           "pip install -e .[dev])")
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}: under CI the page must be checked in a browser (.ci/run installs one)")
    pytest.skip(f"{why}: the report page is not checked in a browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium, driver_path = _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={WIDTH},{HEIGHT}", "--hide-scrollbars"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    four_verdicts().to_parquet(folder / "cycles.parquet", index=False)
    (folder / "config.json").write_text("{}")
    write_report(folder)
    return folder / "report" / html.PAGE


def opened(browser, page: Path) -> list[dict]:
    """Open page; the console's errors (SEVERE) as it loaded."""
    browser.get_log("browser")  # what an earlier page left
    browser.get(page.resolve().as_uri())
    browser.execute_script("return document.readyState")
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def images(browser) -> list[list]:
    return browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")


def words(browser) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".card .word")]


def test_the_page_shows_the_verdict_words_loads_every_figure_and_logs_no_error(browser, report, tmp_path):
    assert opened(browser, report) == []
    assert sorted(words(browser)) == sorted(f"{html.SYMBOLS[w]} {w}" for w in WORDS.values())
    shown = images(browser)
    assert len(shown) == len(list((report.parent / "plots").glob("*.png"))) > 0
    assert all(alt and complete and width > 0 and height > 0 for alt, complete, width, height in shown), shown
    shot = tmp_path / "index.png"
    assert browser.save_screenshot(str(shot))
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == WIDTH


def test_a_sortable_column_sorts_by_number_both_ways_and_keeps_each_row_whole(browser, report):
    from selenium.webdriver.common.by import By

    assert opened(browser, report) == []
    table = browser.find_elements(By.CSS_SELECTOR, "table.sortable")[0]
    heads = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    column = heads.index("AULC diff (pts)")

    def rows() -> list[tuple[str, ...]]:
        return [tuple(td.text for td in tr.find_elements(By.TAG_NAME, "td"))
                for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")]

    before = rows()
    values = [float(row[column]) for row in before]
    assert values != sorted(values)  # not already in order: the click has something to do
    header = table.find_elements(By.CSS_SELECTOR, "thead th")[column]
    header.click()
    ascending = rows()
    assert [float(r[column]) for r in ascending] == sorted(values) and sorted(ascending) == sorted(before)
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert [float(r[column]) for r in rows()] == sorted(values, reverse=True)
    assert opened(browser, report) == []  # and nothing the script did logged an error


def test_the_sort_reads_numbers_as_the_tables_write_them(browser, report, tmp_path):
    # thousands separators (labels saved at paper scale), signs, the minus sign, "<0.001" and the dash of no value
    cells = ["1,200", "900", "+9,000", "\u22122.5", "<0.001", "\u2013", "-40", "12,000.5"]
    table = ('<table class="sortable"><thead><tr><th id="probe">n</th></tr></thead><tbody>'
             + "".join(f"<tr><td>{c}</td></tr>" for c in cells) + "</tbody></table>")
    page = tmp_path / "probe.html"
    page.write_text(report.read_text().replace("</article>", table + "</article>"))
    assert opened(browser, page) == []
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "probe").click()
    shown = browser.execute_script(
        "return Array.from(document.getElementById('probe').closest('table').tBodies[0].rows)"
        ".map(r => r.cells[0].textContent)")
    assert shown == ["-40", "\u22122.5", "<0.001", "900", "1,200", "+9,000", "12,000.5", "\u2013"]


def test_a_page_that_reached_beyond_itself_would_be_refused_and_logged(browser, report, tmp_path):
    # The console check above can fail: the same page with one figure from the network is blocked by its policy,
    # the image stays empty, and the console says so.
    reaching = tmp_path / "reaching.html"
    reaching.write_text(report.read_text().replace("<main>", '<main><img alt="x" src="https://example.org/x.png">'))
    errors = opened(browser, reaching)
    assert errors and any(alt == "x" and width == 0 for alt, _, width, _ in images(browser))


def test_the_page_prints(browser, report):
    assert opened(browser, report) == []
    pdf = base64.b64decode(browser.print_page())
    assert pdf[:5] == b"%PDF-" and pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages") > 1


def test_the_example_reports_page_in_the_browser(browser, tmp_path):
    page = EXAMPLE / "report" / html.PAGE
    assert opened(browser, page) == []
    shown = words(browser)
    assert len(shown) == 7 and all(w.split()[-1] in WORDS.values() for w in shown)
    assert all(width > 0 for _, _, width, _ in images(browser))
    target = EXAMPLE / "screenshot.png" if os.environ.get("REFRESH_EXAMPLE_SCREENSHOT") else tmp_path / "example.png"
    assert browser.save_screenshot(str(target))
