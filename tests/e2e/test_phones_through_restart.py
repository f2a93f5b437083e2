"""kill -9 of the daemon in the middle of a call on the built-in focus (issue 16).

Real Kamailio, the real daemon with its embedded SQLite store, 50 live
conferences on the built-in focus, two pjsua2 phones in one of them.  The daemon is killed with SIGKILL and started
again on the same ports and store: the phones keep their calls (nobody hangs
up), media flows through the focus again, the requester's ``/status`` finds
all 50 conferences, and ``/end`` ends the one made before the kill.
"""

from __future__ import annotations

import time

import pytest
from e2e_peers import DOMAIN, SERVICE, Phone, Site, conference_of, header

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


#: Live conferences at the kill: one with the phones in it, the others waiting for dave.
CONFERENCES = 50


def conference_ids(alice: Phone, start: int = 0) -> list[str]:
    """The ids of the conferences alice was told are ready (from her ready IMs)."""
    ids = []
    for event in alice.events("im_received")[start:]:
        value = header(event["headers"], "X-Vidim-Conference")
        if value is not None:
            ids.append(conference_of(value)["id"])
    return ids


def test_phones_keep_their_call_and_media_through_a_kill_9_and_restart(site: Site) -> None:
    site.start(config="[limits]\nrate_limit = 100\n")
    alice = site.phone("alice")
    bob = site.phone("bob")
    carol = site.phone("carol")
    # Conferences nobody joins (dave is not registered: his invitation fails, the
    # conference stays up for its idle time), before the one with the phones.
    for _ in range(CONFERENCES - 1):
        status = alice.message(f"sip:dave@{DOMAIN}", "", {"X-Vidim-Mode": "audio"})
        assert status["code"] == 202, status

    status = alice.message(f"sip:bob@{DOMAIN}", "", {
        "X-Vidim-Mode": "audio", "X-Vidim-Invite": f"<sip:carol@{DOMAIN}>",
    })  # fmt: skip
    assert status["code"] == 202, status
    for phone in (bob, carol):
        invitation = phone.wait("invitation")
        phone.send(cmd="call", uri=invitation["conference_uri"])
        phone.wait("call_state", lambda e: e["state"] == "CONFIRMED")
    before = rx_after(carol, 0)  # bob's audio reaches carol through the focus
    alice.wait_line(lambda _: len(conference_ids(alice)) >= CONFERENCES, "every ready IM")
    ids = conference_ids(alice)
    assert len(set(ids)) == CONFERENCES

    site.kill_and_restart_daemon()
    after_restart = carol.rx_packets()
    # Media again: carol's counter moves on past where it stood once the daemon was back.
    assert rx_after(carol, after_restart + 20) > before
    assert rx_after(bob, bob.rx_packets() + 20) > 0
    # Nobody's call was dropped.
    for phone in (bob, carol):
        assert not phone.events("bye_received")
        assert not [e for e in phone.events("call_state") if e["state"] == "DISCONNECTED"]

    # Every conference is still known: /status of each, by id.
    for conference_id in ids:
        mark = alice.mark()
        answer = alice.message(SERVICE, f"/status #{conference_id}")
        assert answer["code"] == 202, answer
        status_im = alice.wait_im(
            lambda e, cid=conference_id: e["body"].startswith(f"Conference #{cid}"), start=mark
        )
        assert "(audio), active" in status_im["body"], status_im

    end = alice.message(SERVICE, "/end")
    assert end["code"] == 202, end
    for phone in (bob, carol):
        phone.wait("bye_received")
        phone.wait("call_state", lambda e: e["state"] == "DISCONNECTED")
    alice.wait_im(lambda e: "ended" in e["body"])
