"""Background runs for the reliability tests: the reference run (twice, for determinism) and the fault
scenarios start as the session starts, in threads that wait on CLI subprocesses, so that they overlap with
each other and with the in-process tests. Only what the selected tests need is started."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from launch import run_cli

from .scenarios import all_scenarios
from .support import REFERENCE


def _reference_run(folder: Path) -> Path:
    result = run_cli(*REFERENCE, "--out", folder)
    assert result.returncode == 0, result.stderr
    return folder


def pytest_configure(config):
    config.addinivalue_line("markers", "scenario(name): the background fault scenario (scenarios.py) a test judges")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the marks into the tests' ids
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist with --dist loadgroup (make test), every test here runs in one worker: the background
    runs start once per worker that runs a test of this folder, and each worker sees every collected test."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.xdist_group("reliability"))


def _wanted(session: pytest.Session, fixture: str) -> bool:
    return any(fixture in getattr(item, "fixturenames", ()) for item in session.items)


def _wanted_scenarios(session: pytest.Session) -> set[str]:
    return {mark.args[0] for item in session.items for mark in item.iter_markers("scenario")}


@pytest.fixture(scope="session", autouse=True)
def _background(request, tmp_path_factory) -> dict[str, dict[str, Future]]:
    """Start the runs the selected tests need (the reference first); wait for them at the end."""
    started: dict[str, dict[str, Future]] = {"reference": {}, "faults": {}}
    with ThreadPoolExecutor(max_workers=3) as pool:
        if any(_wanted(request.session, f) for f in ("reference", "reference_runs")):
            base = tmp_path_factory.mktemp("reference")
            started["reference"] = {name: pool.submit(_reference_run, base / name) for name in ("first", "second")}
        wanted = _wanted_scenarios(request.session)
        started["faults"] = {name: pool.submit(scenario, tmp_path_factory.mktemp(name))
                             for name, scenario in all_scenarios().items() if name in wanted}
        yield started
        pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session")
def reference_runs(_background) -> dict[str, Future]:
    return _background["reference"]


@pytest.fixture(scope="session")
def reference(reference_runs) -> Path:
    """A finished run of the REFERENCE command, uninterrupted."""
    return reference_runs["first"].result()


@pytest.fixture(scope="session")
def fault_scenarios(_background) -> dict[str, Future]:
    """Futures of scenarios.all_scenarios(), by name: each gives what its scenario observed."""
    return _background["faults"]
