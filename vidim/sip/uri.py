"""URIs: SIP/SIPS parsed into parts, every other scheme kept opaque.

Parts keep their escaped form so that a URI serializes back exactly as it
arrived; :func:`unescape` gives the decoded text when it is needed.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, fields, replace
from urllib.parse import unquote

from . import abnf
from .errors import LocalProtocolError, SIPParseError

__all__ = ["URI", "AbsoluteURI", "SipURI", "format_host", "parse_uri", "unescape", "valid_host"]

_SIP_URI_RE = re.compile(abnf.SIP_URI)
_SCHEME_RE = re.compile(rf"({abnf.SCHEME}):")
_OPAQUE_RE = re.compile(rf"{abnf.URIC}+")
# The parts one by one, for SipURI's checks; the last two also split what _SIP_URI_RE matched.
_USER_RE = re.compile(abnf.USER)
_PASSWORD_RE = re.compile(abnf.PASSWORD)
_HOST_RE = re.compile(abnf.URI_HOST)
_PARAM_RE = re.compile(abnf.URI_PARAM)
_HEADER_RE = re.compile(abnf.URI_HEADER)

Params = tuple[tuple[str, "str | None"], ...]


def unescape(text: str) -> str:
    """Decode %-escapes (RFC 3261 section 19.1.2), keeping invalid ones as they are."""
    return unquote(text, errors="surrogateescape") if "%" in text else text


def valid_host(host: str) -> bool:
    """True for a hostname, an IPv4 address or a bracketed IPv6 reference."""
    if _HOST_RE.fullmatch(host) is None:
        return False
    return not host.startswith("[") or _valid_ipv6_reference(host)


def _valid_ipv6_reference(host: str) -> bool:
    """The one part of a host its grammar leaves to :mod:`ipaddress`: ``[`` IPv6address ``]``."""
    try:
        ipaddress.IPv6Address(host[1:-1])
    except ValueError:
        return False
    return True


def format_host(host: str) -> str:
    """Return ``host`` as a URI host: IPv6 addresses get their brackets."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def _format_param(name: str, value: str | None) -> str:
    return name if value is None else f"{name}={value}"


@dataclass(frozen=True, slots=True)
class SipURI:
    """A ``sip:`` or ``sips:`` URI (RFC 3261 section 19.1), checked when made.

    Immutable and hashable.  Every part is checked against the grammar of
    RFC 3261 section 25 (:mod:`vidim.sip.abnf`); :func:`parse_uri` relies on
    these checks and reports what they refuse as a parse error.
    """

    host: str
    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    port: int | None = None
    #: URI parameters in order, escaped; a flag parameter (``lr``) has value None.
    params: Params = ()
    #: URI headers (``?name=value``) in order, escaped.
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.scheme not in ("sip", "sips"):
            raise LocalProtocolError(f"SipURI scheme must be sip or sips, not {self.scheme!r}")
        if self.user is not None and not _USER_RE.fullmatch(self.user):
            raise LocalProtocolError(f"bad user part {self.user!r}")
        if self.password is not None and not _PASSWORD_RE.fullmatch(self.password):
            raise LocalProtocolError(f"bad password {self.password!r}")
        if not valid_host(self.host):
            raise LocalProtocolError(f"bad host {self.host!r}")
        if self.port is not None and not 0 <= self.port <= 65535:
            raise LocalProtocolError(f"bad port {self.port!r}")
        for name, value in self.params:
            if not _PARAM_RE.fullmatch(";" + _format_param(name, value)):
                raise LocalProtocolError(f"bad URI parameter {name!r}={value!r}")
        for name, value in self.headers:
            if not _HEADER_RE.fullmatch(f"{name}={value}"):
                raise LocalProtocolError(f"bad URI header {name!r}={value!r}")

    @classmethod
    def _from_grammar(
        cls,
        host: str,
        scheme: str,
        user: str | None,
        password: str | None,
        port: int | None,
        params: Params,
        headers: tuple[tuple[str, str], ...],
    ) -> SipURI:
        """A SipURI of parts that :func:`parse_uri` has just matched with ``abnf.SIP_URI``.

        The one way past ``__post_init__``: its checks are that grammar again,
        part by part, and parsing is where URIs are made most (several per message).
        """
        uri = object.__new__(cls)
        for name, value in zip(
            _SIP_URI_FIELDS, (host, scheme, user, password, port, params, headers), strict=True
        ):
            object.__setattr__(uri, name, value)
        return uri

    def param(self, name: str) -> str | None:
        """Return the first parameter ``name`` (case-insensitive), or None."""
        lname = name.lower()
        for key, value in self.params:
            if key.lower() == lname:
                return value
        return None

    def has_param(self, name: str) -> bool:
        lname = name.lower()
        return any(key.lower() == lname for key, _ in self.params)

    def with_params(self, **params: str | None) -> SipURI:
        """Return a copy with parameters set (``None`` for a flag parameter)."""
        lowered = {k.lower() for k in params}
        kept = tuple(p for p in self.params if p[0].lower() not in lowered)
        return replace(self, params=kept + tuple(params.items()))

    def without_params_or_headers(self) -> SipURI:
        return replace(self, password=None, params=(), headers=())

    @property
    def transport(self) -> str | None:
        value = self.param("transport")
        return value.lower() if value is not None else None

    @property
    def address_of_record(self) -> str:
        """``scheme:user@host`` (no port, no parameters): the identity of a user."""
        if self.user is None:
            return f"{self.scheme}:{self.host.lower()}"
        return f"{self.scheme}:{self.user}@{self.host.lower()}"

    def __str__(self) -> str:
        text = f"{self.scheme}:"
        if self.user is not None:
            text += self.user if self.password is None else f"{self.user}:{self.password}"
            text += "@"
        text += self.host
        if self.port is not None:
            text += f":{self.port}"
        text += "".join(";" + _format_param(name, value) for name, value in self.params)
        if self.headers:
            text += "?" + "&".join(f"{name}={value}" for name, value in self.headers)
        return text


@dataclass(frozen=True, slots=True)
class AbsoluteURI:
    """Any other scheme (``tel:``, ``http:``, ``urn:``...), kept opaque."""

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


URI = SipURI | AbsoluteURI


_SIP_URI_FIELDS = tuple(field.name for field in fields(SipURI))


# Cached: a pure function whose results are immutable, and the same URIs come back
# in message after message (Request-URIs, Record-Route, the parties of a dialog):
# bench/core_cpu.py parses 25 URIs per setup, 72% of them hits with 512 entries.
@functools.lru_cache(maxsize=1024)
def parse_uri(text: str) -> URI:
    """Parse a URI as it appears in a Request-URI or inside ``<>``.

    Raises :class:`SIPParseError` (400) when it is malformed.
    """
    match = _SIP_URI_RE.fullmatch(text)
    if match is not None:
        return _sip_uri(match)
    match = _SCHEME_RE.match(text)
    if match is None:
        raise SIPParseError(f"malformed URI {text!r}")
    scheme = match.group(1).lower()
    rest = text[match.end() :]
    if scheme in ("sip", "sips") or not _OPAQUE_RE.fullmatch(rest):
        raise SIPParseError(f"malformed URI {text!r}")
    return AbsoluteURI(scheme=scheme, opaque=rest)


def _sip_uri(match: re.Match[str]) -> SipURI:
    """The SipURI of a match of ``abnf.SIP_URI``: what the grammar leaves, checked here."""
    scheme, user, password, host, port_text, params_text, headers_text = match.group(
        "scheme", "user", "password", "host", "port", "params", "headers"
    )
    port = int(port_text) if port_text is not None else None
    if port is not None and port > 65535:
        raise SIPParseError(f"port out of range in URI {match.string!r}")
    if host.startswith("[") and not _valid_ipv6_reference(host):
        raise SIPParseError(f"bad IPv6 address in URI {match.string!r}")
    # findall gives "" for a flag parameter's absent value (a pvalue is never empty).
    params = tuple([(name, value or None) for name, value in _PARAM_RE.findall(params_text)])
    headers = tuple(_HEADER_RE.findall(headers_text)) if headers_text else ()
    return SipURI._from_grammar(host, scheme.lower(), user, password, port, params, headers)
