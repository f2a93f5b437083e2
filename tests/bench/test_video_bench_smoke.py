"""Smoke test of bench/video.py: a short run yields sane figures; none is a performance claim."""

from __future__ import annotations

from bench_scripts import load_script


def test_one_conference_runs_and_reports() -> None:
    bench = load_script("video")
    result = bench.measure(1, 1.0)
    assert result.packets_in == 5 * 30 * 3
    assert result.packets_out == result.packets_in  # one stream per receiver
    assert result.cpu > 0
    assert "| 1 | 450 | 450 |" in bench.report([result])
