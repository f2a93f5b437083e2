"""bench/overload.py: what it reads from the kernel, and a smoke run against the daemon.

The smoke run starts the real SIPp and vidim-daemon, so it is marked
``integration``; no timing or rate is asserted: the machine is shared.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
from bench_scripts import load_script


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("overload")


def test_socket_drops_counts_what_a_full_receive_buffer_lost(bench: ModuleType) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as full,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        full.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel's least
        full.bind(("127.0.0.1", 0))
        port = full.getsockname()[1]
        assert bench.socket_drops(port) == 0
        for _ in range(200):
            sender.sendto(b"x" * 500, ("127.0.0.1", port))
        deadline = time.monotonic() + 5
        while bench.socket_drops(port) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert 0 < bench.socket_drops(port) < 200
        assert bench.receive_buffer(port) == full.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def test_a_row_names_the_unanswered_and_the_buffer(bench: ModuleType) -> None:
    step = bench.Step("3x", 3000, 5.0, asked=212992, granted=425984, sent=15000)
    step.statuses = Counter({202: 4000, 503: 10900})
    step.unanswered = 100
    row = bench.format_row(step, 1000.0)
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:6] == ["212,992 B", "416 KiB", "3x", "3,000", "3.0x", "15,000"]
    assert cells[6:10] == ["4,000", "10,900", "0", "**100**"]


@pytest.mark.integration
def test_quick_run_answers_and_accounts_for_every_request(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Overload\n{bench.RESULTS_BEGIN}\nold\n{bench.RESULTS_END}\n")
    assert bench.main(["--quick", "--multiples", "1,3", "--workdir", str(tmp_path), "--write",
                       str(doc)]) == 0  # fmt: skip
    text = doc.read_text()
    assert "old" not in text
    assert "net.core.rmem_max" in text
    rows = [line for line in text.splitlines() if line.startswith("| default")]
    assert len(rows) == 2
    for row in rows:
        cells = [cell.strip().strip("*").replace(",", "") for cell in row.strip("|").split("|")]
        sent, ok, refused, other, unanswered = (int(cell) for cell in cells[5:10])
        assert sent > 0
        assert ok + refused + other + unanswered == sent
    one_x = rows[0].split("|")
    assert int(one_x[7].strip().replace(",", "")) > 0  # some 202s at 1x
    assert "capacity:" in capsys.readouterr().out
