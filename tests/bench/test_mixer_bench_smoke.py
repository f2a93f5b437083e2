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
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Performance\n\n{bench.RESULTS_BEGIN}\nold\n{bench.RESULTS_END}\n")
    text = bench.report([result], 0.5)
    assert "| pcmu | 8000 | 5 |" in text
    bench.replace_section(doc, bench.RESULTS_BEGIN, bench.RESULTS_END, text)
    assert "old" not in doc.read_text()
