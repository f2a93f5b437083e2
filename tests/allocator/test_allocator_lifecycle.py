"""A conference's life through the allocator, on the virtual clock.

Probing, focus failover, liveness and teardown, the roster, save/restore in
each state and each focus profile's wire format.  Request forms, refusals and
follow-up commands live in ``test_allocator_requests.py``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import pytest
import sdp_transform
from peers import (
    ALLOCATOR,
    FOCUS,
    PROXY,
    Focus,
    LateFocus,
    Phone,
    SimNetwork,
    notify_raw,
    replace_allocator,
)

from vidim.allocator.allocator import Allocator, AllocatorConfig
from vidim.allocator.conference import ConferenceState
from vidim.allocator.events import (
    ConferenceEnded,
    ConferenceFailed,
    ConferenceReady,
    ConferenceStateChanged,
    InvitationSent,
    MessageIgnored,
    ParticipantJoined,
    ParticipantLeft,
    RequestAccepted,
)
from vidim.allocator.profiles import FocusProfile
from vidim.allocator.requests import RequestPolicy
from vidim.resource_lists import RESOURCE_LISTS_TYPE, parse_resource_list
from vidim.sdp import SDP_TYPE, parse_media
from vidim.sip import Address, LocalProtocolError, Request, Response
from vidim.vocabulary import Mode

S = ConferenceState
FOCUS2 = Address("127.0.0.1", 5082)
T1 = 0.5
TIMER_F = 64 * T1


def focus_uri(address: Address = FOCUS) -> str:
    return f"sip:conference-factory@{address.host}:{address.port}"


@dataclass
class World:
    net: SimNetwork
    allocator: Allocator
    alice: Phone
    phones: dict[str, Phone]
    foci: list[Focus]
    config: AllocatorConfig

    @property
    def focus(self) -> Focus:
        return self.foci[0]

    def phone(self, name: str) -> Phone:
        return self.phones[name]

    def start(self, text: str = "/video bob", at: float = 0.0) -> str:
        """alice asks; returns the new conference's id."""
        self.alice.send_message(at, text=text)
        self.net.run(at + 0.0015)  # the MESSAGE arrives and is accepted (202) at at+0.001
        (accepted,) = [
            e for e in self.net.events if isinstance(e, RequestAccepted) and e.command == "new"
        ][-1:]
        assert accepted.conference_id is not None
        return accepted.conference_id

    def states(self, conference_id: str) -> list[S]:
        changes = [
            e
            for e in self.net.of_type(ConferenceStateChanged)
            if isinstance(e, ConferenceStateChanged) and e.conference_id == conference_id
        ]
        return [changes[0].old, *(e.new for e in changes)] if changes else []

    def sent_at(self, prefix: str, destination: Address | None = None) -> list[float]:
        """Times at which datagrams whose first line starts with ``prefix`` were sent."""
        return [
            when
            for when, _, dest, line in self.net.log
            if line.startswith(prefix)
            and (
                destination is None
                or (dest.host, dest.port) == (destination.host, destination.port)
            )
        ]

    def restart(self, conference_id: str) -> Allocator:
        """Save the record as JSON, start a new allocator with the same config, restore."""
        record = json.loads(json.dumps(self.allocator.snapshot(conference_id)))
        self.net.events.extend(self.allocator.events())
        fresh = Allocator(self.config)
        replace_allocator(self.net, fresh)
        fresh.restore(record, self.net.now)
        self.allocator = fresh
        return fresh


def make_world(
    phones: dict[str, dict[str, object]] | None = None,
    foci: list[Focus] | None = None,
    **config: object,
) -> World:
    """alice (the requester) plus the given phones, all registered at the fake proxy."""
    foci = foci if foci is not None else [Focus()]
    cfg = AllocatorConfig(
        requests=RequestPolicy.for_domain("example.com"),
        proxy=PROXY,
        focus_uris=tuple(focus_uri(f.address) for f in foci),
        **config,  # type: ignore[arg-type]
    )
    allocator = Allocator(cfg)
    alice = Phone("alice", Address("127.0.0.1", 5062))
    specs = phones if phones is not None else {"bob": {}}
    made = {
        name: Phone(name, Address("127.0.0.1", 5064 + 2 * i), **spec)  # type: ignore[arg-type]
        for i, (name, spec) in enumerate(specs.items())
    }
    net = SimNetwork(allocator, alice, *made.values(), *foci)
    for phone in (alice, *made.values()):
        net.register(phone.uri, phone)
    return World(net, allocator, alice, made, foci, cfg)


def invitation_header(message: Request) -> str:
    value = message.headers.get("X-Vidim-Conference")
    assert value is not None
    return value


# -- probing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "options", "audio", "video", "expected"),
    [
        ("video", "sdp", True, True, Mode.VIDEO),
        ("video", "sdp", True, False, Mode.AUDIO),  # SDP offers audio only: lowered
        ("video", "tags", True, True, Mode.VIDEO),
        ("video", "tags", True, False, Mode.AUDIO),  # Contact ;audio without ;video
        ("video", "plain", False, False, Mode.VIDEO),  # 200 saying nothing: request stands
        ("video", "405", True, True, Mode.VIDEO),  # exists, will not say: request stands
        ("video", "404", True, True, Mode.CHAT),
        ("video", "480", True, True, Mode.CHAT),
        ("video", "silent", True, True, Mode.CHAT),
        ("audio", "sdp", True, False, Mode.AUDIO),
        ("audio", "sdp", True, True, Mode.AUDIO),  # never raised
        ("watch", "sdp", True, False, Mode.WATCH),  # watch never becomes a sending mode
        ("watch", "tags", True, False, Mode.WATCH),
        ("watch", "sdp", False, True, Mode.CHAT),  # no audio at all: IM only
        ("chat", "sdp", True, True, Mode.CHAT),
    ],
)
def test_probe_answer_sets_the_effective_mode(
    requested: str, options: str, audio: bool, video: bool, expected: Mode
) -> None:
    w = make_world({"bob": {"options": options, "audio": audio, "video": video}})
    cid = w.start(f"/{requested} bob")
    w.net.run(5.0)
    (sent,) = w.net.of_type(InvitationSent)
    assert sent == InvitationSent(conference_id=cid, invitee="sip:bob@example.com", mode=expected)
    (conference,) = w.focus.conferences
    assert [(e.uri, e.mode) for e in conference.participants] == [
        ("sip:alice@example.com", Mode(requested)),
        ("sip:bob@example.com", expected),
    ]
    (invitation,) = w.phone("bob").messages
    assert invitation_header(invitation).endswith(f";mode={expected.value};id={cid}")
    assert "X-Vidim-Mode" not in invitation.headers
    # chat is never probed; the others are, once (retransmissions are one request)
    bob_options = [r for r in w.phone("bob").requests if r.method == "OPTIONS"]
    assert len(bob_options) == (0 if requested == "chat" else 1)


@pytest.mark.parametrize("options", ["404", "480", "silent"])
def test_unreachable_invitee_is_invited_by_im_only(options: str) -> None:
    w = make_world({"bob": {"options": options}})
    cid = w.start("/video bob")
    w.net.run(5.0)
    (invitation,) = w.phone("bob").messages
    text = invitation.body.decode()
    assert text == (
        "alice@example.com invites you to a video conference. You take part by instant "
        "message: updates will come here."
    )
    assert "Call " not in text
    assert "sip:conf-" not in text
    header = invitation_header(invitation)
    assert header.endswith(f";mode=chat;id={cid}")
    ready = next(t for t in w.alice.texts() if "is ready" in t)
    assert "Invited: bob@example.com (chat, asked video: not reachable by phone)." in ready


def test_unregistered_invitee_is_chat_through_the_proxy_404() -> None:
    w = make_world({"bob": {}})
    cid = w.start("/video bob zoe")
    w.net.run(5.0)
    modes = {
        e.invitee: e.mode for e in w.net.of_type(InvitationSent) if isinstance(e, InvitationSent)
    }
    assert modes == {"sip:bob@example.com": Mode.VIDEO, "sip:zoe@example.com": Mode.CHAT}
    # the proxy refused the probe at once: the INVITE did not wait for the probe timeout
    (invite_at,) = w.sent_at("INVITE", FOCUS)
    assert invite_at < 0.01
    assert cid in w.allocator.conferences


def test_probes_go_out_together_and_never_hold_the_invite_past_the_timeout() -> None:
    w = make_world(
        {"bob": {"options": "silent"}, "carol": {}, "dan": {"options": "silent"}},
        probe_timeout=1.25,
    )
    cid = w.start("/video bob carol dan")
    w.net.run(10.0)
    (accepted_at,) = w.sent_at("SIP/2.0 202")
    first = {
        line.split()[1]: when
        for when, _, _, line in reversed(w.net.log)
        if line.startswith("OPTIONS")
    }
    assert first == {
        "sip:bob@example.com": accepted_at,
        "sip:carol@example.com": accepted_at,
        "sip:dan@example.com": accepted_at,
    }
    # carol answered at once, bob and dan never: the INVITE leaves exactly at the timeout
    (invite_at,) = w.sent_at("INVITE", FOCUS)
    assert invite_at == accepted_at + 1.25
    assert w.states(cid) == [S.REQUESTED, S.PROBING, S.ALLOCATING, S.ACTIVE]
    modes = {
        e.invitee: e.mode for e in w.net.of_type(InvitationSent) if isinstance(e, InvitationSent)
    }
    assert modes == {
        "sip:bob@example.com": Mode.CHAT,
        "sip:carol@example.com": Mode.VIDEO,
        "sip:dan@example.com": Mode.CHAT,
    }


def test_all_probes_answered_invite_leaves_at_once() -> None:
    w = make_world({"bob": {}, "carol": {"options": "tags"}})
    w.start("/video bob carol")
    w.net.run(5.0)
    (invite_at,) = w.sent_at("INVITE", FOCUS)
    assert invite_at == pytest.approx(0.003)  # MESSAGE 0.001, answers 0.002 via proxy+phone


def test_probing_off_sends_no_options_and_keeps_the_requested_mode() -> None:
    w = make_world({"bob": {"options": "404", "video": False}}, probe=False)
    cid = w.start("/video bob")
    w.net.run(5.0)
    assert w.net.sent("OPTIONS") == []
    assert w.phone("bob").requests[0].method == "MESSAGE"
    assert w.states(cid) == [S.REQUESTED, S.ALLOCATING, S.ACTIVE]
    (sent,) = w.net.of_type(InvitationSent)
    assert isinstance(sent, InvitationSent)
    assert sent.mode is Mode.VIDEO


def test_requester_is_never_probed_nor_invited() -> None:
    w = make_world({"bob": {}})
    cid = w.start("/video alice bob sip:alice@example.com")
    w.net.run(5.0)
    assert [r.method for r in w.alice.requests] == ["MESSAGE"]  # the "ready" notice only
    assert [e.invitee for e in w.net.of_type(InvitationSent) if isinstance(e, InvitationSent)] == [
        "sip:bob@example.com"
    ]
    assert w.net.sent("OPTIONS") == ["OPTIONS sip:bob@example.com SIP/2.0"]
    (ready,) = w.alice.messages
    assert invitation_header(ready).endswith(f";mode=video;id={cid}")
    record = w.allocator.conferences[cid]
    assert record.participants[0].requester
    assert not record.participants[0].invited


# -- the focus: failover ------------------------------------------------------------------


def two_foci(first: Focus, second: Focus | None = None, **config: object) -> World:
    return make_world({"bob": {}}, foci=[first, second or Focus(FOCUS2)], **config)


@pytest.mark.parametrize("behaviour", ["503", "500", "408"])
def test_failover_on_5xx_or_408(behaviour: str) -> None:
    w = two_foci(Focus(behaviour=behaviour))
    cid = w.start()
    w.net.run(5.0)
    first, second = w.foci
    assert first.conferences == []
    (conference,) = second.conferences
    (ready,) = w.net.of_type(ConferenceReady)
    assert ready == ConferenceReady(conference_id=cid, conference_uri=conference.uri)
    assert conference.uri.endswith("@127.0.0.1:5082")
    record = w.allocator.conferences[cid]
    assert record.focus_index == 1
    assert len(record.focus_failures) == 1
    assert record.focus_failures[0].startswith(f"{focus_uri(FOCUS)}: {behaviour} ")
    assert w.states(cid) == [S.REQUESTED, S.PROBING, S.ALLOCATING, S.ACTIVE]


def test_silent_focus_is_cancelled_after_focus_timeout_and_the_next_tried() -> None:
    w = two_foci(Focus(behaviour="silent"), focus_timeout=6.0)
    cid = w.start()
    w.net.run(20.0)
    (invite1,) = w.sent_at("INVITE", FOCUS)
    assert w.sent_at("CANCEL", FOCUS) == [invite1 + 6.0]
    assert w.sent_at("INVITE", FOCUS2) == [invite1 + 6.0]
    assert [r.method for r in w.foci[0].requests] == ["INVITE"]  # its layer took the CANCEL
    assert w.allocator.conferences[cid].focus_failures == [
        f"{focus_uri(FOCUS)}: no answer within 6 s"
    ]
    assert w.allocator.conferences[cid].state is S.ACTIVE


def test_403_focus_fails_without_failover() -> None:
    w = two_foci(Focus(behaviour="403"))
    cid = w.start()
    w.net.run(20.0)
    assert w.foci[1].requests == []
    reason = f"no conference focus could host it ({focus_uri(FOCUS)}: 403 Forbidden)"
    assert w.net.of_type(ConferenceFailed) == [ConferenceFailed(conference_id=cid, reason=reason)]
    assert w.alice.texts() == [f"Sorry, your video conference could not be set up: {reason}."]
    assert w.phone("bob").messages == []
    assert w.states(cid) == [S.REQUESTED, S.PROBING, S.ALLOCATING, S.FAILED]
    assert w.allocator.conferences == {}


def test_all_foci_fail_and_the_requester_learns_each_reason() -> None:
    w = two_foci(Focus(behaviour="503"), Focus(FOCUS2, behaviour="silent"))
    cid = w.start()
    w.net.run(60.0)
    reason = (
        f"no conference focus could host it ({focus_uri(FOCUS)}: 503 Service Unavailable; "
        f"{focus_uri(FOCUS2)}: no answer within 8 s)"
    )
    assert w.net.of_type(ConferenceFailed) == [ConferenceFailed(conference_id=cid, reason=reason)]
    assert w.alice.texts() == [f"Sorry, your video conference could not be set up: {reason}."]
    assert w.phone("bob").messages == []
    assert w.net.of_type(ConferenceReady) == []
    assert len(w.sent_at("CANCEL", FOCUS2)) == 1


def test_no_isfocus_answer_is_a_failure_and_that_dialog_is_hung_up() -> None:
    w = two_foci(Focus(behaviour="no-isfocus"))
    cid = w.start()
    w.net.run(5.0)
    first, second = w.foci
    (abandoned,) = first.conferences
    assert abandoned.ended  # ACKed then BYE'd
    assert [line.split()[0] for _, _, dest, line in w.net.log if dest == FOCUS] == [
        "INVITE",
        "ACK",
        "BYE",
    ]
    assert len(second.conferences) == 1
    assert w.allocator.conferences[cid].focus_failures == [
        f"{focus_uri(FOCUS)}: no conference URI (;isfocus) in the answer"
    ]


def test_no_isfocus_answer_from_the_only_focus_fails_the_conference() -> None:
    w = make_world(foci=[Focus(behaviour="no-isfocus")])
    cid = w.start()
    w.net.run(5.0)
    (failed,) = w.net.of_type(ConferenceFailed)
    assert failed == ConferenceFailed(
        conference_id=cid,
        reason=f"no conference focus could host it ({focus_uri(FOCUS)}: no conference URI "
        "(;isfocus) in the answer)",
    )
    assert w.focus.conferences[0].ended


@pytest.mark.parametrize("with_second", [True, False])
def test_late_200_from_an_abandoned_focus_is_acked_then_hung_up(with_second: bool) -> None:
    late = LateFocus()
    foci: list[Focus] = [late, Focus(FOCUS2)] if with_second else [late]
    w = make_world(foci=foci)
    cid = w.start()
    w.net.run(10.0)  # CANCEL at 8.003
    assert len(w.sent_at("CANCEL", FOCUS)) == 1
    late.answer_held(w.net.now)  # the 200 crossed the CANCEL
    w.net.advance(5.0)
    (leaked,) = late.conferences
    assert leaked.ended
    assert [line.split()[0] for _, _, dest, line in w.net.log if dest == FOCUS] == [
        "INVITE",
        "CANCEL",
        "ACK",
        "BYE",
    ]
    if with_second:
        assert w.allocator.conferences[cid].state is S.ACTIVE
        assert w.allocator.conferences[cid].conference_uri == w.foci[1].conferences[0].uri
    else:
        assert w.allocator.conferences == {}
        assert len(w.net.of_type(ConferenceFailed)) == 1
    assert w.net.of_type(ConferenceEnded) == []


# -- liveness and teardown -----------------------------------------------------------


def active(w: World, text: str = "/video bob") -> tuple[str, float]:
    """Start a conference and run until it is ACTIVE; returns (id, time the focus answered)."""
    cid = w.start(text)
    w.net.run(1.0)
    assert w.allocator.conferences[cid].state is S.ACTIVE
    (host,) = [f for f in w.foci if f.conferences]
    (ack_at,) = w.sent_at("ACK", host.address)
    return cid, ack_at


def test_keepalive_options_on_the_anchor_every_interval() -> None:
    w = make_world(keepalive_interval=10.0)
    _cid, ready = active(w)
    w.net.run(ready + 35.0)
    expected = [ready + 10.0, ready + 10.0 + 10.0, ready + 10.0 + 10.0 + 10.0]
    assert w.sent_at("OPTIONS sip:conf-1@", FOCUS) == expected
    keepalives = [r for r in w.focus.requests if r.method == "OPTIONS"]
    assert len(keepalives) == 3
    anchor = w.focus.conferences[0].anchor
    assert {r.call_id for r in keepalives} == {anchor.call_id}
    assert [r.cseq.seq for r in keepalives] == [2, 3, 4]


def test_a_focus_that_stops_answering_ends_the_conference() -> None:
    w = make_world(keepalive_interval=10.0)
    cid, ready = active(w)
    w.focus.alive = False
    w.net.run(ready + 100.0)
    ended_text = "Your video conference has ended: the conference focus stopped answering."
    assert w.alice.texts()[-1] == ended_text
    assert w.net.of_type(ConferenceEnded) == [
        ConferenceEnded(conference_id=cid, reason="the conference focus stopped answering")
    ]
    # the first keepalive went unanswered; its transaction gave up after 64*T1
    (notice_at,) = [when for when, _, _, line in w.net.log if line.startswith("MESSAGE sip:alice")][
        -1:
    ]
    assert notice_at == ready + 10.0 + TIMER_F
    assert w.states(cid)[-2:] == [S.ACTIVE, S.ENDED]
    assert w.allocator.conferences == {}


def test_idle_conference_ends_after_idle_timeout() -> None:
    w = make_world(idle_timeout=60.0)
    cid, ready = active(w)
    w.net.run(ready + 100.0)
    assert w.sent_at("BYE", FOCUS) == [ready + 60.0]
    assert w.focus.conferences[0].ended
    assert w.net.of_type(ConferenceEnded) == [
        ConferenceEnded(conference_id=cid, reason="nobody joined within 60 s")
    ]
    assert w.alice.texts()[-1] == ("Your video conference has ended: nobody joined within 60 s.")
    assert w.states(cid)[-3:] == [S.ACTIVE, S.ENDING, S.ENDED]


def test_a_conference_somebody_joined_does_not_end_when_idle() -> None:
    w = make_world(idle_timeout=60.0)
    cid, _ready = active(w)
    w.focus.join(w.focus.conferences[0], "sip:bob@example.com", Mode.VIDEO, w.net.now)
    w.focus.leave(w.focus.conferences[0], "sip:bob@example.com", w.net.now + 10.0)
    w.net.run(400.0)
    assert w.net.sent("BYE") == []
    assert w.allocator.conferences[cid].state is S.ACTIVE


@pytest.mark.parametrize("profile", [FocusProfile.ASTERISK, FocusProfile.FREESWITCH])
def test_a_focus_without_a_roster_is_never_ended_as_idle(profile: FocusProfile) -> None:
    """Issue 17, item 5: nobody is ever seen to join, so "nobody joined" would be a guess."""
    w = make_world(idle_timeout=60.0, profile=profile)
    cid, _ready = active(w)
    assert "idle" not in w.allocator.conferences[cid].deadlines
    w.net.run(400.0)
    assert w.net.sent("BYE") == []
    assert w.allocator.conferences[cid].state is S.ACTIVE


def test_reported_presence_gives_roster_notices_status_and_keeps_it_alive() -> None:
    """The asterisk profile with AMI: joins and leaves reported out of SIP."""
    w = make_world(idle_timeout=60.0, profile=FocusProfile.ASTERISK, presence_reported=True)
    cid, ready = active(w)
    bob = w.allocator.conferences[cid].participants[1]
    assert not w.allocator.report_presence(cid, "no-such-key", present=True, now=ready + 1)
    assert not w.allocator.report_presence("no-such-id", bob.credential, present=True, now=1)
    assert w.allocator.report_presence(cid, bob.credential, present=True, now=w.net.now)
    w.net.advance(0.01)
    assert w.alice.texts()[-1] == "bob@example.com joined (video)."
    assert w.net.of_type(ParticipantJoined) == [
        ParticipantJoined(conference_id=cid, participant="sip:bob@example.com", mode=None)
    ]
    w.alice.send_message(w.net.now, text="/status")
    w.net.advance(0.01)
    assert "- bob@example.com: video, connected" in w.alice.texts()[-1]
    w.allocator.report_presence(cid, bob.credential, present=False, now=w.net.now)
    w.net.advance(0.01)
    assert w.alice.texts()[-1] == "bob@example.com left."
    w.net.run(400.0)
    assert w.net.sent("BYE") == []  # somebody came: the idle end is off


def test_reported_presence_arms_the_idle_end_when_nobody_comes() -> None:
    w = make_world(idle_timeout=60.0, profile=FocusProfile.ASTERISK, presence_reported=True)
    cid, ready = active(w)
    w.net.run(ready + 100.0)
    assert w.sent_at("BYE", FOCUS) == [ready + 60.0]
    assert w.net.of_type(ConferenceEnded) == [
        ConferenceEnded(conference_id=cid, reason="nobody joined within 60 s")
    ]


def test_the_focus_hanging_up_ends_the_conference() -> None:
    w = make_world()
    cid, _ready = active(w)
    w.focus.hang_up(w.focus.conferences[0], w.net.now)
    w.net.advance(5.0)
    assert w.net.of_type(ConferenceEnded) == [
        ConferenceEnded(conference_id=cid, reason="the focus ended the conference")
    ]
    assert w.alice.texts()[-1] == (
        "Your video conference has ended: the focus ended the conference."
    )
    assert w.sent_at("BYE", FOCUS) == []  # nothing to hang up: the focus did
    assert w.states(cid)[-2:] == [S.ACTIVE, S.ENDED]


def test_end_whose_bye_goes_unanswered_ends_within_64_t1() -> None:
    w = make_world()
    cid, _ready = active(w)
    w.focus.alive = False
    w.alice.send_message(w.net.now, text="/end")
    w.net.advance(100.0)
    (bye_at, *resent) = w.sent_at("BYE", FOCUS)
    assert resent  # retransmitted, never answered
    (ended,) = w.net.of_type(ConferenceEnded)
    assert ended == ConferenceEnded(conference_id=cid, reason="ended by sip:alice@example.com")
    ended_at = [when for when, _, _, line in w.net.log if line.startswith("MESSAGE sip:alice")][-1]
    assert ended_at == bye_at + TIMER_F
    assert w.states(cid)[-3:] == [S.ACTIVE, S.ENDING, S.ENDED]
    assert w.allocator.conferences == {}


def capture_focus_2xx(w: World) -> list[bytes]:
    """Record (without dropping) the focus's 200 OK to the INVITE, to deliver it again."""
    captured: list[bytes] = []

    def rule(_source: Address, _destination: Address, wire: bytes) -> bool:
        if wire.startswith(b"SIP/2.0 200") and b" INVITE\r\n" in wire:
            captured.append(wire)
        return False

    w.net.drop.append(rule)
    return captured


def test_the_focus_2xx_again_is_acked_again_and_does_not_end_the_conference() -> None:
    # The focus retransmits its 200 when our ACK is lost (RFC 3261 13.3.1.4), and
    # UDP may duplicate it: neither may make the allocator hang up its own anchor.
    w = make_world(keepalive_interval=10.0)
    captured = capture_focus_2xx(w)
    cid, ready = active(w)
    (again,) = captured
    w.allocator.receive_datagram(again, FOCUS, w.net.now)
    w.net.run(ready + 25.0)
    assert len(w.sent_at("ACK", FOCUS)) == 2
    assert w.sent_at("BYE", FOCUS) == []
    assert not w.focus.conferences[0].ended
    assert w.allocator.conferences[cid].state is S.ACTIVE
    assert len(w.sent_at("OPTIONS sip:conf-1@", FOCUS)) == 2  # keepalives go on


def test_the_focus_2xx_again_after_the_end_changes_nothing() -> None:
    w = make_world()
    captured = capture_focus_2xx(w)
    cid, _ready = active(w)
    w.alice.send_message(w.net.now, text="/end")
    w.net.advance(2.0)
    assert w.allocator.conferences == {}
    w.allocator.receive_datagram(captured[0], FOCUS, w.net.now)
    w.net.advance(2.0)
    assert w.net.of_type(ConferenceEnded) == [
        ConferenceEnded(conference_id=cid, reason="ended by sip:alice@example.com")
    ]
    assert w.allocator.conferences == {}


def test_after_the_end_the_subscription_is_gone() -> None:
    # The ended conference's dialogs are dropped: a NOTIFY on the old
    # subscription gets 481, which ends it at the focus (RFC 6665 4.1.3).
    w = make_world()
    _cid, _ready = active(w)
    conference = w.focus.conferences[0]
    w.alice.send_message(w.net.now, text="/end")
    w.net.advance(2.0)
    w.focus.join(conference, "sip:bob@example.com", Mode.VIDEO, w.net.now)
    w.net.advance(2.0)
    assert [r.status for r in w.focus.responses if r.cseq.method == "NOTIFY"] == [200, 481]
    assert w.net.of_type(ParticipantJoined) == []


# -- roster ------------------------------------------------------------------------------


def test_roster_joins_and_leaves_with_modes() -> None:
    w = make_world({"bob": {}, "carol": {"video": False}})
    cid, _ready = active(w, "/video bob carol")
    conference = w.focus.conferences[0]
    w.focus.join(conference, "sip:bob@example.com", Mode.VIDEO, w.net.now)
    w.net.advance(0.5)
    w.focus.join(conference, "sip:carol@example.com", Mode.AUDIO, w.net.now)
    w.net.advance(0.5)
    w.focus.join(conference, "sip:alice@example.com", Mode.VIDEO, w.net.now)
    w.net.advance(0.5)
    w.focus.leave(conference, "sip:bob@example.com", w.net.now)
    w.net.advance(0.5)
    assert w.net.of_type(ParticipantJoined) == [
        ParticipantJoined(conference_id=cid, participant="sip:bob@example.com", mode=Mode.VIDEO),
        ParticipantJoined(conference_id=cid, participant="sip:carol@example.com", mode=Mode.AUDIO),
        ParticipantJoined(conference_id=cid, participant="sip:alice@example.com", mode=Mode.VIDEO),
    ]
    assert w.net.of_type(ParticipantLeft) == [
        ParticipantLeft(conference_id=cid, participant="sip:bob@example.com")
    ]
    # the requester is told about the others, not about herself
    assert w.alice.texts()[1:] == [
        "bob@example.com joined (video).",
        "carol@example.com joined (audio).",
        "bob@example.com left.",
    ]
    statuses = {p.uri: p.status for p in w.allocator.conferences[cid].participants}
    assert statuses == {
        "sip:alice@example.com": "connected",
        "sip:bob@example.com": "disconnected",
        "sip:carol@example.com": "connected",
    }


def test_notify_with_a_version_gap_or_garbage_is_ignored() -> None:
    w = make_world()
    cid, _ready = active(w)
    conference = w.focus.conferences[0]
    conference.version += 1  # version 2 is never sent
    w.focus.join(conference, "sip:bob@example.com", Mode.VIDEO, w.net.now)
    w.net.advance(0.5)
    notify_raw(w.focus, conference, b"<conference-info this is not xml", w.net.now)
    w.net.advance(0.5)
    notify_raw(w.focus, conference, b"\x00\xff garbage", w.net.now)
    w.net.advance(0.5)
    ignored = [e for e in w.net.of_type(MessageIgnored) if isinstance(e, MessageIgnored)]
    assert [e.summary for e in ignored] == ["NOTIFY conference"] * 3
    assert ignored[0].reason == (
        "conference-info version 3 after 1: a notification was missed, re-subscribe for full state"
    )
    # the gap made the allocator refresh its subscription: full state came
    # back and bob's join was seen after all, exactly once
    refreshes = [r for r in w.focus.requests if r.method == "SUBSCRIBE" and r.to_addr.tag]
    assert len(refreshes) == 1
    assert [e.participant for e in w.net.of_type(ParticipantJoined)] == ["sip:bob@example.com"]
    # each NOTIFY was answered 200 (the subscription stays up)
    notify_answers = [r.status for r in w.focus.responses if r.cseq.method == "NOTIFY"]
    assert notify_answers == [200, 200, 200, 200, 200]
    assert w.allocator.conferences[cid].state is S.ACTIVE
    w.alice.send_message(w.net.now, text="/end")
    w.net.advance(5.0)
    assert conference.ended


def test_the_roster_recovers_after_a_missed_notification() -> None:
    # RFC 4575 4.6: after a version gap the allocator refreshes its
    # subscription, gets full state, and the roster moves on.
    w = make_world({"bob": {}, "carol": {}})
    cid, _ready = active(w, "/video bob carol")
    conference = w.focus.conferences[0]
    conference.version += 1  # one NOTIFY lost for good
    w.focus.join(conference, "sip:bob@example.com", Mode.VIDEO, w.net.now)
    w.net.advance(1.0)
    w.focus.join(conference, "sip:carol@example.com", Mode.VIDEO, w.net.now)
    w.net.advance(1.0)
    joined = [e.participant for e in w.net.events if isinstance(e, ParticipantJoined)]
    assert joined == ["sip:bob@example.com", "sip:carol@example.com"], cid


# -- save and restore in the middle of each state -----------------------------------


def test_restore_in_requested_probes_and_comes_up() -> None:
    w = make_world({"bob": {"video": False}})
    w.net.drop.append(lambda _s, _d, wire: wire.startswith(b"OPTIONS"))
    cid = w.start()
    record = json.loads(json.dumps(w.allocator.snapshot(cid)))
    # a store that saved the record as soon as the request was accepted
    record.update(state="requested", probe_deadline=None)
    w.net.drop.clear()
    fresh = Allocator(w.config)
    replace_allocator(w.net, fresh)
    fresh.restore(record, w.net.now)
    w.allocator = fresh
    w.net.run(5.0)
    assert len([r for r in w.phone("bob").requests if r.method == "OPTIONS"]) == 1
    assert fresh.conferences[cid].state is S.ACTIVE
    (sent,) = w.net.of_type(InvitationSent)
    assert sent == InvitationSent(conference_id=cid, invitee="sip:bob@example.com", mode=Mode.AUDIO)


def test_restore_in_probing_resends_the_probes() -> None:
    w = make_world({"bob": {"video": False}, "carol": {}})
    w.net.drop.append(lambda _s, _d, wire: wire.startswith(b"OPTIONS"))
    cid = w.start("/video bob carol")
    w.net.run(0.4)
    assert w.allocator.conferences[cid].state is S.PROBING
    w.net.drop.clear()
    fresh = w.restart(cid)
    assert fresh.conferences[cid].state is S.PROBING
    w.net.run(5.0)
    for name in ("bob", "carol"):
        assert len([r for r in w.phone(name).requests if r.method == "OPTIONS"]) == 1
    assert fresh.conferences[cid].state is S.ACTIVE
    # answered before the saved probe deadline (0.001 + 2): the INVITE did not wait for it
    (invite_at,) = w.sent_at("INVITE", FOCUS)
    assert invite_at < 0.5
    modes = {
        e.invitee: e.mode for e in w.net.of_type(InvitationSent) if isinstance(e, InvitationSent)
    }
    assert modes == {"sip:bob@example.com": Mode.AUDIO, "sip:carol@example.com": Mode.VIDEO}


def test_restore_in_probing_keeps_the_saved_probe_deadline() -> None:
    w = make_world({"bob": {"options": "silent"}})
    cid = w.start()
    w.net.run(1.0)
    w.restart(cid)
    w.net.run(10.0)
    (invite_at,) = w.sent_at("INVITE", FOCUS)
    assert invite_at == 0.001 + 2.0
    (sent,) = w.net.of_type(InvitationSent)
    assert isinstance(sent, InvitationSent)
    assert sent.mode is Mode.CHAT


def test_restore_in_allocating_resends_the_invite() -> None:
    w = make_world()
    w.net.drop.append(lambda _s, _d, wire: wire.startswith(b"INVITE"))
    cid = w.start()
    w.net.run(1.0)
    assert w.allocator.conferences[cid].state is S.ALLOCATING
    assert w.focus.requests == []
    w.net.drop.clear()
    fresh = w.restart(cid)
    w.net.advance(2.0)
    assert [r.method for r in w.focus.requests[:2]] == ["INVITE", "SUBSCRIBE"]
    assert len(w.sent_at("ACK", FOCUS)) == 1
    (conference,) = w.focus.conferences
    assert fresh.conferences[cid].state is S.ACTIVE
    assert fresh.conferences[cid].conference_uri == conference.uri
    assert [e.invitee for e in w.net.of_type(InvitationSent) if isinstance(e, InvitationSent)] == [
        "sip:bob@example.com"
    ]


def test_restore_in_allocating_after_a_failover_stays_on_the_current_focus() -> None:
    w = two_foci(Focus(behaviour="503"))
    w.net.drop.append(lambda _s, dest, wire: wire.startswith(b"INVITE") and dest == FOCUS2)
    cid = w.start()
    w.net.run(1.0)
    assert w.allocator.conferences[cid].focus_index == 1
    w.net.drop.clear()
    fresh = w.restart(cid)
    w.net.advance(2.0)
    assert len([r for r in w.foci[0].requests if r.method == "INVITE"]) == 1
    assert len(w.foci[1].conferences) == 1
    assert fresh.conferences[cid].state is S.ACTIVE


def test_restore_in_active_checks_the_anchor_at_once_then_keeps_alive_on_the_same_dialog() -> None:
    w = make_world(keepalive_interval=10.0)
    cid, ready = active(w)
    w.net.run(ready + 15.0)  # one keepalive done
    fresh = w.restart(cid)
    assert fresh.conferences[cid].state is S.ACTIVE
    w.net.run(ready + 36.0)
    restart = ready + 15.0
    assert w.sent_at("OPTIONS sip:conf-1@", FOCUS) == [
        ready + 10.0,
        restart,  # the check of the anchor on restore
        restart + 10.0,
        restart + 20.0,
    ]
    conference = w.focus.conferences[0]
    keepalives = [r for r in w.focus.requests if r.method == "OPTIONS"]
    assert {r.call_id for r in keepalives} == {conference.anchor.call_id}
    assert [r.cseq.seq for r in keepalives] == [2, 3, 4, 5]
    # roster still followed (the restored allocator subscribed again)
    w.focus.join(conference, "sip:bob@example.com", Mode.VIDEO, w.net.now)
    w.net.advance(0.5)
    assert [e.participant for e in w.net.of_type(ParticipantJoined)
            if isinstance(e, ParticipantJoined)] == ["sip:bob@example.com"]  # fmt: skip
    w.alice.send_message(w.net.now, text="/end")
    w.net.advance(5.0)
    (bye,) = [r for r in w.focus.requests if r.method == "BYE"]
    assert bye.call_id == conference.anchor.call_id
    assert conference.ended
    assert w.net.of_type(ConferenceEnded) == [
        ConferenceEnded(conference_id=cid, reason="ended by sip:alice@example.com")
    ]
    assert fresh.conferences == {}


def test_restore_in_active_keeps_the_idle_deadline() -> None:
    w = make_world(idle_timeout=60.0)
    cid, ready = active(w)
    w.net.run(ready + 30.0)
    w.restart(cid)
    w.net.run(ready + 100.0)
    assert w.sent_at("BYE", FOCUS) == [ready + 60.0]
    assert w.focus.conferences[0].ended


def test_restore_in_ending_sends_the_bye_again() -> None:
    w = make_world()
    cid, _ready = active(w)
    w.net.drop.append(lambda _s, _d, wire: wire.startswith(b"BYE"))
    w.alice.send_message(w.net.now, text="/end")
    w.net.advance(1.0)
    assert w.allocator.conferences[cid].state is S.ENDING
    w.net.drop.clear()
    fresh = w.restart(cid)
    w.net.advance(2.0)
    conference = w.focus.conferences[0]
    (bye,) = [r for r in w.focus.requests if r.method == "BYE"]
    assert bye.call_id == conference.anchor.call_id
    assert bye.cseq.seq == 2  # the lost BYE again (INVITE was 1)
    assert conference.ended
    assert w.net.of_type(ConferenceEnded) == [
        ConferenceEnded(conference_id=cid, reason="ended by sip:alice@example.com")
    ]
    assert fresh.conferences == {}


def test_restore_of_a_finished_record_is_refused() -> None:
    w = make_world()
    cid, _ready = active(w)
    record = json.loads(json.dumps(w.allocator.snapshot(cid)))
    record["state"] = "ended"
    with pytest.raises(Exception, match="is over"):
        Allocator(w.config).restore(record, w.net.now)


@pytest.mark.parametrize("field", ["id", "requester", "uri", "credential"])
def test_restore_of_a_record_with_a_control_character_is_refused(field: str) -> None:
    """Record texts go into header values unchecked: a CR LF there would add a header."""
    w = make_world()
    cid, _ready = active(w)
    record = json.loads(json.dumps(w.allocator.snapshot(cid)))
    if field in ("id", "requester"):
        record[field] += "\r\nX-Evil: 1"
    else:
        record["participants"][1][field] += "\r\nX-Evil: 1"
    with pytest.raises(LocalProtocolError, match="control character"):
        Allocator(w.config).restore(record, w.net.now)


# -- focus profiles on the wire -------------------------------------------------------------


def test_rfc4579_invite_wire_format() -> None:
    w = make_world({"bob": {}, "carol": {"video": False}})
    cid, _ready = active(w, "/video bob carol")
    (conference,) = w.focus.conferences
    invite = conference.invite
    assert invite.headers.get("Require") == "recipient-list-invite"
    ctype = invite.content_type
    assert ctype is not None
    assert ctype.mime == "multipart/mixed"
    parts = invite.body_parts()
    assert [p.content_type.mime if p.content_type else None for p in parts] == [
        "application/sdp",
        RESOURCE_LISTS_TYPE,
    ]
    sdp, rls = parts
    session = sdp_transform.parse(sdp.body.decode())
    assert session["version"] == 0
    assert len(session["media"]) == 1
    (media,) = parse_media(sdp.body)
    assert (media.kind, media.direction) == ("audio", "inactive")
    record = w.allocator.conferences[cid]
    entries = parse_resource_list(rls.body)
    assert [(e.uri, e.mode, e.credential) for e in entries] == [
        (p.uri, p.mode, p.credential) for p in record.participants
    ]
    assert [e.mode for e in entries] == [Mode.VIDEO, Mode.VIDEO, Mode.AUDIO]
    assert len({e.credential for e in entries}) == 3
    # each invitation carries that invitee's credential in the join URI
    for name, entry in (("bob", entries[1]), ("carol", entries[2])):
        (invitation,) = w.phone(name).messages
        join = f"{conference.uri};key={entry.credential}"
        assert invitation_header(invitation) == f"<{join}>;mode={entry.mode};id={cid}"
        assert f"Call {join} to join." in invitation.body.decode()
    assert w.net.sent("SUBSCRIBE") == [f"SUBSCRIBE {conference.uri} SIP/2.0"]


@pytest.mark.parametrize("profile", [FocusProfile.ASTERISK, FocusProfile.FREESWITCH])
def test_dialplan_profiles_wire_format(profile: FocusProfile) -> None:
    w = make_world({"bob": {}, "carol": {"options": "404"}}, profile=profile)
    cid, _ready = active(w, "/audio bob carol")
    (conference,) = w.focus.conferences
    invite = conference.invite
    record = w.allocator.conferences[cid]
    assert invite.headers.get("X-Vidim-Conference") == cid
    assert invite.headers.get("X-Vidim-Mode") == "audio"
    assert invite.headers.get("X-Vidim-Participants") == ", ".join(
        f"<{p.uri}>;mode={p.mode};key={p.credential}" for p in record.participants
    )
    assert [p.mode for p in record.participants] == [Mode.AUDIO, Mode.AUDIO, Mode.CHAT]
    assert invite.headers.get("Require") is None
    ctype = invite.content_type
    assert ctype is not None
    assert ctype.mime == "application/sdp"
    assert [(m.kind, m.direction) for m in parse_media(invite.body)] == [("audio", "inactive")]
    uri = f"sip:conf-{cid}@{FOCUS.host}:{FOCUS.port}"
    assert w.net.of_type(ConferenceReady) == [
        ConferenceReady(conference_id=cid, conference_uri=uri)
    ]
    assert record.conference_uri == uri
    (invitation,) = w.phone("bob").messages
    bob = record.participants[1]
    assert invitation_header(invitation) == f"<{uri};key={bob.credential}>;mode=audio;id={cid}"
    assert w.net.sent("SUBSCRIBE") == []
    w.alice.send_message(w.net.now, text="/end")
    w.net.advance(5.0)
    assert conference.ended


def _sdp_part(message: Request | Response) -> bytes:
    (sdp,) = [p for p in message.body_parts() if p.content_type and p.content_type.mime == SDP_TYPE]
    return sdp.body


def test_every_offer_and_answer_of_a_conference_keeps_its_o_line() -> None:
    """RFC 3264 section 8: a re-offer keeps the o= line; the anchor's never changes.

    The re-INVITE after /add and the answer to the focus's own session
    refresh carry the first offer's SDP byte for byte (same session id, same
    version: the description is the same); another conference has its own id.
    """
    w = make_world({"bob": {}, "erin": {}})
    cid, _ready = active(w)
    (conference,) = w.focus.conferences
    first = _sdp_part(conference.invite)
    origin = sdp_transform.parse(first.decode())["origin"]
    assert (origin["username"], origin["sessionVersion"]) == ("vidim", 1)
    w.alice.send_message(w.net.now, text="/add erin")
    w.net.advance(5.0)
    (reinvite,) = [r for r in w.focus.requests if r.method == "INVITE" and r.to_addr.tag]
    assert _sdp_part(reinvite) == first
    refresh = conference.anchor.create_request("INVITE")
    w.focus.layer.send_request(refresh, ALLOCATOR, w.net.now)
    w.net.advance(1.0)
    # (the test focus sends no ACK: the 200 is retransmitted, the same each time)
    answers = [r for r in w.focus.responses if r.cseq == refresh.cseq and r.status >= 200]
    answer = answers[0]
    assert answer.status == 200
    assert all(a.to_bytes() == answer.to_bytes() for a in answers)
    assert _sdp_part(answer) == first
    w.start("/video bob", at=w.net.now)
    w.net.advance(5.0)
    other = _sdp_part(w.focus.conferences[1].invite)
    assert sdp_transform.parse(other.decode())["origin"]["sessionId"] != origin["sessionId"]
    assert w.allocator.conferences[cid].state is S.ACTIVE


def test_restored_in_any_order_end_acts_on_the_newest_then_the_older() -> None:
    """The requester's newest conference is found however their records come back."""
    w = make_world()
    older = w.start("/video bob")
    w.net.advance(5.0)
    newer = w.start("/video bob", at=w.net.now)
    w.net.advance(5.0)
    records = [json.loads(json.dumps(w.allocator.snapshot(c))) for c in (newer, older)]
    w.net.events.extend(w.allocator.events())
    fresh = Allocator(w.config)
    replace_allocator(w.net, fresh)
    for record in records:  # the newer one first
        fresh.restore(record, w.net.now)
    w.allocator = fresh
    w.net.advance(1.0)
    for expected in (newer, older):
        w.alice.send_message(w.net.now, text="/end")
        w.net.advance(5.0)
        assert w.net.of_type(ConferenceEnded)[-1].conference_id == expected
    assert fresh.conferences == {}
    assert fresh._context.conferences.indexes_empty()


# -- end_all (SIGTERM with end_on_stop) and reconfigure (SIGHUP) ---------------------------
def test_end_all_hangs_up_every_anchor_and_cancels_what_is_being_set_up() -> None:
    w = two_foci(Focus(), Focus(FOCUS2, behaviour="silent"))
    first, _ = active(w)
    second = w.start("/video bob", at=w.net.now)
    w.net.run(w.net.now + 0.5)
    assert w.allocator.conferences[second].state is S.ACTIVE
    assert w.allocator.end_all(w.net.now, "stopping") == 2
    assert w.allocator.end_all(w.net.now) == 0  # both ending already: nothing more
    w.net.advance(2.0)
    assert len(w.sent_at("BYE", FOCUS)) == 2
    assert w.allocator.conferences == {}
    ended = {e.conference_id for e in w.net.of_type(ConferenceEnded)}
    assert ended == {first, second}
    assert w.alice.texts()[-2:] == ["Your video conference has ended: stopping."] * 2


def test_end_all_cancels_a_conference_still_allocating() -> None:
    w = make_world(foci=[Focus(behaviour="silent")])
    cid = w.start()
    w.net.run(0.5)
    assert w.allocator.conferences[cid].state is S.ALLOCATING
    assert w.allocator.end_all(w.net.now) == 1
    w.net.advance(1.0)
    assert w.sent_at("CANCEL", FOCUS) != []
    assert w.allocator.conferences == {}


def test_reconfigure_applies_limits_from_the_next_request() -> None:
    w = make_world({"bob": {}, "carol": {}}, rate_limit=1)
    w.start()
    w.alice.send_message(w.net.now, text="/video bob")
    w.net.run(w.net.now + 0.5)
    assert w.alice.statuses()[-1] == 403  # over the rate limit
    w.allocator.reconfigure(dataclasses.replace(w.config, rate_limit=5))
    w.alice.send_message(w.net.now, text="/video bob")
    w.net.run(w.net.now + 0.5)
    assert w.alice.statuses()[-1] == 202


def test_reconfigure_refuses_what_needs_a_new_allocator_and_changes_nothing() -> None:
    w = make_world()
    changed = dataclasses.replace(w.config, local=Address("127.0.0.1", 5999), rate_limit=9)
    with pytest.raises(LocalProtocolError, match="cannot change at run time: local"):
        w.allocator.reconfigure(changed)
    assert w.allocator.config is w.config


def test_a_conference_being_set_up_keeps_its_focus_list_after_a_reconfigure() -> None:
    w = two_foci(Focus(behaviour="silent"), focus_timeout=6.0)
    cid = w.start()
    w.net.run(1.0)
    # The list now names a third focus only; the conference in flight fails over
    # along the list it started with (to FOCUS2), a new one uses the new list.
    focus3 = Focus(Address("127.0.0.1", 5084))
    w.net.add(focus3)
    w.allocator.reconfigure(dataclasses.replace(w.config, focus_uris=(focus_uri(focus3.address),)))
    w.net.run(10.0)
    assert w.allocator.conferences[cid].state is S.ACTIVE
    assert len(w.foci[1].conferences) == 1
    later = w.start("/video bob", at=w.net.now)
    w.net.run(w.net.now + 1.0)
    assert w.allocator.conferences[later].state is S.ACTIVE
    assert len(focus3.conferences) == 1
