"""`python -m vidim`: the real allocator and focus, simulated phones, a virtual clock."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import vidim.__main__ as demo_module
from vidim.__main__ import STEPS, Demo, build, ladder_line, missing_steps, play, run_demo
from vidim.allocator import Allocator
from vidim.allocator import events as allocator_events
from vidim.focus import ConferenceFocus
from vidim.focus import events as focus_events
from vidim.simulation import Observed, Phone, VirtualNetwork
from vidim.sip import Address, Request, Response
from vidim.vocabulary import Mode

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def played() -> Demo:
    demo = build()
    play(demo)
    return demo


@pytest.fixture(scope="module")
def ladder() -> list[str]:
    lines: list[str] = []
    assert run_demo(lines.append) == 0, "\n".join(lines)
    return lines


def _index(lines: list[str], *fragments: str) -> int:
    """The first line holding every fragment; fails naming them when there is none."""
    for number, line in enumerate(lines):
        if all(fragment in line for fragment in fragments):
            return number
    raise AssertionError(f"no ladder line with {fragments}:\n" + "\n".join(lines))


def test_the_ladder_shows_every_step_in_order(ladder: list[str]) -> None:
    steps = [
        # The first datagram alice sends is lost; Timer E sends it again after T1.
        (
            "  0.000   alice -> vidim  MESSAGE sip:bob@example.com  [X-Vidim-Mode: video]",
            "(lost in the network)",
        ),
        ("  0.500   alice -> vidim  MESSAGE sip:bob@example.com  [X-Vidim-Mode: video]",),
        ("vidim -> alice  202 Accepted (MESSAGE)",),
        ("vidim -> bob    OPTIONS sip:bob@example.com",),
        ("vidim -> focus  INVITE sip:conference-factory@127.0.0.1:5080", "[SDP + resource list]"),
        ("focus -> vidim  200 OK (INVITE)", "[Contact: <sip:conf-...@127.0.0.1:5080>;isfocus]"),
        ("vidim -> focus  ACK sip:conf-...@127.0.0.1:5080",),
        ("vidim -> bob    MESSAGE sip:bob@example.com", "invites you"),
        ("vidim -> alice  MESSAGE sip:alice@example.com", "is ready"),
        ("vidim -> focus  SUBSCRIBE sip:conf-",),
        ("  bob -> focus  INVITE sip:conf-...@127.0.0.1:5080;key=...",),
        ("focus -> bob    200 OK (INVITE)",),
        ("focus -> vidim  NOTIFY", "sip:bob@example.com connected"),
        ("vidim -> alice  MESSAGE sip:alice@example.com", "bob@example.com joined (video)."),
        ("alice -> vidim  MESSAGE sip:vidim@example.com", "'/end'"),
        ("vidim -> focus  BYE sip:conf-",),
        ("focus -> bob    BYE sip:bob@127.0.0.1:5064",),
        ("vidim -> alice  MESSAGE sip:alice@example.com", "has ended"),
    ]
    positions = [_index(ladder, *fragments) for fragments in steps]
    assert positions == sorted(positions)
    assert sum("(lost in the network)" in line for line in ladder) == 1
    assert ladder[-1].endswith("every transaction has ended")
    assert not [line for line in ladder if line.startswith("MISSING")]


def test_a_request_the_checks_refuse_gets_420(ladder: list[str]) -> None:
    _index(ladder, "alice -> vidim  MESSAGE sip:vidim@example.com  [Require: teleportation]")
    _index(
        ladder,
        "vidim -> alice  420 Bad Extension (MESSAGE)",
        '[Warning: 399 example.com "unsupported extension teleportation"]',
    )


def test_the_lost_message_comes_back_as_a_retransmission(played: Demo) -> None:
    datagrams = played.network.datagrams
    (lost,) = [d for d in datagrams if d.lost]
    assert lost.source == "alice"
    assert lost is next(d for d in datagrams if d.source == "alice")
    again = [d for d in datagrams if not d.lost and d.message.to_bytes() == lost.message.to_bytes()]
    assert [d.sent_at for d in again] == [0.5]  # Timer E: T1 later, the same branch
    accepted = [
        e.event
        for e in played.network.events
        if isinstance(e.event, allocator_events.RequestAccepted)
    ]
    assert accepted[0].call_id == lost.message.call_id


def _of(events: list[Observed], node: str, kind: type[object]) -> list[object]:
    return [e.event for e in events if e.node == node and isinstance(e.event, kind)]


def test_the_cores_are_the_real_ones(played: Demo) -> None:
    """A stub in place of the allocator or the focus would not emit these events."""
    assert type(played.allocator) is Allocator
    assert type(played.focus) is ConferenceFocus
    events = played.network.events
    (ready,) = _of(events, "vidim", allocator_events.ConferenceReady)
    (created,) = _of(events, "focus", focus_events.ConferenceCreated)
    assert isinstance(ready, allocator_events.ConferenceReady)
    assert isinstance(created, focus_events.ConferenceCreated)
    # The conference the focus made is the one the allocator announced, with the
    # random URI the focus drew and bob among the invitees.
    assert ready.conference_uri == created.conference_uri
    assert re.fullmatch(r"sip:conf-[0-9a-f]{32}@127\.0\.0\.1:5080", created.conference_uri)
    assert "sip:bob@example.com" in created.invitees
    (invited,) = _of(events, "vidim", allocator_events.InvitationSent)
    assert isinstance(invited, allocator_events.InvitationSent)
    assert (invited.invitee, invited.mode) == ("sip:bob@example.com", Mode.VIDEO)
    (admitted,) = _of(events, "focus", focus_events.ParticipantAdmitted)
    assert isinstance(admitted, focus_events.ParticipantAdmitted)
    assert (admitted.uri, admitted.mode) == ("sip:bob@example.com", Mode.VIDEO)
    (joined,) = _of(events, "vidim", allocator_events.ParticipantJoined)
    assert isinstance(joined, allocator_events.ParticipantJoined)
    assert joined.participant == "sip:bob@example.com"
    assert _of(events, "focus", focus_events.SubscriptionStarted)
    assert len(_of(events, "vidim", allocator_events.ConferenceEnded)) == 1
    assert len(_of(events, "focus", focus_events.ConferenceEnded)) == 1
    # Everything is over: no conference left on either side.
    assert played.allocator.conferences == {}
    assert played.focus.conferences() == []


def test_bob_dialled_the_key_he_was_sent_and_got_an_answer(played: Demo) -> None:
    (invitation,) = [r for r in played.bob.requests if r.method == "MESSAGE"]
    join = invitation.headers.get("X-Vidim-Conference")
    assert join is not None
    (invite,) = [
        d.message
        for d in played.network.datagrams
        if d.source == "bob" and isinstance(d.message, Request) and d.message.method == "INVITE"
    ]
    assert isinstance(invite, Request)
    assert f"<{invite.uri}>" in join
    (answer,) = [r for r in played.bob.responses if r.cseq.method == "INVITE"]
    assert isinstance(answer, Response)
    assert answer.status == 200
    assert b"m=video" in answer.body


def test_every_step_is_checked_and_happened(played: Demo) -> None:
    assert missing_steps(played) == []
    assert len(STEPS) >= 20


def test_a_missing_step_is_named_and_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    real_build = demo_module.build

    def bob_unreachable() -> Demo:
        demo = real_build()
        demo.network.lose(lambda datagram: datagram.destination == "bob", times=1000)
        return demo

    monkeypatch.setattr(demo_module, "build", bob_unreachable)
    lines: list[str] = []
    assert run_demo(lines.append) == 1
    missing = [line.removeprefix("MISSING: ") for line in lines if line.startswith("MISSING: ")]
    assert "bob dials in with his key" in missing
    assert "the focus sends BYE to bob" in missing
    assert "vidim accepts alice's MESSAGE with 202" not in missing


def test_two_runs_print_the_same_ladder(ladder: list[str]) -> None:
    again: list[str] = []
    run_demo(again.append)
    assert again == ladder


def test_the_readme_shows_the_ladder_as_printed(ladder: list[str]) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The SIP core demo", 1)[1]
    shown = section.split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    assert shown == ladder[1:]


def test_ladder_lines_shorten_random_identifiers(played: Demo) -> None:
    text = "\n".join(ladder_line(d) for d in played.network.datagrams)
    assert "conf-..." in text
    assert not re.search(r"conf-[0-9a-f]{8}", text)


def test_the_network_loses_as_told_and_the_clock_jumps_to_timer_e() -> None:
    network = VirtualNetwork(proxy=Address("127.0.0.1", 5060))
    alice = Phone("alice", Address("127.0.0.1", 5062), outbound_proxy=Address("127.0.0.1", 5060))
    bob = Phone("bob", Address("127.0.0.1", 5064))
    network.attach("alice", alice.address, alice)
    network.attach("bob", bob.address, bob)
    network.register(bob.uri, bob.address)
    network.lose(lambda datagram: datagram.source == "alice", times=2)
    alice.send_message("sip:bob@example.com", "hello", network.now)
    assert network.run(until=1.0) is False  # Timer E is still running
    assert network.now == 1.0
    assert bob.requests == []
    assert network.run() is True
    # Sent at 0, 0.5 (T1) and 1.5 (2*T1 later): the third copy arrives.
    assert [(d.sent_at, d.lost) for d in network.datagrams if d.source == "alice"] == [
        (0.0, True),
        (0.5, True),
        (1.5, False),
    ]
    assert [r.body for r in bob.requests] == [b"hello"]
    assert [r.status for r in alice.responses] == [200]
    assert {d.destination for d in network.datagrams} == {"alice", "bob"}


def test_a_datagram_for_nobody_is_recorded_and_goes_nowhere() -> None:
    network = VirtualNetwork()
    alice = Phone("alice", Address("127.0.0.1", 5062))
    network.attach("alice", alice.address, alice)
    alice.send_message("sip:bob@192.0.2.1", "anyone?", network.now)
    assert network.run() is True
    assert {d.destination for d in network.datagrams} == {"192.0.2.1:5060"}
    assert len(network.datagrams) == 11  # Timer E until Timer F gives up
    assert alice.responses == []


def test_python_m_vidim_exits_zero() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vidim"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "202 Accepted (MESSAGE)" in done.stdout
    assert "(lost in the network)" in done.stdout
    assert done.stdout.rstrip().endswith("every transaction has ended")


def test_python_m_vidim_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vidim", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout.startswith("vidim ")
