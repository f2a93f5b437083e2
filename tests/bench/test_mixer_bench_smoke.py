"""Smoke test of bench/mixer.py: a small run on the real clock yields sane figures; none is asserted
as a performance claim (the machine is shared)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from bench_scripts import load_script


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("mixer")


def test_one_conference_runs_and_reports(bench: ModuleType, tmp_path: Path) -> None:
    result = bench.measure("pcmu", 8000, 5, 0.5)
    assert result.participants == 5
    assert 0 < result.busy < 1
    assert 0 <= result.delay_p50 <= result.delay_p99 < 0.5
    assert result.over == result.over_host + result.over_others + result.over_ours
    assert 0 <= result.empty_p99 <= result.empty_max < 0.5  # the reference ran beside it
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Performance\n\n{bench.RESULTS_BEGIN}\nold\n{bench.RESULTS_END}\n")
    text = bench.report([result], 0.5, 1.0)
    assert "| pcmu | 8000 | 5 |" in text
    bench.replace_section(doc, bench.RESULTS_BEGIN, bench.RESULTS_END, text)
    assert "old" not in doc.read_text()


def test_a_late_tick_is_the_hosts_when_the_empty_loop_was_as_late(bench: ModuleType) -> None:
    # The empty loop woke every ms, on time but for a 30 ms stall from t = 1.010.
    reference = [(1 + i / 1000, 0.0001) for i in range(100)]
    reference[10] = (1.010, 0.030)
    look_back = 0.030
    assert bench.overlap(reference, 1.015, 1.035, look_back) == 0.030  # inside the stall
    assert bench.overlap(reference, 1.045, 1.060, look_back) == 0.0001  # after it
    assert bench.overlap(reference, 1.000, 1.005, look_back) == 0.0001  # before it
