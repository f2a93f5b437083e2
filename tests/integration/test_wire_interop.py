"""Wire interop with real SIP software: Kamailio 5.6 (proxy) and SIPp 3.6 (UAC/UAS).

Requests and responses built in code with vidim are serialized with ``to_bytes()`` and sent
to the real programs; what they send back is parsed with vidim (issue 2: "requests and
responses built in code serialize to valid SIP that Kamailio and SIPp accept").
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sip_peers import HOST, Kamailio, Sipp, new_branch, udp_transaction

from vidim.sip import Request, Response, StreamFramer, make_response, parse_message, quote

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

DISPLAY_NAME = "Zoë Ångström-Nørgaard 🎥"
TEXT = "On passe en vidéo ? Rejoins-moi : ça démarre 📹".encode()
SDP = (
    "v=0\r\n"
    f"o=vidim 2890844526 2890844526 IN IP4 {HOST}\r\n"
    "s=vidim\r\n"
    f"c=IN IP4 {HOST}\r\n"
    "t=0 0\r\n"
    "m=audio 49170 RTP/AVP 0\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
).encode()
READ_TIMEOUT = 5.0


def new_tag() -> str:
    return uuid.uuid4().hex[:10]


def build_message(
    uri: str, local: tuple[str, int], *, transport: str = "UDP", cseq: int = 1,
    call_id: str | None = None, from_tag: str | None = None,
) -> Request:  # fmt: skip
    """A MESSAGE like the ones vidim sends: custom headers, UTF-8 display name and body."""
    return Request(
        "MESSAGE",
        uri,
        [
            ("Via", f"SIP/2.0/{transport} {local[0]}:{local[1]};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"{quote(DISPLAY_NAME)} <sip:zoe@{HOST}>;tag={from_tag or new_tag()}"),
            ("To", f'"Bob" <sip:bob@{HOST}>'),
            ("Call-ID", call_id or f"{uuid.uuid4().hex}@{HOST}"),
            ("CSeq", f"{cseq} MESSAGE"),
            ("X-Vidim-Mode", "video"),
            ("X-Vidim-Invite", f'<sip:room-42@{HOST}>;expires=300;label="Daily stand-up"'),
            ("User-Agent", "vidim-interop-test"),
            ("Content-Type", "text/plain;charset=UTF-8"),
        ],
        TEXT,
    )


def assert_answers(request: Request, response: Response, status: int = 200) -> None:
    """The response belongs to the request's transaction and dialog identifiers."""
    assert response.status == status, response.to_bytes().decode(errors="replace")
    assert response.top_via.branch == request.top_via.branch
    assert response.cseq == request.cseq
    assert response.call_id == request.call_id
    assert response.from_addr.tag == request.from_addr.tag
    assert response.from_addr.display_name == DISPLAY_NAME
    assert response.to_addr.tag, "a 2xx response carries a To tag"


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(READ_TIMEOUT)
    return sock


def recv_message(sock: socket.socket, deadline: float) -> tuple[Request | Response, tuple]:
    """The next datagram, parsed with vidim; TimeoutError once ``deadline`` has passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("deadline passed")
    sock.settimeout(remaining)
    raw, addr = sock.recvfrom(65535)
    return parse_message(raw), addr


# -- (i) Kamailio, UDP -----------------------------------------------------------------
def test_message_over_udp_is_answered_by_kamailio(kamailio: Kamailio) -> None:
    with udp_socket() as sock:
        local = sock.getsockname()
        request = build_message(f"sip:bob@{HOST}:{kamailio.port}", local)
        response = udp_transaction(sock, request, kamailio.addr, timeout=READ_TIMEOUT)

    assert_answers(request, response)
    assert response.reason == "OK"
    # Kamailio echoes our Via and fills in rport/received (RFC 3581).
    assert response.top_via.host == HOST
    assert response.top_via.port == local[1]
    assert response.top_via.rport == local[1]
    assert len(response.via) == 1
    assert kamailio.complaints() == []


# -- (ii) Kamailio, TCP ------------------------------------------------------------------
def test_pipelined_messages_over_tcp_are_answered_by_kamailio(kamailio: Kamailio) -> None:
    with socket.create_connection(kamailio.addr, timeout=READ_TIMEOUT) as sock:
        local = sock.getsockname()
        call_id, tag = f"{uuid.uuid4().hex}@{HOST}", new_tag()
        requests = [
            build_message(f"sip:bob@{HOST}:{kamailio.port};transport=tcp", local,
                          transport="TCP", cseq=seq, call_id=call_id, from_tag=tag)
            for seq in (1, 2)
        ]  # fmt: skip
        # Both in one write: Kamailio must frame them by Content-Length.
        sock.sendall(b"".join(r.to_bytes() for r in requests))

        framer = StreamFramer()
        responses: list[Response] = []
        deadline = time.monotonic() + READ_TIMEOUT
        while len(responses) < len(requests):
            message = framer.next_message()
            if message is None:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                data = sock.recv(65535)  # TimeoutError ends the test
                assert data, "Kamailio closed the TCP connection"
                framer.receive_data(data)
                continue
            assert isinstance(message, Response)
            responses.append(message)
        assert framer.buffered == 0

    for request, response in zip(requests, responses, strict=True):
        assert_answers(request, response)
        assert response.top_via.transport.upper() == "TCP"
    assert [r.cseq.seq for r in responses] == [1, 2]
    assert kamailio.complaints() == []


# -- (iv) Kamailio relays (t_relay) to a vidim responder -------------------------------------
def test_message_relayed_by_kamailio_to_a_vidim_responder(
    kamailio_factory: Callable[..., Kamailio],
) -> None:
    with udp_socket() as responder, udp_socket() as client:
        kamailio = kamailio_factory(relay_to=responder.getsockname())
        request = build_message(f"sip:relay@{HOST}:{kamailio.port}", client.getsockname())
        client.sendto(request.to_bytes(), kamailio.addr)

        # The responder gets the relayed request; Kamailio added its Via on top.
        deadline = time.monotonic() + READ_TIMEOUT
        relayed, source = recv_message(responder, deadline)
        assert isinstance(relayed, Request)
        assert source == kamailio.addr
        assert relayed.method == "MESSAGE"
        assert str(relayed.uri) == str(request.uri)
        assert len(relayed.via) == 2
        assert (relayed.top_via.host, relayed.top_via.port) == kamailio.addr
        assert relayed.top_via.branch
        assert relayed.top_via.branch.startswith("z9hG4bK")
        assert relayed.via[1].branch == request.top_via.branch
        assert relayed.via[1].rport == client.getsockname()[1]
        assert relayed.max_forwards == request.max_forwards - 1
        assert relayed.from_addr.display_name == DISPLAY_NAME
        for name in ("X-Vidim-Mode", "X-Vidim-Invite", "Call-ID", "CSeq", "From", "To"):
            assert relayed.headers.get(name) == request.headers.get(name), name
        # Apart from its Via and Max-Forwards, the proxy forwards the headers as sent.
        untouched = ("Via", "Max-Forwards")
        sent_request = parse_message(request.to_bytes())
        assert [h for h in relayed.headers if h[0] not in untouched] == [
            h for h in sent_request.headers if h[0] not in untouched
        ]
        assert relayed.content_type == request.content_type
        assert relayed.body == TEXT

        # The response built with make_response goes back through Kamailio.
        response = make_response(
            relayed, 200, to_tag=new_tag(),
            headers=[("X-Vidim-Mode", "video"), ("Content-Type", "text/plain;charset=UTF-8")],
            body="reçu 👍".encode(),
        )  # fmt: skip
        responder.sendto(response.to_bytes(), (relayed.top_via.host, relayed.top_via.port))

        final, source = recv_message(client, deadline)
        assert source == kamailio.addr
        assert isinstance(final, Response)

    assert_answers(request, final)
    assert final.to_addr.tag == response.to_addr.tag
    # Intact: Kamailio removed only its own Via; everything else arrives as sent.
    assert [v.branch for v in final.via] == [request.top_via.branch]
    sent = parse_message(response.to_bytes())
    assert [h for h in final.headers if h[0] != "Via"] == [h for h in sent.headers if h[0] != "Via"]
    assert final.body == "reçu 👍".encode()
    assert kamailio.complaints() == []


# -- (iii) SIPp's built-in UAS answers an INVITE dialog built with vidim ------------------------
def test_invite_ack_bye_against_sipp_uas(sipp_factory: Callable[..., Sipp]) -> None:
    sipp = sipp_factory(["-sn", "uas", "-m", "1"], wait_ready=True)
    with udp_socket() as sock:
        local = sock.getsockname()
        contact = f"<sip:zoe@{HOST}:{local[1]}>"
        from_ = f"{quote(DISPLAY_NAME)} <sip:zoe@{HOST}>;tag={new_tag()}"
        call_id = f"{uuid.uuid4().hex}@{HOST}"
        invite = Request(
            "INVITE",
            f"sip:service@{HOST}:{sipp.port}",
            [
                ("Via", f"SIP/2.0/UDP {HOST}:{local[1]};branch={new_branch()};rport"),
                ("Max-Forwards", "70"),
                ("From", from_),
                ("To", f"<sip:service@{HOST}:{sipp.port}>"),
                ("Call-ID", call_id),
                ("CSeq", "1 INVITE"),
                ("Contact", contact),
                ("X-Vidim-Mode", "video"),
                ("Content-Type", "application/sdp"),
            ],
            SDP,
        )
        answer = udp_transaction(sock, invite, sipp.addr, timeout=READ_TIMEOUT)
        assert answer.status == 200, sipp.report()
        assert answer.top_via.branch == invite.top_via.branch
        assert answer.cseq == invite.cseq
        assert answer.call_id == call_id
        assert answer.from_addr.display_name == DISPLAY_NAME
        to_tag = answer.to_addr.tag
        assert to_tag
        assert answer.content_type is not None
        assert answer.content_type.mime == "application/sdp"
        assert answer.body.startswith(b"v=0")
        assert answer.contacts, "a 2xx to INVITE carries a Contact"
        remote_target = answer.contacts[0].uri

        # ACK and BYE go to the remote target (SIPp's Contact), in the dialog.
        to_ = answer.headers.get("To")
        assert to_ is not None
        dialog = [("Max-Forwards", "70"), ("From", from_), ("To", to_), ("Call-ID", call_id)]
        ack = Request(
            "ACK", remote_target,
            [("Via", f"SIP/2.0/UDP {HOST}:{local[1]};branch={new_branch()};rport"),
             *dialog, ("CSeq", "1 ACK")],
        )  # fmt: skip
        sock.sendto(ack.to_bytes(), sipp.addr)
        bye = Request(
            "BYE", remote_target,
            [("Via", f"SIP/2.0/UDP {HOST}:{local[1]};branch={new_branch()};rport"),
             *dialog, ("CSeq", "2 BYE")],
        )  # fmt: skip
        bye_answer = udp_transaction(sock, bye, sipp.addr, timeout=READ_TIMEOUT)

    assert bye_answer.status == 200, sipp.report()
    assert bye_answer.cseq == bye.cseq
    assert bye_answer.to_addr.tag == to_tag
    # The built-in UAS keeps the call 4 s in timewait before counting it as successful.
    assert sipp.wait(timeout=20) == 0, sipp.report()
    assert sipp.errors() == ""


# -- (v) SIPp's built-in UAC calls a vidim UAS loop -------------------------------------------
def run_vidim_uas(sock: socket.socket, sipp: Sipp, timeout: float) -> dict[str, Request]:
    """Answer one call: INVITE -> 100, 180, 200 (retransmitted until ACK); BYE -> 200.

    Returns the requests received, by method.  Bounded by ``timeout``.
    """
    local = sock.getsockname()
    to_tag = new_tag()
    seen: dict[str, Request] = {}
    invite_final: bytes | None = None
    bye_final: bytes | None = None
    deadline = time.monotonic() + timeout
    next_retransmit = 0.0
    while bye_final is None or "ACK" not in seen:
        if sipp.proc.poll() is not None and bye_final is None:
            raise AssertionError(f"SIPp exited early ({sipp.proc.returncode})\n{sipp.report()}")
        if time.monotonic() >= deadline:
            raise AssertionError(f"call not finished in {timeout}s; got {list(seen)}")
        # Retransmit the 200 to INVITE until the ACK arrives (RFC 3261 13.3.1.4).
        if invite_final is not None and "ACK" not in seen and time.monotonic() >= next_retransmit:
            sock.sendto(invite_final, sipp.addr)
            next_retransmit = time.monotonic() + 0.5
        try:
            message, source = recv_message(sock, min(deadline, time.monotonic() + 0.1))
        except TimeoutError:
            continue
        assert isinstance(message, Request), message
        assert source == sipp.addr
        seen.setdefault(message.method, message)
        if message.method == "INVITE":
            if invite_final is None:
                for status in (100, 180):
                    sock.sendto(make_response(message, status, to_tag=to_tag).to_bytes(), source)
                invite_final = make_response(
                    message, 200, to_tag=to_tag,
                    headers=[("Contact", f"<sip:vidim@{local[0]}:{local[1]}>"),
                             ("Content-Type", "application/sdp")],
                    body=SDP,
                ).to_bytes()  # fmt: skip
            sock.sendto(invite_final, source)  # also answers a retransmitted INVITE
            next_retransmit = time.monotonic() + 0.5
        elif message.method == "BYE":
            bye_final = make_response(message, 200, to_tag=to_tag).to_bytes()
            sock.sendto(bye_final, source)
        elif message.method != "ACK":
            raise AssertionError(f"unexpected {message!r}")
    return seen


def test_sipp_uac_calls_a_vidim_uas(sipp_factory: Callable[..., Sipp]) -> None:
    with udp_socket() as sock:
        local = sock.getsockname()
        sipp = sipp_factory(["-sn", "uac", f"{local[0]}:{local[1]}", "-m", "1", "-d", "10"])
        seen = run_vidim_uas(sock, sipp, timeout=15)
        code = sipp.wait(timeout=20)

    assert code == 0, sipp.report()
    assert sipp.errors() == ""
    invite, ack, bye = seen["INVITE"], seen["ACK"], seen["BYE"]
    assert invite.content_type is not None
    assert invite.content_type.mime == "application/sdp"
    assert invite.body.startswith(b"v=0")
    assert invite.max_forwards == 70
    assert invite.top_via.branch
    assert invite.top_via.branch.startswith("z9hG4bK")
    assert invite.contacts
    assert ack.call_id == bye.call_id == invite.call_id
    assert ack.cseq.seq == invite.cseq.seq
    assert ack.cseq.method == "ACK"
    assert bye.cseq.method == "BYE"
    assert bye.cseq.seq > invite.cseq.seq
    assert ack.to_addr.tag == bye.to_addr.tag is not None
    assert ack.from_addr.tag == bye.from_addr.tag == invite.from_addr.tag


def read_errors(sipp: Sipp) -> str:
    return sipp.errors_path.read_text(errors="replace").strip() if sipp.errors_path.exists() else ""


# -- SIPp custom UAS scenario: MESSAGE answered 200 -----------------------------------------
MESSAGE_UAS_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="vidim MESSAGE UAS">
  <recv request="MESSAGE" crlf="true">
    <action>
      <ereg regexp="video" search_in="hdr" header="X-Vidim-Mode:" check_it="true"
            assign_to="mode"/>
    </action>
  </recv>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]vidim[call_number]
      Call-ID: [call_id]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <Reference variables="mode"/>
</scenario>
"""


def test_message_answered_by_sipp_custom_scenario(
    sipp_factory: Callable[..., Sipp], tmp_path: Path
) -> None:
    scenario = tmp_path / "message_uas.xml"
    scenario.write_text(MESSAGE_UAS_XML)
    sipp = sipp_factory(["-sf", str(scenario), "-m", "1"], wait_ready=True)
    with udp_socket() as sock:
        request = build_message(f"sip:bob@{HOST}:{sipp.port}", sock.getsockname())
        response = udp_transaction(sock, request, sipp.addr, timeout=READ_TIMEOUT)

    assert_answers(request, response)
    assert sipp.wait(timeout=20) == 0, sipp.report()
    assert sipp.errors() == ""
