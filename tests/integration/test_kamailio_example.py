"""The shipped examples/kamailio/kamailio.cfg, run unchanged (addresses via ``-A`` defines).

Real Kamailio 5.6 on 127.0.0.1; the phones, the "daemon" and the "focus" are plain UDP
sockets driven with vidim's message model, so every routing decision of the config is
seen on the wire: REGISTER, the two vidim MESSAGE routes, the relay of vidim's own IMs
and probes to registered users (404 when not registered), conference INVITEs to the
focus with Record-Route, the focus's BYE back through the route set, P-Asserted-Identity
stripping, and no open relay.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from sip_peers import HOST, Kamailio, free_port, new_branch, udp_transaction

from vidim.sip import Request, Response, make_response, parse_message

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

DOMAIN = "vidim.test"
WAIT = 5.0


class UdpPeer:
    """A SIP endpoint on a UDP socket: sends requests, waits for requests and responses."""

    def __init__(self, user: str, port: int | None = None) -> None:
        self.user = user
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, port if port is not None else free_port()))
        self.port: int = self.sock.getsockname()[1]
        self.seen: set[tuple[str, str, int]] = set()  # absorbed retransmissions

    @property
    def addr(self) -> tuple[str, int]:
        return (HOST, self.port)

    def close(self) -> None:
        self.sock.close()

    def new_request(
        self, method: str, uri: str, *, to: str | None = None, headers: tuple[tuple[str, str], ...] = (),
        body: bytes = b"", cseq: int = 1, call_id: str | None = None,
    ) -> Request:  # fmt: skip
        return Request(
            method,
            uri,
            [
                ("Via", f"SIP/2.0/UDP {HOST}:{self.port};branch={new_branch()};rport"),
                ("Max-Forwards", "70"),
                ("From", f"<sip:{self.user}@{DOMAIN}>;tag={uuid.uuid4().hex[:8]}"),
                ("To", f"<{to or uri}>"),
                ("Call-ID", call_id or f"{uuid.uuid4().hex}@{HOST}"),
                ("CSeq", f"{cseq} {method}"),
                ("Contact", f"<sip:{self.user}@{HOST}:{self.port}>"),
                *headers,
            ],
            body,
        )

    def transaction(self, request: Request, dest: tuple[str, int]) -> Response:
        return udp_transaction(self.sock, request, dest, timeout=WAIT)

    def send(self, message: Request | Response, dest: tuple[str, int]) -> None:
        self.sock.sendto(message.to_bytes(), dest)

    def _receive(self, deadline: float) -> tuple[Request | Response, tuple[str, int]]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        raw, source = self.sock.recvfrom(65535)
        return parse_message(raw), source

    def request(self, method: str, timeout: float = WAIT) -> tuple[Request, tuple[str, int]]:
        """The next new ``method`` request (retransmissions and responses skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                message, source = self._receive(deadline)
            except TimeoutError:
                raise AssertionError(f"{self.user}: no {method} within {timeout}s") from None
            if not isinstance(message, Request) or message.method != method:
                continue
            key = (message.top_via.branch, message.call_id, message.cseq.seq)
            if (key[0], key[1], key[2]) in self.seen:
                continue
            self.seen.add(key)
            return message, source

    def response(self, request: Request, timeout: float = WAIT) -> Response:
        """The final response to ``request`` (provisional ones skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                message, _ = self._receive(deadline)
            except TimeoutError:
                raise AssertionError(f"{self.user}: no final response to {request!r}") from None
            if (
                isinstance(message, Response)
                and message.status >= 200
                and message.top_via.branch == request.top_via.branch
            ):
                return message

    def nothing(self, timeout: float = 0.5) -> None:
        """Assert that no request arrives within ``timeout`` (a routing that must not happen)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                message, _ = self._receive(deadline)
            except (TimeoutError, OSError):
                return
            if isinstance(message, Request):
                raise AssertionError(f"{self.user} got an unexpected {message!r}")

    def reply(
        self, request: Request, source: tuple[str, int], status: int, **kwargs: object
    ) -> None:
        response = make_response(request, status, to_tag=uuid.uuid4().hex[:8], **kwargs)  # type: ignore[arg-type]
        self.sock.sendto(response.to_bytes(), source)


@dataclass
class Site:
    kamailio: Kamailio
    daemon: UdpPeer  # stands in for the vidim allocator
    focus: UdpPeer  # stands in for the vidim focus
    alice: UdpPeer
    bob: UdpPeer

    def register(self, peer: UdpPeer) -> Response:
        request = peer.new_request(
            "REGISTER", f"sip:{DOMAIN}", to=f"sip:{peer.user}@{DOMAIN}",
            headers=(("Expires", "300"),),
        )  # fmt: skip
        return peer.transaction(request, self.kamailio.addr)


@pytest.fixture
def site(example_kamailio_factory: Callable[..., Kamailio]) -> Iterator[Site]:
    peers = [UdpPeer(name) for name in ("vidim", "focus", "alice", "bob")]
    try:
        kamailio = example_kamailio_factory(
            daemon=peers[0].addr, focus=peers[1].addr, domain=DOMAIN
        )
        yield Site(kamailio, *peers)
    finally:
        for peer in peers:
            peer.close()


def test_register_and_vidim_routes(site: Site) -> None:
    for peer in (site.alice, site.bob):
        response = site.register(peer)
        assert response.status == 200, response.to_bytes().decode()
        assert any(str(c.uri).endswith(f":{peer.port}") for c in response.contacts)

    # (1) header form to any user, with a forged P-Asserted-Identity: to the daemon, stripped.
    message = site.alice.new_request(
        "MESSAGE", f"sip:bob@{DOMAIN}",
        headers=(("X-Vidim-Mode", "video"), ("P-Asserted-Identity", f"<sip:boss@{DOMAIN}>"),
                 ("Content-Type", "text/plain")),
        body=b"video?",
    )  # fmt: skip
    site.alice.send(message, site.kamailio.addr)
    got, source = site.daemon.request("MESSAGE")
    assert str(got.uri) == f"sip:bob@{DOMAIN}"
    assert got.headers.get("X-Vidim-Mode") == "video"
    assert got.headers.get("P-Asserted-Identity") is None, "client PAI must be stripped"
    site.daemon.reply(got, source, 202)
    assert site.alice.response(message).status == 202
    site.bob.nothing(0.2)

    # (2) command form to the service URI.
    command = site.alice.new_request(
        "MESSAGE", f"sip:vidim@{DOMAIN}", headers=(("Content-Type", "text/plain"),), body=b"/end"
    )
    site.alice.send(command, site.kamailio.addr)
    got, source = site.daemon.request("MESSAGE")
    assert got.body == b"/end"
    site.daemon.reply(got, source, 202)
    assert site.alice.response(command).status == 202

    # A plain MESSAGE between users does not go to vidim.
    plain = site.alice.new_request("MESSAGE", f"sip:bob@{DOMAIN}", body=b"hi")
    site.alice.send(plain, site.kamailio.addr)
    got, source = site.bob.request("MESSAGE")
    assert got.body == b"hi"
    site.bob.reply(got, source, 200)
    assert site.alice.response(plain).status == 200
    site.daemon.nothing(0.2)


def test_daemon_requests_reach_registered_users_only(site: Site) -> None:
    assert site.register(site.bob).status == 200

    # The daemon's invitation (even one carrying X-Vidim-Mode) goes to bob, not back to vidim.
    invitation = site.daemon.new_request(
        "MESSAGE", f"sip:bob@{DOMAIN}",
        headers=(("X-Vidim-Conference", f"<sip:conf-x@{HOST}:{site.focus.port};key=k>;mode=video"),
                 ("X-Vidim-Mode", "video"),
                 ("P-Asserted-Identity", f"<sip:vidim@{DOMAIN}>")),
        body=b"join",
    )  # fmt: skip
    site.daemon.send(invitation, site.kamailio.addr)
    got, source = site.bob.request("MESSAGE")
    assert str(got.uri) == f"sip:bob@{HOST}:{site.bob.port}", "R-URI rewritten to the contact"
    assert (got.headers.get("X-Vidim-Conference") or "").startswith("<sip:conf-x@")
    assert got.headers.get("P-Asserted-Identity") == f"<sip:vidim@{DOMAIN}>", "vidim's PAI kept"
    site.bob.reply(got, source, 200)
    assert site.daemon.response(invitation).status == 200
    site.daemon.nothing(0.2)

    # Probes: OPTIONS relayed to a registered user, 404 for one who is not.
    probe = site.daemon.new_request("OPTIONS", f"sip:bob@{DOMAIN}")
    site.daemon.send(probe, site.kamailio.addr)
    got, source = site.bob.request("OPTIONS")
    site.bob.reply(got, source, 200)
    assert site.daemon.response(probe).status == 200
    missing = site.daemon.new_request("OPTIONS", f"sip:carol@{DOMAIN}")
    assert site.daemon.transaction(missing, site.kamailio.addr).status == 404
    lost = site.daemon.new_request("MESSAGE", f"sip:carol@{DOMAIN}", body=b"join")
    assert site.daemon.transaction(lost, site.kamailio.addr).status == 404

    # No open relay.
    foreign = site.alice.new_request("MESSAGE", "sip:eve@elsewhere.example", body=b"x")
    assert site.alice.transaction(foreign, site.kamailio.addr).status == 403


def test_conference_invite_to_focus_is_record_routed(site: Site) -> None:
    assert site.register(site.bob).status == 200
    conf_uri = f"sip:conf-abc@{HOST}:{site.focus.port};key=secret"
    invite = site.bob.new_request(
        "INVITE", conf_uri,
        headers=(("P-Asserted-Identity", f"<sip:carol@{DOMAIN}>"), ("Content-Type", "application/sdp")),
        body=b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
             b"m=audio 4000 RTP/AVP 0\r\n",
    )  # fmt: skip
    site.bob.send(invite, site.kamailio.addr)
    got, source = site.focus.request("INVITE")
    assert str(got.uri) == conf_uri, "the join credential survives the proxy"
    assert got.headers.get("P-Asserted-Identity") is None
    record_route = got.headers.get_all("Record-Route")
    assert record_route
    assert f"{HOST}:{site.kamailio.port}" in record_route[0]
    site.focus.reply(
        got, source, 200,
        headers=[("Contact", f"<sip:conf-abc@{HOST}:{site.focus.port}>;isfocus"),
                 *(("Record-Route", rr) for rr in record_route)],
    )  # fmt: skip
    ok = site.bob.response(invite)
    assert ok.status == 200
    assert ok.record_route, "bob learns the route set"

    # The focus hangs up: its BYE follows the route set through Kamailio to bob.
    bye = Request(
        "BYE",
        f"sip:bob@{HOST}:{site.bob.port}",
        [
            ("Via", f"SIP/2.0/UDP {HOST}:{site.focus.port};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("Route", record_route[0]),
            ("From", str(ok.to_addr)),
            ("To", str(ok.from_addr)),
            ("Call-ID", invite.call_id),
            ("CSeq", "1 BYE"),
        ],
    )
    site.focus.send(bye, site.kamailio.addr)
    got_bye, source = site.bob.request("BYE")
    assert got_bye.call_id == invite.call_id
    site.bob.reply(got_bye, source, 200)
    assert site.focus.response(bye).status == 200

    # A SUBSCRIBE to the conference goes to the focus too.
    subscribe = site.bob.new_request("SUBSCRIBE", conf_uri, headers=(("Event", "conference"),))
    site.bob.send(subscribe, site.kamailio.addr)
    got, source = site.focus.request("SUBSCRIBE")
    site.focus.reply(got, source, 489)
    assert site.bob.response(subscribe).status == 489


def test_the_daemons_503_reaches_the_requester_as_a_503(site: Site) -> None:
    """tm would relay a 503 as a 500 (RFC 3261 16.7); vidim's refusal keeps its status,
    its Retry-After and its Warning, and OPTIONS and INVITE to the service reach vidim."""
    message = site.alice.new_request(
        "MESSAGE", f"sip:vidim@{DOMAIN}", headers=(("Content-Type", "text/plain"),), body=b"/end"
    )
    site.alice.send(message, site.kamailio.addr)
    got, source = site.daemon.request("MESSAGE")
    site.daemon.reply(
        got, source, 503, reason="Shutting Down",
        headers=[("Retry-After", "7"), ("Warning", '399 vidim.test "shutting down"')],
    )  # fmt: skip
    refused = site.alice.response(message)
    assert refused.status == 503, refused.to_bytes().decode()
    assert refused.headers.get("Retry-After") == "7"
    assert refused.headers.get("Warning") == '399 vidim.test "shutting down"'

    for method in ("OPTIONS", "INVITE"):
        request = site.alice.new_request(method, f"sip:vidim@{DOMAIN}")
        site.alice.send(request, site.kamailio.addr)
        got, source = site.daemon.request(method)
        site.daemon.reply(got, source, 200 if method == "OPTIONS" else 405)
        assert site.alice.response(request).status == (200 if method == "OPTIONS" else 405)
