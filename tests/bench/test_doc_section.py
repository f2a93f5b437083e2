"""Each benchmark rewrites its own section of docs/performance.md and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bench_scripts import load_script

SCRIPTS = ("parse", "setups", "memory", "setup_cost")


@pytest.mark.parametrize("stem", SCRIPTS)
def test_write_replaces_only_the_scripts_own_section(stem: str, tmp_path: Path) -> None:
    bench = load_script(stem)
    others = "".join(
        f"{load_script(o).RESULTS_BEGIN}\n{o} stays\n{load_script(o).RESULTS_END}\n"
        for o in SCRIPTS
        if o != stem
    )
    doc = tmp_path / "performance.md"
    doc.write_text(f"# T\n{others}{bench.RESULTS_BEGIN}\nold\n{bench.RESULTS_END}\nafter\n")
    bench.write_results(doc, "new\n\n")  # trailing newlines: one line end kept
    assert (
        doc.read_text() == f"# T\n{others}{bench.RESULTS_BEGIN}\nnew\n{bench.RESULTS_END}\nafter\n"
    )


def test_a_file_without_the_markers_is_refused_and_left_alone(tmp_path: Path) -> None:
    bench = load_script("setups")
    doc = tmp_path / "performance.md"
    doc.write_text(f"# T\n{bench.RESULTS_END}\n{bench.RESULTS_BEGIN}\n")  # end before begin
    with pytest.raises(SystemExit, match=re.escape(f"no {bench.RESULTS_BEGIN}")):
        bench.write_results(doc, "new")
    assert doc.read_text() == f"# T\n{bench.RESULTS_END}\n{bench.RESULTS_BEGIN}\n"
    with pytest.raises(FileNotFoundError):
        bench.write_results(tmp_path / "missing.md", "new")


def test_the_parser_benchmark_starts_a_missing_file(tmp_path: Path) -> None:
    bench = load_script("parse")
    doc = tmp_path / "performance.md"
    bench.write_results(doc, "table")
    assert doc.read_text() == (
        f"# Performance\n\n{bench.RESULTS_BEGIN}\ntable\n{bench.RESULTS_END}\n"
    )
