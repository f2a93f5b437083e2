"""Answering a request that failed to parse, when that is possible.

RFC 3261 section 16.3 / 8.2: a malformed request gets 400 (or the status the
parse error suggests) when a response can be built, that is when the Via,
From, To, Call-ID and CSeq it must copy are there and sound.  A request
whose error is elsewhere (a bare CR in a Subject, a duplicate Contact...)
then gets a clear answer with a Warning instead of silence.  ACKs and
responses are never answered.
"""

from __future__ import annotations

from .checks import warning_value
from .errors import LocalProtocolError, SIPParseError
from .headers import canonical_name, parse_cseq, parse_name_addr, parse_via_list
from .ids import new_tag
from .message import Response

__all__ = ["salvage_response"]

_COPIED = ("via", "from", "to", "call-id", "cseq")


def salvage_response(data: bytes, error: SIPParseError, *, warning_host: str) -> Response | None:
    """The response refusing ``data`` for ``error``, or None when none can be built."""
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    text = head.decode("utf-8", "replace")
    lines = [line.rstrip("\r") for line in text.split("\n")]
    start = lines[0].split(" ")
    if len(start) < 3 or start[0] in ("ACK", "") or start[0].startswith("SIP/"):
        return None
    found: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            continue
        key = canonical_name(name.strip()).lower()
        if key in _COPIED:
            found.setdefault(key, []).append(value.strip())
    if any(key not in found for key in _COPIED):
        return None
    if any(len(found[key]) != 1 for key in _COPIED if key != "via"):
        return None
    try:
        for value in found["via"]:
            parse_via_list(value)
        parse_name_addr(found["from"][0])
        to = parse_name_addr(found["to"][0])
        parse_cseq(found["cseq"][0])
        headers = [("Via", value) for value in found["via"]]
        headers += [
            ("From", found["from"][0]),
            ("To", str(to) if to.tag is not None else str(to.with_tag(new_tag()))),
            ("Call-ID", found["call-id"][0]),
            ("CSeq", found["cseq"][0]),
            ("Warning", warning_value(warning_host, error.reason)),
        ]
        status = error.status_hint if 400 <= error.status_hint <= 699 else 400
        return Response(status, None, headers)
    except (SIPParseError, LocalProtocolError):
        return None
