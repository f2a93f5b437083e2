"""The allocator answers 401/407 challenges with its credentials (RFC 3261 22.2), once."""

from __future__ import annotations

from peers import FOCUS, PROXY, Focus, Phone, SimNetwork

from vidim.allocator.allocator import Allocator, AllocatorConfig
from vidim.allocator.events import (
    AuthenticationFailed,
    ConferenceFailed,
    ConferenceReady,
    InvitationFailed,
    ParticipantJoined,
    RequestAccepted,
    RequestRefused,
)
from vidim.allocator.requests import RequestPolicy
from vidim.sip import (
    Address,
    Challenger,
    ClientCredentials,
    DigestRealm,
    Request,
    Response,
    answer_challenges,
    hash_a1,
    new_branch,
    parse_challenge,
    parse_credentials,
    parse_message,
)
from vidim.vocabulary import Mode

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


def test_the_proxy_then_the_invitee_challenge_and_both_are_answered() -> None:
    net, _allocator, _alice, bob, _focus = make_world(VIDIM)
    bob_users = {"vidim": {"MD5": hash_a1("MD5", "vidim", "bob.example.com", "secret")}}
    net.challenger = Challenger(REALM, _users(), proxy=True)
    net.challenged = lambda request: "bob" in str(request.uri)
    bob.challenger = Challenger("bob.example.com", bob_users, algorithms=("MD5",))
    _alice.send_message(0.0, text="/video bob")
    net.run(5.0)
    assert net.of_type(AuthenticationFailed) == []
    messages = [r for r in bob.requests if r.method == "MESSAGE"]
    assert [r.cseq.seq for r in messages] == [2, 3]  # CSeq 1 got the proxy's 407
    assert _credentials(messages[1], "Proxy-Authorization") == [(REALM, "SHA-256")]
    assert _credentials(messages[1], "Authorization") == [("bob.example.com", "MD5")]
    # The proxy's nonce signs a second request: its count goes up (no replay).
    proxy_credentials = parse_credentials(messages[1].headers.get("Proxy-Authorization") or "")
    assert proxy_credentials is not None
    assert proxy_credentials.nc == 2
    assert len(bob.messages) == 2


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


def test_a_challenged_bye_is_sent_again_in_its_dialog() -> None:
    net, allocator, alice, _bob, focus = make_world(VIDIM)
    focus.challenger = Challenger(REALM, _users())
    focus.challenged = frozenset({"BYE"})
    alice.send_message(0.0, text="/video bob")
    net.run(5.0)
    (conference,) = focus.conferences
    alice.send_message(net.now, text="/end")
    net.advance(5.0)
    byes = [r for r in focus.requests if r.method == "BYE"]
    assert len(byes) == 2
    assert byes[1].cseq.seq == byes[0].cseq.seq + 1
    assert byes[1].call_id == byes[0].call_id
    assert _credentials(byes[1], "Authorization") == [(REALM, "SHA-256")]
    assert conference.ended
    assert allocator.conferences == {}
    assert net.of_type(AuthenticationFailed) == []


def test_a_challenged_subscribe_makes_its_dialog_from_the_retry() -> None:
    net, _allocator, alice, _bob, focus = make_world(VIDIM)
    focus.challenger = Challenger(REALM, _users())
    focus.challenged = frozenset({"SUBSCRIBE"})
    alice.send_message(0.0, text="/video bob")
    net.run(5.0)
    (conference,) = focus.conferences
    subscribes = [r for r in focus.requests if r.method == "SUBSCRIBE"]
    assert [r.cseq.seq for r in subscribes] == [1, 2]
    assert len(conference.subscribers) == 1
    focus.join(conference, "sip:bob@example.com", Mode.VIDEO, net.now)
    net.advance(1.0)
    assert [e.participant for e in net.of_type(ParticipantJoined)] == ["sip:bob@example.com"]
    assert "bob@example.com joined (video)." in alice.texts()


class SlowChallengingFocus(Focus):
    """Challenges the INVITE, then never answers the one with credentials."""

    def on_request(self, request: Request, now: float) -> None:
        if request.method == "INVITE" and request.to_addr.tag is None:
            self._refused(request, now)


def test_the_focus_timeout_cancels_the_invite_sent_with_credentials() -> None:
    net, _allocator, alice, _bob, _focus = make_world(VIDIM)
    focus = SlowChallengingFocus()
    focus.challenger = Challenger(REALM, _users())
    net.add(focus)
    cancels: list[Request] = []

    def watch(_source: Address, _destination: Address, wire: bytes) -> bool:
        if wire.startswith(b"CANCEL "):
            message = parse_message(wire)
            assert isinstance(message, Request)
            cancels.append(message)
        return False  # nothing dropped

    net.drop.append(watch)
    alice.send_message(0.0, text="/video bob")
    net.run(20.0)
    invites = [r for r in focus.requests if r.method == "INVITE"]
    assert [r.cseq.seq for r in invites] == [1, 2]
    assert [(r.cseq.seq, r.top_via.branch) for r in cancels] == [(2, invites[1].top_via.branch)]
    assert net.of_type(ConferenceFailed)


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


# -- vidim asks: MESSAGEs from untrusted sources ------------------------------------
UNTRUSTED = Address("192.0.2.10", 5062)


def _challenging(**users: str) -> Allocator:
    table = {
        user: {a: hash_a1(a, user, REALM, password) for a in ("MD5", "SHA-256")}
        for user, password in users.items()
    }
    return Allocator(
        AllocatorConfig(
            requests=RequestPolicy.for_domain("example.com"),
            proxy=PROXY,
            challenge=DigestRealm(realm=REALM, users=table),
        )
    )


def _message(cseq: int, extra: list[tuple[str, str]] | None = None) -> Request:
    return Request(
        "MESSAGE",
        "sip:vidim@example.com",
        [
            ("Via", f"SIP/2.0/UDP {UNTRUSTED.host}:{UNTRUSTED.port};branch={new_branch()}"),
            ("Max-Forwards", "70"),
            ("From", "<sip:mallory@example.com>;tag=m1"),
            ("To", "<sip:vidim@example.com>"),
            ("Call-ID", "call-1@192.0.2.10"),
            ("CSeq", f"{cseq} MESSAGE"),
            ("Content-Type", "text/plain"),
            *(extra or []),
        ],
        b"/help",
    )


def _answer(allocator: Allocator, request: Request, now: float) -> Response:
    allocator.receive(request, UNTRUSTED, now)
    answers = [m for m, _ in allocator.messages_to_send() if isinstance(m, Response)]
    (response,) = answers
    return response


def _with_credentials(challenge: Response, password: str, cseq: int) -> Request:
    lines = answer_challenges(_message(cseq), challenge, username="mallory", password=password)
    return _message(cseq, lines)


def test_an_untrusted_requester_is_challenged_then_served() -> None:
    allocator = _challenging(mallory="secret")
    challenge = _answer(allocator, _message(1), 0.0)
    assert challenge.status == 401
    offered = [parse_challenge(v) for v in challenge.headers.get_all("WWW-Authenticate")]
    assert [c.algorithm for c in offered if c] == ["SHA-256", "MD5"]
    (refused,) = [e for e in allocator.events() if isinstance(e, RequestRefused)]
    assert refused.status == 401
    retried = _with_credentials(challenge, "secret", 2)
    assert _answer(allocator, retried, 1.0).status == 202
    accepted = [e for e in allocator.events() if isinstance(e, RequestAccepted)]
    assert [(e.requester, e.command) for e in accepted] == [("sip:mallory@example.com", "help")]


def test_wrong_credentials_get_403_with_a_warning() -> None:
    allocator = _challenging(mallory="secret")
    challenge = _answer(allocator, _message(1), 0.0)
    refused = _answer(allocator, _with_credentials(challenge, "guess", 2), 1.0)
    assert refused.status == 403
    assert refused.headers.get("Warning") == ("399 example.com \"wrong credentials for 'mallory'\"")


def test_a_replayed_nonce_and_count_is_refused() -> None:
    allocator = _challenging(mallory="secret")
    challenge = _answer(allocator, _message(1), 0.0)
    retried = _with_credentials(challenge, "secret", 2)
    assert _answer(allocator, retried, 1.0).status == 202
    # The same credentials in a new request (a new branch: not a retransmission).
    replay = _message(3, [(n, v) for n, v in retried.headers if n == "Authorization"])
    refused = _answer(allocator, replay, 2.0)
    assert refused.status == 403
    assert "replayed" in (refused.headers.get("Warning") or "")


def test_credentials_of_another_user_than_the_from_are_refused() -> None:
    allocator = _challenging(mallory="secret", trent="other")
    challenge = _answer(allocator, _message(1), 0.0)
    lines = answer_challenges(_message(2), challenge, username="trent", password="other")
    refused = _answer(allocator, _message(2, lines), 1.0)
    assert refused.status == 403
    assert "not the From user" in (refused.headers.get("Warning") or "")


def test_a_trusted_source_is_not_challenged() -> None:
    allocator = _challenging(mallory="secret")
    request = _message(1)
    allocator.receive(request, Address("127.0.0.1", 5062), 0.0)
    (response,) = [m for m, _ in allocator.messages_to_send() if isinstance(m, Response)]
    assert response.status == 202
