"""The allocator answers 401/407 challenges with its credentials (RFC 3261 22.2), once."""

from __future__ import annotations

from peers import FOCUS, PROXY, Focus, Phone, SimNetwork

from vidim.allocator.allocator import Allocator, AllocatorConfig
from vidim.allocator.events import (
    AuthenticationFailed,
    ConferenceFailed,
    ConferenceReady,
    InvitationFailed,
)
from vidim.allocator.requests import RequestPolicy
from vidim.sip import Address, Challenger, ClientCredentials, Request, hash_a1, parse_credentials

REALM = "example.com"


def _users(password: str = "secret") -> dict[str, dict[str, str]]:
    return {
        "vidim": {
            algorithm: hash_a1(algorithm, "vidim", REALM, password)
            for algorithm in ("MD5", "SHA-256")
        }
    }


def make_world(
    credentials: ClientCredentials | None = None,
) -> tuple[SimNetwork, Allocator, Phone, Phone, Focus]:
    allocator = Allocator(
        AllocatorConfig(
            requests=RequestPolicy.for_domain("example.com"),
            proxy=PROXY,
            focus_uris=(f"sip:conference-factory@{FOCUS.host}:{FOCUS.port}",),
            credentials=credentials,
        )
    )
    alice = Phone("alice", Address("127.0.0.1", 5062))
    bob = Phone("bob", Address("127.0.0.1", 5064))
    focus = Focus()
    net = SimNetwork(allocator, alice, bob, focus)
    for phone in (alice, bob):
        net.register(phone.uri, phone)
    return net, allocator, alice, bob, focus


VIDIM = ClientCredentials(username="vidim", password="secret")


def _credentials(request: Request, header: str) -> list[tuple[str, str]]:
    parsed = [parse_credentials(value) for value in request.headers.get_all(header)]
    return [(c.realm, c.algorithm) for c in parsed if c is not None]


def test_the_proxy_challenges_every_request_and_the_conference_is_set_up() -> None:
    net, _allocator, alice, bob, _focus = make_world(VIDIM)
    net.challenger = Challenger(REALM, _users(), proxy=True)
    alice.send_message(0.0, text="/video bob")
    net.run(5.0)
    assert net.of_type(ConferenceReady)
    assert net.of_type(AuthenticationFailed) == []
    # The probe and the invitation each went twice: challenged (407), then answered.
    assert len(net.sent("OPTIONS sip:bob@example.com")) == 2
    assert len(net.sent("MESSAGE sip:bob@example.com")) == 2
    (invitation,) = bob.messages
    assert invitation.cseq.seq == 2
    assert _credentials(invitation, "Proxy-Authorization") == [(REALM, "SHA-256")]
    assert any("is ready" in text for text in alice.texts())
    # The same Call-ID as the challenged request (22.2), a new branch.
    challenged = [r for r in net.proxy_refused if r.method == "MESSAGE" and "bob" in str(r.uri)]
    assert [r.call_id for r in challenged] == [invitation.call_id]
    assert challenged[0].top_via.branch != invitation.top_via.branch


def test_the_focus_challenges_the_invite_with_md5_only() -> None:
    net, allocator, alice, _bob, focus = make_world(VIDIM)
    focus.challenger = Challenger(REALM, _users(), algorithms=("MD5",))
    alice.send_message(0.0, text="/video bob")
    net.run(5.0)
    assert net.of_type(ConferenceReady)
    invites = [r for r in focus.requests if r.method == "INVITE"]
    assert [r.cseq.seq for r in invites] == [1, 2]
    assert invites[0].call_id == invites[1].call_id
    assert invites[0].from_addr.tag == invites[1].from_addr.tag
    assert _credentials(invites[1], "Authorization") == [(REALM, "MD5")]
    # The dialog goes on from the retry's CSeq: the BYE is CSeq 3 or more.
    alice.send_message(net.now, text="/end")
    net.advance(5.0)
    (bye,) = [r for r in focus.requests if r.method == "BYE"]
    assert bye.cseq.seq > 2
    assert allocator.conferences == {}


def test_a_wrong_password_at_the_focus_fails_once_with_an_event_and_an_im() -> None:
    net, allocator, alice, _bob, focus = make_world(
        ClientCredentials(username="vidim", password="wrong")
    )
    focus.challenger = Challenger(REALM, _users())
    alice.send_message(0.0, text="/video bob")
    net.run(30.0)
    (failed,) = net.of_type(AuthenticationFailed)
    assert failed.status == 403  # vidim's Challenger refuses wrong credentials outright
    assert failed.reason == "credentials of 'vidim' refused"
    assert failed.summary == f"INVITE sip:conference-factory@{FOCUS.host}:{FOCUS.port}"
    assert [r.cseq.seq for r in focus.requests if r.method == "INVITE"] == [1, 2]
    assert net.of_type(ConferenceFailed)
    assert any("could not be set up" in text for text in alice.texts())
    assert allocator.conferences == {}


def test_a_wrong_password_at_the_proxy_sends_each_request_twice_and_tells_the_requester() -> None:
    net, _allocator, alice, bob, _focus = make_world(
        ClientCredentials(username="vidim", password="wrong")
    )
    # Kamailio challenges what goes to bob; alice's IMs pass.
    net.challenger = Challenger(REALM, _users(), proxy=True)
    net.challenged = lambda request: "bob" in str(request.uri)
    alice.send_message(0.0, text="/video bob")
    net.run(30.0)
    assert len(net.sent("MESSAGE sip:bob@example.com")) == 2
    assert bob.messages == []
    failures = net.of_type(AuthenticationFailed)
    assert {f.summary for f in failures} == {
        "OPTIONS sip:bob@example.com",
        "MESSAGE sip:bob@example.com",
    }
    assert all(f.realm == REALM for f in failures)
    (invitation_failed,) = net.of_type(InvitationFailed)
    assert invitation_failed.reason.startswith("403")
    assert any("was not delivered (403" in text for text in alice.texts())


def test_a_challenge_with_no_credentials_configured_is_a_failure_named_as_such() -> None:
    net, _allocator, alice, _bob, _focus = make_world(None)
    net.challenger = Challenger(REALM, _users(), proxy=True)
    net.challenged = lambda request: "bob" in str(request.uri)
    alice.send_message(0.0, text="/video bob")
    net.run(30.0)
    assert len(net.sent("MESSAGE sip:bob@example.com")) == 1
    reasons = {f.reason for f in net.of_type(AuthenticationFailed)}
    assert reasons == {"no credentials configured ([auth] username/password)"}
    assert any("was not delivered (407" in text for text in alice.texts())


def test_credentials_for_another_realm_are_not_sent() -> None:
    net, _allocator, alice, _bob, _focus = make_world(
        ClientCredentials(username="vidim", password="secret", realm="elsewhere")
    )
    net.challenger = Challenger(REALM, _users(), proxy=True)
    net.challenged = lambda request: "bob" in str(request.uri)
    alice.send_message(0.0, text="/video bob")
    net.run(30.0)
    assert len(net.sent("MESSAGE sip:bob@example.com")) == 1
    reasons = {f.reason for f in net.of_type(AuthenticationFailed)}
    assert reasons == {"challenged for another realm than 'elsewhere'"}


def test_a_stale_nonce_is_answered_once_more_then_given_up() -> None:
    net, _allocator, alice, _bob, _focus = make_world(VIDIM)
    # Every nonce is stale by the time it comes back: the server keeps saying so.
    net.challenger = Challenger(REALM, _users(), proxy=True, nonce_lifetime=0.0)
    net.challenged = lambda request: "bob" in str(request.uri)
    alice.send_message(0.0, text="/video bob")
    net.run(30.0)
    assert len(net.sent("MESSAGE sip:bob@example.com")) == 3
    assert {f.reason for f in net.of_type(AuthenticationFailed)} == {
        "credentials of 'vidim' refused"
    }
