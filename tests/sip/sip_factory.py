"""Builds wire messages for tests (in the manner of h2's FrameFactory)."""

from __future__ import annotations


def request_bytes(
    method: str = "MESSAGE",
    uri: str = "sip:bob@example.com",
    *,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    extra: list[tuple[str, str]] | None = None,
    content_length: bool = True,
) -> bytes:
    """A request with every mandatory header; ``headers`` replaces them all."""
    if headers is None:
        headers = [
            ("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport"),
            ("Max-Forwards", "70"),
            ("From", '"Alice" <sip:alice@example.com>;tag=1928301774'),
            ("To", "<" + uri + ">"),
            ("Call-ID", "a84b4c76e66710@pc33.example.com"),
            ("CSeq", f"314159 {method}"),
        ]
    headers = headers + (extra or [])
    if content_length:
        headers.append(("Content-Length", str(len(body))))
    head = f"{method} {uri} SIP/2.0\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    return head.encode() + b"\r\n" + body


def response_bytes(status: int = 200, reason: str = "OK", *, body: bytes = b"") -> bytes:
    return (
        f"SIP/2.0 {status} {reason}\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;received=192.0.2.1;rport=5060\r\n"
        'From: "Alice" <sip:alice@example.com>;tag=1928301774\r\n'
        "To: <sip:bob@example.com>;tag=a6c85cf\r\n"
        "Call-ID: a84b4c76e66710@pc33.example.com\r\n"
        "CSeq: 314159 MESSAGE\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


MESSAGE_WITH_MODE = request_bytes(
    extra=[
        ("X-Vidim-Mode", "video"),
        ("X-Vidim-Invite", "<sip:carol@example.com>;mode=audio, <sip:dan@example.com>"),
        ("Content-Type", "text/plain"),
    ],
    body=b"let's talk",
)
