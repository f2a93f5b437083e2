"""What allocator tests build: the MESSAGE requests they feed in, a context, a record."""

from __future__ import annotations

from collections.abc import Sequence

from vidim.allocator.conference import Conference, ConferenceState, Participant
from vidim.allocator.config import AllocatorConfig
from vidim.allocator.context import Context
from vidim.allocator.events import AllocatorEvent
from vidim.allocator.requests import RequestPolicy
from vidim.sip import Request, parse_message
from vidim.vocabulary import Mode

SERVICE = "sip:vidim@example.com"
ALICE = "sip:alice@example.com"


def _headers(
    uri: str, from_uri: str, content_type: str | None, extra: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    headers = [
        ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK776asdhds"),
        ("Max-Forwards", "70"),
        ("From", f"<{from_uri}>;tag=1928301774"),
        ("To", f"<{uri}>"),
        ("Call-ID", "a84b4c76e66710@127.0.0.1"),
        ("CSeq", "1 MESSAGE"),
    ]
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    return headers + list(extra)


def message_request(
    uri: str = SERVICE,
    *,
    body: bytes = b"",
    content_type: str | None = "text/plain",
    extra: Sequence[tuple[str, str]] = (),
    from_uri: str = ALICE,
    method: str = "MESSAGE",
) -> Request:
    """A MESSAGE from Alice; ``extra`` headers are appended."""
    headers = _headers(uri, from_uri, content_type if body else None, extra)
    return Request(method, uri, headers, body)


def command_request(
    text: str,
    *,
    content_type: str | None = "text/plain",
    extra: Sequence[tuple[str, str]] = (),
    from_uri: str = ALICE,
) -> Request:
    """A command (UTF-8 text) to the service URI."""
    return message_request(
        SERVICE, body=text.encode(), content_type=content_type, extra=extra, from_uri=from_uri
    )


def wire_request(
    uri: str = SERVICE,
    *,
    body: bytes = b"",
    content_type: str | None = "text/plain",
    extra: Sequence[tuple[str, bytes]] = (),
    from_uri: str = ALICE,
) -> Request:
    """Like :func:`message_request`, but through the parser: header values may hold any octets.

    (``Headers.add`` refuses control characters; the parser keeps what arrived.)
    """
    head = f"MESSAGE {uri} SIP/2.0\r\n".encode()
    for name, value in _headers(uri, from_uri, content_type if body else None, ()):
        head += f"{name}: {value}\r\n".encode()
    for name, raw in extra:
        head += name.encode() + b": " + raw + b"\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n".encode()
    request = parse_message(head + body)
    assert isinstance(request, Request)
    return request


def make_context(**config: object) -> tuple[Context, list[AllocatorEvent]]:
    """A part's shared context for example.com, and the list its events go to."""
    events: list[AllocatorEvent] = []
    settings = AllocatorConfig(
        requests=RequestPolicy.for_domain("example.com"),
        **config,  # type: ignore[arg-type]
    )
    return Context(settings, events.append), events


def two_party_record(
    state: ConferenceState, *, invited: bool = False, conference_uri: str | None = None
) -> Conference:
    """Alice's video conference with Bob, in ``state``."""
    return Conference(
        id="c1",
        requester=ALICE,
        mode=Mode.VIDEO,
        requester_address="192.0.2.7|5062|UDP",
        participants=[
            Participant(ALICE, Mode.VIDEO, Mode.VIDEO, "k", requester=True),
            Participant("sip:bob@example.com", Mode.VIDEO, Mode.VIDEO, "k", invited=invited),
        ],
        created_at=0.0,
        state=state,
        conference_uri=conference_uri,
    )
