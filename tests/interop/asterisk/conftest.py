"""Fixtures of the Asterisk interop tests: a real Asterisk 20 beside the e2e ``Site``.

The helpers of tests/e2e (Kamailio, vidim-daemon, pjsua2 phones) and
tests/integration are reused as named modules, as tests/e2e does.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(TESTS / "integration"), str(TESTS / "e2e"), str(Path(__file__).parent)]

import e2e_peers  # noqa: E402
from asterisk_peer import Asterisk, asterisk_binary, start_asterisk  # noqa: E402
from e2e_peers import Site  # noqa: E402
from sip_peers import free_port  # noqa: E402


@pytest.fixture
def asterisk() -> Iterator[Asterisk]:
    """Asterisk with examples/asterisk/ and the minimal configuration; skipped without it."""
    binary = asterisk_binary()
    if binary is None:
        pytest.skip(
            "asterisk is not on PATH: these tests need Asterisk 20 built as docs/asterisk.md "
            "says (CI has none; the recorded-exchange half runs everywhere)"
        )
    server = start_asterisk(binary, free_port(), free_port())
    try:
        yield server
    finally:
        log = server.log()
        print(f"--- Asterisk exited with {server.stop()}; log tail:")
        print(log[-8000:])


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """The e2e Site, its daemon run as ``python -m vidim_daemon``: the code on PYTHONPATH
    (the installed ``vidim-daemon`` script may import another checkout's)."""
    monkeypatch.setattr(e2e_peers, "daemon_argv", lambda: [sys.executable, "-m", "vidim_daemon"])
    world = Site(tmp_path)
    try:
        yield world
    finally:
        world.teardown()
