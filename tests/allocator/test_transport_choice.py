"""How the allocator sends: the transport a URI names, sips:, large requests, dialogs (issue 18)."""

from __future__ import annotations

from peers import FOCUS, Focus, Phone, SimNetwork

from vidim.allocator.allocator import Allocator, AllocatorConfig
from vidim.allocator.events import (
    ConferenceReady,
    InvitationFailed,
    InvitationSent,
    TransportUnavailable,
)
from vidim.allocator.requests import RequestPolicy
from vidim.sip import Address, Dialog, Request, parse_message

ALICE = Address("127.0.0.1", 5062)
BOB = Address("127.0.0.1", 5064)
CAROL = Address("127.0.0.1", 5066)


def make_world(
    *, focus_uri: str | None = None, **config: object
) -> tuple[SimNetwork, Phone, Phone, Phone, Focus]:
    """No proxy: every request goes where its URI says (alice's IMs: where hers came from)."""
    allocator = Allocator(
        AllocatorConfig(
            requests=RequestPolicy.for_domain("example.com"),
            focus_uris=(focus_uri or f"sip:conference-factory@{FOCUS.host}:{FOCUS.port}",),
            probe=False,
            **config,  # type: ignore[arg-type]
        )
    )
    alice, bob, carol = Phone("alice", ALICE), Phone("bob", BOB), Phone("carol", CAROL)
    focus = Focus()
    return SimNetwork(allocator, alice, bob, carol, focus), alice, bob, carol, focus


def sent_to(net: SimNetwork, peer: Address, method: str) -> list[Address]:
    """The destinations (with their transport) of the ``method`` requests sent to ``peer``."""
    return [
        destination
        for _, _, destination, line in net.log
        if line.startswith(method + " ")
        and (destination.host, destination.port) == (peer.host, peer.port)
    ]


def test_an_invitee_with_transport_tcp_is_invited_over_tcp_and_the_via_says_so() -> None:
    net, alice, bob, carol, _ = make_world()
    alice.send_message(
        0.0,
        text=f"/video sip:bob@127.0.0.1:{BOB.port};transport=tcp "
        f"sip:carol@127.0.0.1:{CAROL.port};transport=udp",
    )
    net.run(5.0)
    assert net.of_type(ConferenceReady)
    assert sent_to(net, BOB, "MESSAGE") == [Address("127.0.0.1", BOB.port, "TCP")]
    assert sent_to(net, CAROL, "MESSAGE") == [Address("127.0.0.1", CAROL.port, "UDP")]
    (to_bob,) = bob.messages
    assert to_bob.top_via.transport == "TCP"
    assert to_bob.top_via.port == 5070  # sent-by: the port vidim listens on (UDP and TCP)
    (to_carol,) = carol.messages
    assert to_carol.top_via.transport == "UDP"
    # The invitee's transport is part of its URI in the conference record.
    (invited,) = [e.invitee for e in net.of_type(InvitationSent) if "bob" in e.invitee]
    assert invited.endswith(";transport=tcp")


def test_a_large_invitation_goes_over_tcp_unless_the_uri_says_udp() -> None:
    """RFC 3261 18.1.1: larger than 1300 bytes and the path MTU unknown: TCP."""
    net, alice, bob, carol, _ = make_world()
    # A long conference id would be the natural way; long user parts are as good.
    long_bob = "bob" + "b" * 700
    long_carol = "carol" + "c" * 700
    alice.send_message(
        0.0,
        text=f"/video sip:{long_bob}@127.0.0.1:{BOB.port} "
        f"sip:{long_carol}@127.0.0.1:{CAROL.port};transport=udp",
    )
    net.run(5.0)
    (to_bob,) = sent_to(net, BOB, "MESSAGE")
    (to_carol,) = sent_to(net, CAROL, "MESSAGE")
    assert to_bob.transport == "TCP"
    assert to_carol.transport == "UDP"  # the URI said so: the caller's choice stands
    (message,) = bob.messages
    assert len(message.to_bytes()) > 1300
    assert message.top_via.transport == "TCP"
    assert carol.messages[0].top_via.transport == "UDP"


def test_a_small_request_without_transport_stays_udp() -> None:
    net, alice, bob, _, _ = make_world()
    alice.send_message(0.0, text=f"/video sip:bob@127.0.0.1:{BOB.port}")
    net.run(5.0)
    assert sent_to(net, BOB, "MESSAGE") == [Address("127.0.0.1", BOB.port, "UDP")]
    assert bob.messages[0].top_via.transport == "UDP"


def test_a_sips_invitee_is_refused_clearly_never_sent_in_plain_text() -> None:
    net, alice, bob, _, _ = make_world()
    alice.send_message(
        0.0, text=f"/video sips:bob@127.0.0.1:{BOB.port} sip:carol@127.0.0.1:{CAROL.port}"
    )
    net.run(5.0)
    assert net.of_type(ConferenceReady)
    assert sent_to(net, BOB, "MESSAGE") == []  # nothing to bob, over any transport
    assert bob.messages == []
    (refused,) = net.of_type(TransportUnavailable)
    assert isinstance(refused, TransportUnavailable)
    assert refused.transport == "TLS"
    assert refused.method == "MESSAGE"
    assert refused.target == f"sips:bob@127.0.0.1:{BOB.port}"
    assert refused.reason == f"cannot reach sips:bob@127.0.0.1:{BOB.port} over TLS: not configured"
    (failed,) = net.of_type(InvitationFailed)
    assert isinstance(failed, InvitationFailed)
    assert failed.invitee == f"sips:bob@127.0.0.1:{BOB.port}"
    assert "over TLS: not configured" in failed.reason
    told = [t for t in alice.texts() if "was not delivered" in t]
    assert told == [
        f"The invitation to sips:bob@127.0.0.1:{BOB.port} was not delivered "
        f"(503 cannot reach sips:bob@127.0.0.1:{BOB.port} over TLS: not configured)."
    ]


def test_a_proxy_uri_with_transport_tcp_carries_every_im_over_tcp() -> None:
    net, alice, bob, _, _ = make_world(proxy="sip:127.0.0.1:5060;transport=tcp")
    net.register(bob.uri, bob)
    alice.send_message(0.0, text="/video bob")
    net.run(5.0)
    via_proxy = [d for _, _, d, line in net.log if line.startswith("MESSAGE ") and d.port == 5060]
    assert via_proxy
    assert {d.transport for d in via_proxy} == {"TCP"}
    assert bob.messages[0].top_via.transport == "TCP"


def test_a_proxy_given_as_an_address_still_takes_tcp_for_a_large_request() -> None:
    net, alice, bob, _, _ = make_world(proxy=Address("127.0.0.1", 5060))
    net.register(bob.uri, bob)
    long_name = "bob" + "b" * 900
    long_bob = Phone(long_name, Address("127.0.0.1", 5068))
    net.add(long_bob)
    net.register(long_bob.uri, long_bob)
    alice.send_message(0.0, text=f"/video bob {long_name}")
    net.run(5.0)
    transports = {
        m.uri.user: m.top_via.transport  # type: ignore[union-attr]
        for m in bob.messages + long_bob.messages
    }
    assert transports == {"bob": "UDP", long_name: "TCP"}


def test_a_focus_reached_over_tcp_gets_its_in_dialog_requests_over_tcp() -> None:
    """The focus's Contact names no transport: the dialog's own (TCP) is kept (say so: issue 18)."""
    net, alice, _, _, focus = make_world(
        focus_uri=f"sip:conference-factory@{FOCUS.host}:{FOCUS.port};transport=tcp"
    )
    alice.send_message(0.0, text=f"/video sip:bob@127.0.0.1:{BOB.port}")
    net.run(5.0)
    (conference,) = focus.conferences
    assert conference.invite.top_via.transport == "TCP"
    assert conference.anchor.remote_target.transport is None  # type: ignore[union-attr]
    alice.send_message(net.now, text="/end")
    net.advance(5.0)
    to_focus = [
        (line.split()[0], d.transport)
        for _, _, d, line in net.log
        if (d.host, d.port) == (FOCUS.host, FOCUS.port) and not line.startswith("SIP/2.0")
    ]
    # The anchor dialog's requests keep its TCP; the SUBSCRIBE starts a new
    # dialog, to the conference URI the focus gave (no transport=): UDP, as
    # RFC 3263 4.1 says for a URI that names none.
    assert sorted(set(to_focus)) == [
        ("ACK", "TCP"),
        ("BYE", "TCP"),
        ("INVITE", "TCP"),
        ("SUBSCRIBE", "UDP"),
    ]
    byes = [r for r in focus.requests if r.method == "BYE"]
    assert byes
    assert byes[0].top_via.transport == "TCP"


def test_a_dialog_keeps_its_transport_through_a_record() -> None:
    """Dialog.transport survives to_dict/from_dict; a record from before it reads as None."""
    net, alice, _, _, _ = make_world(
        focus_uri=f"sip:conference-factory@{FOCUS.host}:{FOCUS.port};transport=tcp"
    )
    alice.send_message(0.0, text=f"/video sip:bob@127.0.0.1:{BOB.port}")
    net.run(5.0)
    (conference,) = net.allocator.conferences.values()
    record = net.allocator.snapshot(conference.id)
    anchor = record["anchor"]
    assert anchor["transport"] == "TCP"
    older = {key: value for key, value in anchor.items() if key != "transport"}
    assert Dialog.from_dict(older).transport is None
    restored = Allocator(net.allocator.config)
    restored.restore(record, net.now)
    restored.end_conference(conference.id, net.now)
    sent = [(m, d) for m, d in restored.messages_to_send() if isinstance(m, Request)]
    byes = [d for m, d in sent if m.method == "BYE"]
    assert byes == [Address(FOCUS.host, FOCUS.port, "TCP")]
    (bye,) = [m for m, _ in sent if m.method == "BYE"]
    assert parse_message(bye.to_bytes()).top_via.transport == "TCP"


def test_a_sips_focus_is_skipped_for_the_next_one_without_sending_anything() -> None:
    allocator = Allocator(
        AllocatorConfig(
            requests=RequestPolicy.for_domain("example.com"),
            focus_uris=(
                "sips:conference-factory@127.0.0.1:5081",
                f"sip:conference-factory@{FOCUS.host}:{FOCUS.port}",
            ),
            probe=False,
        )
    )
    alice, focus = Phone("alice", ALICE), Focus()
    net = SimNetwork(allocator, alice, focus)
    alice.send_message(0.0, text=f"/video sip:bob@127.0.0.1:{BOB.port}")
    net.run(1.0)  # at once: no focus_timeout waited for the TLS one
    assert [line for _, _, d, line in net.log if d.port == 5081] == []
    (refused,) = net.of_type(TransportUnavailable)
    assert isinstance(refused, TransportUnavailable)
    assert refused.method == "INVITE"
    assert net.of_type(ConferenceReady)
    assert len(focus.conferences) == 1
    (conference,) = allocator.conferences.values()
    assert conference.focus_index == 1
    assert "over TLS: not configured" in conference.focus_failures[0]


def test_with_a_tls_listener_a_sips_invitee_is_invited_over_tls_and_the_via_names_its_port() -> (
    None
):
    net, alice, bob, _, _ = make_world(tls_port=5071)
    alice.send_message(0.0, text=f"/video sips:bob@127.0.0.1:{BOB.port}")
    net.run(5.0)
    assert not net.of_type(TransportUnavailable)
    assert sent_to(net, BOB, "MESSAGE") == [Address("127.0.0.1", BOB.port, "TLS")]
    (to_bob,) = bob.messages
    via = to_bob.top_via
    assert (via.transport, via.port) == ("TLS", 5071)
    assert net.of_type(InvitationSent)
