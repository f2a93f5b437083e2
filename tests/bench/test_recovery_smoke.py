"""Smoke test of bench/recovery.py: ``--quick`` runs every measurement once and writes its section.

Runs the real daemon (SQLite stores only: ``--quick`` leaves Redis out) and
Kamailio (installed by scripts/setup), so it is marked ``integration``.  No time is asserted: the
machine is shared; what is asserted is that each restart found its conferences
and that media came back through the built-in focus.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType

import pytest
from bench_scripts import load_script

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("recovery")


def test_ms_gives_the_median_and_the_range(bench: ModuleType) -> None:
    assert bench.ms([]) == "-"
    assert bench.ms([0.5]) == "500 ms"
    assert bench.ms([0.3, 1.2345, 0.4]) == "400 ms (300-1,234)"


def test_log_time_reads_the_daemons_json_time(bench: ModuleType) -> None:
    assert bench.log_time({"time": "1970-01-01T00:00:01.250Z"}) == 1.25


@pytest.mark.skipif(shutil.which("kamailio") is None, reason="kamailio is not installed")
def test_quick_run_restores_every_conference_and_writes_its_section(
    bench: ModuleType, tmp_path: Path
) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(f"# before\n{bench.RESULTS_BEGIN}\nold\n{bench.RESULTS_END}\n# after\n")
    assert bench.main(["--quick", "--write", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# before\n")
    assert text.endswith("# after\n")
    assert "old" not in text
    rows = {line.split("|")[2].strip(): line for line in text.splitlines() if "| SQLite |" in line}
    assert set(rows) == {"0", "5"}
    assert rows["5"].split("|")[6].strip() == "5"  # the restart found all 5
    assert "kill -> first RTP packet forwarded after the restart" in text
