"""Stateless forwarding (RFC 3261 section 16.11): pass a request on, and its answers back.

Daemons sharing a state store use it to hand a follow-up command to the
daemon that drives its conference: the request gets one more Via (whose
branch is a function of the request, so that a retransmission is forwarded
with the same branch and the next hop sees the same transaction), its
Max-Forwards goes down by one; an answer coming back through that Via loses
it and goes on to the next Via.  No state is kept between the two.
"""

from __future__ import annotations

import hashlib

from .errors import RemoteProtocolError
from .headers import Via, split_list
from .message import Request, Response
from .transaction import Address, stamp_top_via

__all__ = [
    "FORWARD_BRANCH_PREFIX",
    "forward_request",
    "is_forwarded_answer",
    "unforward_response",
    "via_destination",
]

#: Branches of the Vias added by :func:`forward_request` start with this.
FORWARD_BRANCH_PREFIX = "z9hG4bKvfw"


def forward_request(request: Request, via: Via, source: Address) -> Request:
    """``request`` from ``source`` with ``via`` (its branch made here) on top and one hop less.

    The Via it came with gets ``received``/``rport`` (the address it was seen
    from), as a server transport stamps it: the next hop can answer the
    sender there.  Raises :class:`RemoteProtocolError` (483) when no hop is left.
    """
    max_forwards = request.max_forwards
    if max_forwards is not None and max_forwards <= 0:
        raise RemoteProtocolError("too many hops", status_hint=483)
    top = request.top_via
    # A function of what identifies the transaction (section 16.11): the same
    # request forwarded twice gets the same branch.
    key = f"{top.branch}|{top.sent_by}|{request.method}|{request.uri}|{request.call_id}"
    branch = FORWARD_BRANCH_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:20]
    forwarded = Request(request.method, request.uri, request.headers.copy(), request.body)
    stamp_top_via(forwarded, source)
    forwarded.headers.prepend("Via", str(via.with_params(branch=branch)))
    forwarded.headers.set("Max-Forwards", str(69 if max_forwards is None else max_forwards - 1))
    return forwarded


def is_forwarded_answer(response: Response, host: str, port: int) -> bool:
    """True when ``response`` answers a request this host:port forwarded."""
    top = response.top_via
    branch = top.branch or ""
    return (
        branch.startswith(FORWARD_BRANCH_PREFIX)
        and top.host.strip("[]").lower() == host.lower()
        and top.port == port
    )


def unforward_response(response: Response) -> tuple[Response, Via]:
    """``response`` without its top Via, and the Via it goes to next (section 16.11)."""
    headers = response.headers.copy()
    lines = headers.get_all("Via")
    entries = split_list(lines[0])
    rest = [", ".join(entries[1:])] if len(entries) > 1 else []
    headers.remove("Via")
    for value in [*rest, *lines[1:]]:
        headers.add("Via", value)
    answer = Response(response.status, response.reason, headers, response.body)
    return answer, answer.top_via


def via_destination(via: Via) -> Address:
    """Where a response to this Via goes: ``received``/``rport`` when set (RFC 3581)."""
    host = via.received or via.host.strip("[]")
    port = via.rport or via.port or 5060
    return Address(host, port, via.transport)
