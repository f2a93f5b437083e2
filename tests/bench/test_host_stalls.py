"""bench/host_stalls.py: finding the machine's stalls in the probe's samples, and the probe itself."""

from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType

import pytest
from bench_scripts import load_script


@pytest.fixture(scope="module")
def hs() -> ModuleType:
    return load_script("host_stalls")


def _samples(slow: dict[int, float], n: int = 100) -> list[tuple[float, float]]:
    """One run every 10 ms from t=1000 s, 200 us each but those in ``slow`` (index -> us)."""
    return [(1000.0 + i * 0.01, slow.get(i, 200.0)) for i in range(n)]


def test_runs_three_times_the_median_are_stalls(hs: ModuleType) -> None:
    stalls = hs.find_stalls(_samples({20: 599.0, 40: 600.0, 70: 30_000.0}), min_us=0.0)
    assert [(round(s.start, 3), round(s.ms, 1)) for s in stalls] == [(1000.4, 0.6), (1000.7, 30.0)]


def test_short_holds_are_the_schedulers_not_stalls(hs: ModuleType) -> None:
    # 0.3-3 ms: another process on the probe's CPU; from 5 ms on: the host.
    stalls = hs.find_stalls(_samples({10: 3_000.0, 20: 4_999.0, 30: 5_000.0, 40: 12_000.0}))
    assert [round(s.ms, 1) for s in stalls] == [5.0, 12.0]


def test_stalls_close_together_are_one_window(hs: ModuleType) -> None:
    # 50 ms apart at most: one window from the first's start to the last's end.
    stalls = hs.find_stalls(_samples({30: 5_000.0, 34: 5_000.0, 50: 5_000.0}))
    assert [(round(s.start, 3), round(s.end, 3)) for s in stalls] == [
        (1000.3, 1000.345),
        (1000.5, 1000.505),
    ]


def test_too_few_samples_find_nothing(hs: ModuleType) -> None:
    assert hs.find_stalls(_samples({1: 10_000.0}, n=5)) == []


def test_away_from_leaves_out_what_arrived_near_a_stall(hs: ModuleType) -> None:
    stall = hs.Stall(10.0, 10.02)
    stamped = [(9.98, 1.0), (9.995, 2.0), (10.01, 3.0), (10.2, 4.0), (10.27, 5.0), (10.3, 6.0)]
    # 10 ms before the stall to 250 ms after its end are out.
    assert hs.away_from(stamped, [stall]) == [1.0, 6.0]
    assert hs.away_from(stamped, []) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_read_samples_skips_broken_lines(hs: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "probe.txt"
    path.write_text("1.5 200.0\nbroken\n2.5 x\n3.5 210.5\n4.5")  # a last line cut short
    assert hs.read_samples(path) == [(1.5, 200.0), (3.5, 210.5)]
    assert hs.read_samples(tmp_path / "missing.txt") == []


def test_the_probe_process_writes_a_sample_per_interval(hs: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "probe.txt"
    before = time.time()
    proc = hs.start(out, 0.5)
    assert proc.wait(timeout=30) == 0
    samples = hs.read_samples(out)
    # Every 10 ms for 0.5 s, less what the runs and wake-ups cost.
    assert 10 <= len(samples) <= 50, samples
    assert all(before <= at <= time.time() and took > 0 for at, took in samples)
    assert [at for at, _ in samples] == sorted(at for at, _ in samples)
