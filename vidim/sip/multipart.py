"""MIME multipart bodies (RFC 2046 section 5.1), as SIP uses them.

vidim needs them both ways: RFC 5365/5366 requests carry an SDP part and an
``application/resource-lists+xml`` part in one ``multipart/mixed`` body.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import LocalProtocolError, SIPParseError
from .headers import Headers, MediaType, parse_media_type

__all__ = ["BodyPart", "build_multipart", "new_boundary", "parse_multipart"]


@dataclass(frozen=True, slots=True)
class BodyPart:
    headers: Headers
    body: bytes

    @property
    def content_type(self) -> MediaType | None:
        value = self.headers.get("content-type")
        return parse_media_type(value) if value is not None else None


def new_boundary() -> str:
    return "vidim-" + secrets.token_hex(12)


def parse_multipart(body: bytes, boundary: str) -> list[BodyPart]:
    """Split ``body`` at ``--boundary`` lines; the preamble and epilogue are dropped."""
    delimiter = b"--" + boundary.encode("ascii", "replace")
    chunks = body.split(delimiter)
    if len(chunks) < 3:
        raise SIPParseError("multipart body without its boundaries")
    parts: list[BodyPart] = []
    # chunks[0] is the preamble; the last chunk starts with "--" (close delimiter).
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        # The CRLF that precedes a delimiter belongs to the delimiter.
        if chunk.endswith(b"\r\n"):
            chunk = chunk[:-2]
        elif chunk.endswith(b"\n"):
            chunk = chunk[:-1]
        head, sep, part_body = chunk.partition(b"\r\n\r\n")
        if not sep:
            head, sep, part_body = chunk.partition(b"\n\n")
        if not sep:
            if chunk.strip():
                raise SIPParseError("multipart part without a blank line after its headers")
            head, part_body = b"", b""
        headers = Headers()
        text = head.decode("utf-8", "surrogateescape")
        for line in text.replace("\r\n", "\n").split("\n"):
            if not line.strip():
                continue
            name, colon, value = line.partition(":")
            if not colon:
                raise SIPParseError(f"malformed header {line!r} in multipart body")
            try:
                headers.add(name.strip(), value)
            except LocalProtocolError as exc:
                raise SIPParseError(f"bad header {line!r} in multipart body") from exc
        parts.append(BodyPart(headers=headers, body=part_body))
    else:
        raise SIPParseError("multipart body without its closing boundary")
    return parts


def build_multipart(
    parts: Iterable[tuple[str, bytes]], boundary: str | None = None
) -> tuple[str, bytes]:
    """Build a ``multipart/mixed`` body from (content type, body) pairs.

    Returns the Content-Type value (with the boundary) and the body.
    """
    boundary = boundary or new_boundary()
    delimiter = b"--" + boundary.encode("ascii")
    out = []
    for ctype, part_body in parts:
        if delimiter in part_body:
            raise LocalProtocolError("a body part contains the multipart boundary")
        out.append(
            delimiter
            + b"\r\nContent-Type: "
            + ctype.encode("ascii")
            + b"\r\n\r\n"
            + part_body
            + b"\r\n"
        )
    out.append(delimiter + b"--\r\n")
    return f"multipart/mixed;boundary={boundary}", b"".join(out)
