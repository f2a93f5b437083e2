"""The real allocator and the built-in focus, back to back: the rfc4579 profile on the wire."""

from __future__ import annotations

from focus_peers import (
    ALLOCATOR,
    FACTORY,
    AllocatorNode,
    FocusNode,
    Net,
    Softphone,
    baresip_offer,
    pjsua2_offer,
)

from vidim.allocator.allocator import Allocator, AllocatorConfig
from vidim.allocator.events import ConferenceEnded as AllocatorConferenceEnded
from vidim.allocator.events import ConferenceReady, ParticipantJoined
from vidim.allocator.requests import RequestPolicy
from vidim.focus import ConferenceEnded, ConferenceFocus, ParticipantAdmitted
from vidim.sdp import media_summary
from vidim.sip import Address, Request, make_response, new_branch, new_tag, parse_name_addr
from vidim.vocabulary import Mode


class Person(Softphone):
    """A softphone that also takes IMs and sends the vidim command form."""

    def on_request(self, request: Request, now: float) -> None:
        if request.method == "MESSAGE":
            self.layer.send_response(make_response(request, 200, to_tag=new_tag()), now)
            return
        super().on_request(request, now)

    def command(self, text: str, now: float) -> Request:
        message = Request(
            "MESSAGE",
            "sip:vidim@example.com",
            [
                (
                    "Via",
                    f"SIP/2.0/UDP {self.address.host}:{self.address.port};branch={new_branch()};rport",
                ),
                ("Max-Forwards", "70"),
                ("From", f"<{self.uri}>;tag={new_tag()}"),
                ("To", "<sip:vidim@example.com>"),
                ("Call-ID", f"{new_tag()}@{self.address.host}"),
                ("CSeq", "1 MESSAGE"),
                ("Content-Type", "text/plain"),
            ],
            text.encode(),
        )
        return self.send(message, now, ALLOCATOR)

    def invitation(self) -> tuple[str, str]:
        """(join URI, mode) from the last IM carrying X-Vidim-Conference."""
        for message in reversed(self.received("MESSAGE")):
            value = message.headers.get("x-vidim-conference")
            if value is not None:
                header = parse_name_addr(value)
                return str(header.uri), header.param("mode") or ""
        raise AssertionError(f"{self.user} got no invitation")


def test_allocator_and_builtin_focus_end_to_end() -> None:
    allocator = Allocator(
        AllocatorConfig(
            requests=RequestPolicy.for_domain("example.com"),
            focus_uris=(FACTORY,),
            probe=False,
        )
    )
    focus = ConferenceFocus()
    focus_node, allocator_node = FocusNode(focus), AllocatorNode(allocator)
    alice = Person("alice", Address("127.0.0.1", 6020), baresip_offer(6020, 6022))
    # Invitees are addresses of record: the allocator drops a port from an
    # invitee URI, so without a proxy each phone listens on 5060 of its own host.
    bob = Person("bob", Address("127.0.0.2", 5060), baresip_offer(6000, 6002, host="127.0.0.2"))
    carol = Person("carol", Address("127.0.0.3", 5060), pjsua2_offer(6010, host="127.0.0.3"))
    bob.uri, carol.uri = "sip:bob@127.0.0.2", "sip:carol@127.0.0.3"
    net = Net(focus_node, allocator_node, alice, bob, carol)

    alice.command(f"/video {bob.uri} {carol.uri};mode=audio", net.now)
    net.advance(1)
    (ready,) = [e for e in allocator_node.events if isinstance(e, ConferenceReady)]
    assert ready.conference_uri == focus.conferences()[0].uri

    for person, expected_mode in ((bob, "video"), (carol, "audio")):
        uri, mode = person.invitation()
        assert mode == expected_mode
        person.call(uri, net.now)
    net.advance(1)
    assert [e.uri for e in focus_node.events if isinstance(e, ParticipantAdmitted)] == [
        bob.uri,
        carol.uri,
    ]
    assert [(k, p > 0) for k, p, _ in media_summary(bob.answer())] == [
        ("audio", True),
        ("video", True),
    ]
    assert [(k, p > 0) for k, p, _ in media_summary(carol.answer())] == [
        ("audio", True),
        ("video", False),
    ]
    # The roster reached the allocator through the conference event package...
    joined = [e for e in allocator_node.events if isinstance(e, ParticipantJoined)]
    assert [(e.participant, e.mode) for e in joined] == [
        (bob.uri, Mode.VIDEO),
        (carol.uri, Mode.AUDIO),
    ]
    # ...and alice heard about it by IM.
    texts = [m.body.decode() for m in alice.received("MESSAGE")]
    assert any("joined" in text for text in texts)

    # The allocator's keepalive OPTIONS on the anchor is answered.
    net.advance(31)
    assert focus.conferences()

    alice.command("/end", net.now)
    net.advance(1)
    assert len(bob.received("BYE")) == 1
    assert len(carol.received("BYE")) == 1
    assert [e.reason for e in focus_node.events if isinstance(e, ConferenceEnded)] == [
        "the allocator ended the conference"
    ]
    assert [e for e in allocator_node.events if isinstance(e, AllocatorConferenceEnded)]
    assert focus.conferences() == []
    assert focus.ports_in_use == frozenset()
    assert allocator.conferences == {}
