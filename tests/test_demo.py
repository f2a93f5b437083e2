"""The main job until the daemon exists: `python -m vidim` runs the SIP core demo."""

from __future__ import annotations

import subprocess
import sys

from vidim.__main__ import run_demo


def test_demo_plays_every_step() -> None:
    lines: list[str] = []
    assert run_demo(lines.append) == 0
    text = "\n".join(lines)
    # The lost MESSAGE is retransmitted by Timer E after T1, then accepted.
    assert "  0.000   alice -> vidim  MESSAGE sip:bob@example.com" in text
    assert "(lost in the network)" in text
    assert "  0.500   alice -> vidim  MESSAGE" in text
    assert "202 Accepted (MESSAGE)" in text
    assert '420 Bad Extension (OPTIONS)  [Warning: 399 vidim "unsupported extension' in text
    assert "ACK sip:conf-42@127.0.0.1:5080" in text
    assert "200 OK (BYE)" in text
    assert lines[-1].endswith("every transaction has ended (0 left)")


def test_python_m_vidim_exits_zero() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vidim"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every transaction has ended" in done.stdout
