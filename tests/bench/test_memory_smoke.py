"""Smoke test of bench/memory.py: the conferences come up and settle; no figure is asserted."""

from __future__ import annotations

from types import ModuleType

import pytest
from bench_scripts import load_script


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("memory")


@pytest.mark.parametrize("profile", ["rfc4579", "asterisk"])
def test_driver_brings_conferences_up_and_leaves_no_transaction(
    bench: ModuleType, profile: str
) -> None:
    driver = bench.Driver(bench.FocusProfile(profile), rate=1000.0)
    driver.create(200)
    driver.settle()
    driver.check(200)  # raises unless all 200 are ACTIVE
    assert len(driver.allocator._layer) == 0
    assert not driver.allocator._context.pending


def test_quick_run_in_child_processes(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "| rfc4579 | 1,000 |" in out
    assert "allocation site (tracemalloc)" in out
