"""Issue 4, end to end scenarios 3, 4 and 5: bad input through the whole chain, an
unreachable focus, and SIGTERM mid-conference (real Kamailio, vidim-daemon, pjsua2).
"""

from __future__ import annotations

import socket
import time
import uuid

import pytest
from e2e_peers import DOMAIN, HOST, SERVICE, Site, header
from sip_peers import free_port, new_branch, udp_transaction

from vidim.sip import Request

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

UNTRUSTED = "127.0.0.2"  # on loopback, but outside --trusted 127.0.0.1/32


def test_bad_input_is_refused_and_the_daemon_keeps_serving(site: Site) -> None:
    # Kamailio (127.0.0.1) is trusted; another loopback address is not.
    site.start(daemon_args=["--trusted", "127.0.0.1/32"])
    alice = site.phone("alice")
    bob = site.phone("bob")
    carol = site.phone("carol")

    cases = [
        # (what, to, body, headers, status, words in the Warning)
        ("unknown mode", f"sip:bob@{DOMAIN}", "", {"X-Vidim-Mode": "teleport"}, 400, "mode"),
        ("no invitees", SERVICE, "/video", {}, 400, "no invitees"),
        ("injection in an invitee URI", f"sip:bob@{DOMAIN}", "",
         {"X-Vidim-Mode": "video", "X-Vidim-Invite": "<sip:carol%0d%0aX-Evil:%201@vidim.test>"},
         400, "control character"),
        ("unknown command", SERVICE, "/teleport bob", {}, 400, "unknown command"),
    ]  # fmt: skip
    for what, to, body, headers, status, words in cases:
        start = alice.mark()
        answer = alice.message(to, body, headers)
        assert answer["code"] == status, (what, answer)
        warning = header(answer["headers"], "Warning") or ""
        assert warning.startswith("399 "), (what, warning)
        assert words in warning.lower(), (what, warning)
        im = alice.wait_im(lambda e: "could not" in e["body"], start=start)
        assert words in im["body"].lower(), (what, im["body"])
    assert not bob.events("im_received"), "nothing changed"
    assert not carol.events("im_received"), "nothing changed"

    # An untrusted source, straight to the daemon: 403 + Warning, and no IM (no reflection).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((UNTRUSTED, 0))
        port = sock.getsockname()[1]
        request = Request(
            "MESSAGE",
            f"sip:bob@{DOMAIN}",
            [
                ("Via", f"SIP/2.0/UDP {UNTRUSTED}:{port};branch={new_branch()};rport"),
                ("Max-Forwards", "70"),
                ("From", f"<sip:alice@{DOMAIN}>;tag={uuid.uuid4().hex[:8]}"),
                ("To", f"<sip:bob@{DOMAIN}>"),
                ("Call-ID", f"{uuid.uuid4().hex}@{UNTRUSTED}"),
                ("CSeq", "1 MESSAGE"),
                ("X-Vidim-Mode", "video"),
                ("Content-Length", "0"),
            ],
        )
        response = udp_transaction(sock, request, (HOST, site.daemon_port), timeout=5)
    assert response.status == 403, response.to_bytes().decode()
    assert "trust" in (response.headers.get("Warning") or "").lower()

    # A real conference (alice -> bob); carol, not invited, dials it without the key and
    # with a forged P-Asserted-Identity (Kamailio strips it): 403 + Warning.
    start = alice.mark()
    assert alice.message(f"sip:bob@{DOMAIN}", "", {"X-Vidim-Mode": "audio"})["code"] == 202
    invitation = bob.wait("invitation")
    alice.wait_im(lambda e: header(e["headers"], "X-Vidim-Conference") is not None, start=start)
    bare = invitation["conference_uri"].split(";", 1)[0]
    carol.send(cmd="call", uri=bare, headers={"P-Asserted-Identity": f"<sip:bob@{DOMAIN}>"})
    refused = carol.wait("call_response")
    assert refused["status"] == 403, refused
    assert "not invited" in (header(refused["headers"], "Warning") or ""), refused
    carol.wait("call_state", lambda e: e["state"] == "DISCONNECTED")

    # The daemon keeps serving: bob joins with his key, alice sees him.
    bob.send(cmd="call", uri=invitation["conference_uri"])
    bob.wait("call_state", lambda e: e["state"] == "CONFIRMED")
    alice.wait_im(lambda e: "bob" in e["body"] and "joined" in e["body"], start=start)
    assert site.daemon is not None
    assert site.daemon.proc.poll() is None, "the daemon keeps serving"


def test_unreachable_focus_gives_a_failure_im_in_time(site: Site) -> None:
    focus_timeout = 2.0
    closed = free_port()  # nothing listens there
    site.start(
        daemon_args=["--focus", f"sip:conference-factory@{HOST}:{closed}"],
        config=f"[timers]\nfocus_timeout = {focus_timeout}\n",
    )
    alice = site.phone("alice")
    site.phone("bob")
    start = alice.mark()
    sent = time.monotonic()
    assert alice.message(f"sip:bob@{DOMAIN}", "", {"X-Vidim-Mode": "video"})["code"] == 202
    failure = alice.wait_im(
        lambda e: header(e["headers"], "X-Vidim-Conference") is None,
        timeout=focus_timeout + 5, start=start,
    )  # fmt: skip
    elapsed = time.monotonic() - sent
    assert elapsed <= focus_timeout + 1.5, f"failure IM after {elapsed:.1f}s"
    assert str(closed) in failure["body"] or "focus" in failure["body"].lower(), failure


def test_sigterm_mid_conference_ends_every_call(site: Site) -> None:
    site.start()
    alice = site.phone("alice")
    bob = site.phone("bob")
    carol = site.phone("carol")
    headers = {"X-Vidim-Mode": "audio", "X-Vidim-Invite": f"<sip:carol@{DOMAIN}>"}
    assert alice.message(f"sip:bob@{DOMAIN}", "", headers)["code"] == 202
    for phone in (bob, carol):
        phone.send(cmd="call", uri=phone.wait("invitation")["conference_uri"])
    for phone in (bob, carol):
        phone.wait("call_state", lambda e: e["state"] == "CONFIRMED")

    assert site.daemon is not None
    site.sigterm_daemon()
    for phone in (bob, carol):
        phone.wait("bye_received")
        phone.wait("call_state", lambda e: e["state"] == "DISCONNECTED")
    code = site.daemon.proc.wait(timeout=15)
    assert code == 0, site.daemon.dump()
    messages = [r.get("message") for r in site.daemon.log_records()]
    assert "stopping: ending 1 conferences" in messages, site.daemon.dump()


def test_sigterm_without_end_on_stop_leaves_the_calls_alone(site: Site) -> None:
    """--no-end-on-stop: nothing is sent on SIGTERM; the calls are left for the store."""
    site.start(daemon_args=["--no-end-on-stop"])
    alice = site.phone("alice")
    bob = site.phone("bob")
    assert alice.message(f"sip:bob@{DOMAIN}", "", {"X-Vidim-Mode": "audio"})["code"] == 202
    bob.send(cmd="call", uri=bob.wait("invitation")["conference_uri"])
    bob.wait("call_state", lambda e: e["state"] == "CONFIRMED")

    assert site.daemon is not None
    site.sigterm_daemon()
    assert site.daemon.proc.wait(timeout=15) == 0, site.daemon.dump()
    messages = [r.get("message") for r in site.daemon.log_records()]
    assert "stopping: leaving 1 conferences to the store" in messages, site.daemon.dump()
    assert not bob.events("bye_received"), "no BYE without end_on_stop"
