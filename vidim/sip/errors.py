"""The errors of the SIP core.

As in h11, errors are split by whose fault they are: a
:class:`LocalProtocolError` means the caller misused the API or built a bad
message; a :class:`RemoteProtocolError` means the peer sent something we must
refuse, and carries the status a server should answer with (``status_hint``)
plus a short reason fit for a ``Warning`` header.  Any other exception type
escaping the core is a bug.
"""

from __future__ import annotations

__all__ = [
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "RequestRejectedError",
    "SIPParseError",
]


class ProtocolError(Exception):
    """Base of every error the SIP core raises on purpose."""

    status_hint: int
    reason: str
    headers: tuple[tuple[str, str], ...]

    def __init__(
        self,
        reason: str,
        *,
        status_hint: int = 400,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_hint = status_hint
        #: Extra headers the error response should carry (``Unsupported``,
        #: ``Accept``...), as (name, value) pairs.
        self.headers = headers

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, status_hint={self.status_hint})"


class LocalProtocolError(ProtocolError):
    """The caller asked for something the protocol forbids."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something we must refuse; ``status_hint`` says how."""


class SIPParseError(RemoteProtocolError):
    """The bytes are not a SIP message we can accept.

    ``status_hint`` is 400 unless a more precise answer exists (505 for an
    unknown SIP version, 513 for an oversize message).  A response that fails
    to parse has no answer: it is discarded (RFC 3261 section 18.1.2).
    """


class RequestRejectedError(RemoteProtocolError):
    """A well-formed request that this server cannot process (416, 420, 415, 406).

    Raised by :func:`vidim.sip.check_request`, never by the parser.
    """
