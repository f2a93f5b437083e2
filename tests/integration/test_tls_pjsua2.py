"""A pjsua2 phone (PJSIP 2.15) asks vidim for a conference over TLS (issue 18).

vidim-daemon (the worktree's code, built-in focus) listens on TLS with a
certificate of a CA made in the test; the phone (tests/integration/
pjsua2_tls_phone.py, a child process in its own process group) verifies it,
sends its command over TLS, and must get the 202 and vidim's "is ready" IM
back over the same TLS connection.  Every wait is bounded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sip_peers import HOST, VidimProcess, free_port, stop_process_group

from tls_peer import make_ca

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

PHONE = Path(__file__).with_name("pjsua2_tls_phone.py")


def test_a_pjsua2_phone_asks_over_tls_and_hears_back_over_tls(tmp_path: Path) -> None:
    pytest.importorskip("pjsua2")
    ca = make_ca(tmp_path / "ca")
    leaf = ca.issue("vidim", ips=(HOST,))
    port, focus_port, tls_port = free_port(), free_port(), free_port()
    daemon = VidimProcess(
        "vidim",
        ["run", "--listen", f"{HOST}:{port}", "--focus-listen", f"{HOST}:{focus_port}",
         "--store", "memory:", "--no-probe", "--tls-listen", f"{HOST}:{tls_port}",
         "--tls-certificate", str(leaf.certificate), "--tls-key", str(leaf.key),
         "--tls-ca-file", str(ca.certificate)],
        tmp_path,
    )  # fmt: skip
    phone: subprocess.Popen[str] | None = None
    try:
        daemon.wait_ready(port)
        phone = subprocess.Popen(
            [sys.executable, str(PHONE), "--ca", str(ca.certificate),
             "--to", f"sip:vidim@{HOST}:{tls_port};transport=tls",
             "--text", f"/video sip:bob@{HOST}:9"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        out, err = phone.communicate(timeout=30)
        events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert {"event": "status", "code": 202, "reason": "Accepted"} in events, (events, err)
        ready = [e for e in events if e["event"] == "im" and "is ready" in e["body"]]
        assert ready, (events, err)
        assert ready[0]["transport"] == "TLS"
        assert ready[0]["source"].endswith(f":{tls_port}"), ready  # over vidim's TLS listener
    finally:
        if phone is not None:
            stop_process_group(phone)  # type: ignore[arg-type]
        code = daemon.stop()
        print(f"--- vidim exited with {code}; log tail:\n{daemon.tail()}")
