"""Counts that docs pages state are generated, and stay true."""

from __future__ import annotations

import importlib.util

from conftest import ROOT


def test_the_guarantees_page_holds_the_suites_counts_as_pytest_collects_them():
    spec = importlib.util.spec_from_file_location("suite_counts", ROOT / "docs" / "suite_counts.py")
    counts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(counts)
    found = counts.counts()
    assert all(n > 0 for n in found.values()), found
    assert counts.PAGE.read_text() == counts.page_with(found), "run `python docs/suite_counts.py`"
