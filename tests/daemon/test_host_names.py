"""Issue 18, addresses: ``--proxy`` and ``--focus`` given a host name, located as RFC 3263 says.

The real daemon on loopback with ``--proxy sip:localhost:PORT`` or ``--focus
sip:conference-factory@localhost:PORT``: a port given, so only the name's
addresses are looked up (``/etc/hosts``, no DNS), and the invitation IM
reaches the proxy there, the factory INVITE the focus.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from daemon_peers import DaemonProcess, FocusPeer, SipClient

from vidim.sip import Request, Response

pytestmark = pytest.mark.timeout(120)


class Proxy(SipClient):
    """Answers 200 to everything and keeps the requests the daemon sent it."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        super().__init__()

    def handle(self, message: Request | Response, addr: tuple[str, int]) -> None:
        if isinstance(message, Request):
            self.requests.append(message)
        super().handle(message, addr)


def test_a_proxy_named_localhost_gets_the_invitation(tmp_path: Path) -> None:
    proxy = Proxy()
    requester = SipClient()
    daemon = DaemonProcess(tmp_path, ["--proxy", f"sip:localhost:{proxy.port}"])
    try:
        daemon.wait_ready(requester)
        call_id = requester.message(daemon.port, "sip:bob@example.com")
        assert requester.wait_answer(call_id).status == 202
        proxy.wait_for(
            lambda: any(
                r.method == "MESSAGE" and str(r.uri) == "sip:bob@example.com"
                for r in proxy.requests
            ),
            "the invitation IM at the proxy",
        )
        assert daemon.proc.poll() is None
    finally:
        daemon.stop()
        proxy.close()
        requester.close()


def test_a_focus_named_localhost_hosts_the_conference(tmp_path: Path) -> None:
    focus = FocusPeer()
    requester = SipClient()
    factory = f"sip:conference-factory@localhost:{focus.port}"
    daemon = DaemonProcess(tmp_path, ["--focus", factory])
    try:
        daemon.wait_ready(requester)
        call_id = requester.message(daemon.port, f"sip:bob@127.0.0.1:{focus.port}")
        assert requester.wait_answer(call_id).status == 202
        focus.wait_for(lambda: len(focus.invited) == 1, "the factory INVITE")
        daemon.wait_log("new=active")
    finally:
        daemon.stop()
        focus.close()
        requester.close()
