"""Where and how a request goes: RFC 3263 section 4.1 without DNS, RFC 3261 section 18.1.1.

A UAC that has a URI to send to (a Request-URI, a proxy, a dialog's first
route or remote target) must pick a transport, a host and a port, then write
the transport it picked into the top Via of its request.  The rules are
small and have nothing to do with sockets::

    destination = request_destination(request, uri)
    sent_over(request, destination.transport)

What is left to the I/O layer: locating a host name (RFC 3263 section 4.2,
:mod:`vidim.sip.locate`, fed by :mod:`vidim.aio.resolver`'s DNS answers; the
destination's :attr:`Address.lookup` says which records to start with) and
opening or reusing the connection.  Which transports it offers the core is
told in its configuration (TLS only when the server has a TLS listener:
:func:`sendable_transports`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from .errors import LocalProtocolError, SIPParseError
from .message import Request
from .transaction import Address
from .uri import URI, SipURI

__all__ = [
    "MAX_UDP_REQUEST",
    "SENDABLE_TRANSPORTS",
    "request_destination",
    "sendable_transports",
    "sent_over",
    "uri_destination",
]

#: RFC 3261 section 18.1.1: "If a request ... is larger than 1300 bytes and
#: the path MTU is unknown, the request MUST be sent using an RFC 2914
#: congestion controlled transport protocol, such as TCP."  1300 leaves room
#: for IP and UDP headers below the usual 1500-byte Ethernet MTU.
MAX_UDP_REQUEST: Final = 1300

#: The transports vidim can always send over; TLS too with a TLS listener
#: (:func:`sendable_transports`).
SENDABLE_TRANSPORTS: Final = frozenset({"UDP", "TCP"})
_WITH_TLS: Final = SENDABLE_TRANSPORTS | {"TLS"}

#: RFC 3261 section 19.1.2: the default port of each transport.
_DEFAULT_PORTS: Final = {"TLS": 5061, "TLS-SCTP": 5061, "WSS": 443, "WS": 80}


def uri_destination(uri: URI, *, size: int = 0, default_transport: str | None = None) -> Address:
    """The transport, host and port a request for ``uri`` goes to.

    RFC 3263 section 4.1 for an IP literal or a host name with no NAPTR
    lookup: ``transport=`` when the URI names one; TLS for ``sips:``
    (``transport=tcp`` included: TLS runs over TCP); else
    ``default_transport`` (a dialog's transport, when its remote target names
    none: see :attr:`Dialog.transport`) or UDP.  Then RFC 3261 section 18.1.1:
    a request of more than :data:`MAX_UDP_REQUEST` bytes (``size``) that would
    go over UDP goes over TCP instead, unless the URI says ``transport=udp``.
    ``maddr`` overrides the host (RFC 3261 section 19.1.1); the port is the
    URI's, or its transport's default (section 19.1.2).

    Raises:
        LocalProtocolError: ``uri`` is not a ``sip:`` or ``sips:`` URI.
    """
    if not isinstance(uri, SipURI):
        raise LocalProtocolError(f"cannot send to a non-SIP URI {str(uri)!r}")
    named = maddr = None
    for key, value in uri.params:  # one pass: this runs for every request sent
        lowered = key.lower()
        if lowered == "transport" and named is None and value:
            named = value.lower()
        elif lowered == "maddr" and maddr is None:
            maddr = value
    host = maddr or uri.host
    host = host[1:-1] if host.startswith("[") else host
    if uri.scheme == "sips" and named in (None, "tcp", "tls"):
        transport = "TLS"
    elif named is not None:
        transport = named.upper()
    else:
        transport = (default_transport or "UDP").upper()
    if transport == "UDP" and named != "udp" and size > MAX_UDP_REQUEST:
        transport = "TCP"
        named = "tcp"  # fixed by the size: NAPTR may not choose UDP again
    port = uri.port or _DEFAULT_PORTS.get(transport, 5060)
    lookup = _lookup(uri.port, named is None and not default_transport)
    return Address(host, port, transport, lookup)


def _lookup(port: int | None, transport_free: bool) -> str:
    """RFC 3263 section 4.2 (see :attr:`Address.lookup`): what a host name is looked up with.

    A given port: A/AAAA only; a transport fixed (named, a dialog's,
    or a size over :data:`MAX_UDP_REQUEST`) without a port: SRV; else NAPTR.
    """
    if port:
        return "A"
    return "NAPTR" if transport_free else "SRV"


def sendable_transports(*, tls: bool) -> frozenset[str]:
    """The transports a core may send over: UDP and TCP, and TLS when ``tls``.

    ``tls``: the I/O layer has a TLS listener (the core's configuration says
    so, e.g. ``AllocatorConfig.tls_port``).  A destination over any other
    transport is refused by the core, never sent in plain text.
    """
    return _WITH_TLS if tls else SENDABLE_TRANSPORTS


def request_destination(
    request: Request, uri: URI, *, default_transport: str | None = None
) -> Address:
    """:func:`uri_destination` for ``request``: its size is measured only when it counts.

    That is when it would go over UDP without the URI saying so.
    """
    destination = uri_destination(uri, default_transport=default_transport)
    if (
        destination.transport == "UDP"
        and isinstance(uri, SipURI)
        and uri.transport is None
        and len(request.to_bytes()) > MAX_UDP_REQUEST
    ):
        lookup = "SRV" if destination.lookup == "NAPTR" else destination.lookup
        return replace(destination, transport="TCP", lookup=lookup)
    return destination


def sent_over(
    request: Request, transport: str, *, written: str | None = None, port: int | None = None
) -> None:
    """Write ``transport`` into the top Via of ``request``, a request we originate.

    RFC 3261 section 18.1.1: "If this causes a change in the transport
    protocol from the one indicated in the top Via, the value in the top
    Via MUST be changed."  Our requests carry one Via, the one we wrote; the
    sent-by port is kept (vidim's UDP and TCP listen on the same port), or
    becomes ``port`` when given (the TLS listener's own port: where a peer
    opens a new connection for the answers if this one is lost, RFC 3261
    section 18.2.2).  ``written``: the transport the caller wrote that Via
    with, when it knows it; the same transport then leaves the request as it
    is, unparsed.

    Raises:
        LocalProtocolError: the request has no Via, or more than one (it is
            not one we originate).
    """
    transport = transport.upper()
    if written is not None and written.upper() == transport and port is None:
        return
    try:
        vias = request.via
    except SIPParseError as error:
        raise LocalProtocolError(f"cannot rewrite the Via: {error.reason}") from None
    if len(vias) != 1:
        raise LocalProtocolError(f"a request we originate has one Via, not {len(vias)}")
    via = vias[0]
    if via.transport.upper() != transport or (port is not None and via.port != port):
        sent_by_port = via.port if port is None else port
        request.headers.set("Via", str(replace(via, transport=transport, port=sent_by_port)))
