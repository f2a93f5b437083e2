"""kill -9 of the daemon in the middle of a call on the built-in focus (issue 16).

Real Kamailio, the real daemon with its embedded SQLite store, two pjsua2
phones in one audio conference.  The daemon is killed with SIGKILL and started
again on the same ports and store: the phones keep their calls (nobody hangs
up), media flows through the focus again, and the requester's ``/status`` and
``/end`` act on the conference made before the kill.
"""

from __future__ import annotations

import time

import pytest
from e2e_peers import DOMAIN, SERVICE, Phone, Site

pytestmark = pytest.mark.e2e


def rx_after(phone: Phone, floor: int, timeout: float = 10.0) -> int:
    """Bounded wait until the phone's received audio packets pass ``floor``."""
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count = phone.rx_packets(timeout=max(0.2, deadline - time.monotonic()))
        if count > floor:
            return count
    raise AssertionError(f"{phone.user}: no audio after {floor} packets within {timeout} s")


def test_phones_keep_their_call_and_media_through_a_kill_9_and_restart(site: Site) -> None:
    site.start()
    alice = site.phone("alice")
    bob = site.phone("bob")
    carol = site.phone("carol")

    status = alice.message(f"sip:bob@{DOMAIN}", "", {
        "X-Vidim-Mode": "audio", "X-Vidim-Invite": f"<sip:carol@{DOMAIN}>",
    })  # fmt: skip
    assert status["code"] == 202, status
    for phone in (bob, carol):
        invitation = phone.wait("invitation")
        phone.send(cmd="call", uri=invitation["conference_uri"])
        phone.wait("call_state", lambda e: e["state"] == "CONFIRMED")
    before = rx_after(carol, 0)  # bob's audio reaches carol through the focus

    site.kill_and_restart_daemon()
    after_restart = carol.rx_packets()
    # Media again: carol's counter moves on past where it stood once the daemon was back.
    assert rx_after(carol, after_restart + 20) > before
    assert rx_after(bob, bob.rx_packets() + 20) > 0
    # Nobody's call was dropped.
    for phone in (bob, carol):
        assert not phone.events("bye_received")
        assert not [e for e in phone.events("call_state") if e["state"] == "DISCONNECTED"]

    mark = alice.mark()
    answer = alice.message(SERVICE, "/status")
    assert answer["code"] == 202, answer
    status_im = alice.wait_im(lambda e: e["body"].startswith("Conference #"), start=mark)
    assert "(audio), active" in status_im["body"], status_im

    end = alice.message(SERVICE, "/end")
    assert end["code"] == 202, end
    for phone in (bob, carol):
        phone.wait("bye_received")
        phone.wait("call_state", lambda e: e["state"] == "DISCONNECTED")
    alice.wait_im(lambda e: "ended" in e["body"])
