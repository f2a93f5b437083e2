"""URIs: SIP/SIPS parsed into parts, every other scheme kept opaque.

Parts keep their escaped form so that a URI serializes back exactly as it
arrived; :func:`unescape` gives the decoded text when it is needed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from urllib.parse import unquote

from . import abnf
from .errors import LocalProtocolError, SIPParseError

__all__ = ["URI", "AbsoluteURI", "SipURI", "format_host", "parse_uri", "unescape", "valid_host"]

_SCHEME_RE = re.compile(rf"({abnf.SCHEME}):")
_USER_RE = re.compile(abnf.USER)
_PASSWORD_RE = re.compile(abnf.PASSWORD)
_PARAM_RE = re.compile(rf"{abnf.PARAMCHARS}(?:={abnf.PARAMCHARS})?")
_HEADER_RE = re.compile(rf"{abnf.HNAME}={abnf.HVALUE}")
_HOSTNAME_RE = re.compile(abnf.HOSTNAME)
_IPV4_RE = re.compile(abnf.IPV4)
_OPAQUE_RE = re.compile(rf"{abnf.URIC}+")
_PORT_RE = re.compile(r"[0-9]{1,5}")

Params = tuple[tuple[str, "str | None"], ...]


def unescape(text: str) -> str:
    """Decode %-escapes (RFC 3261 section 19.1.2), keeping invalid ones as they are."""
    return unquote(text, errors="surrogateescape") if "%" in text else text


def valid_host(host: str) -> bool:
    """True for a hostname, an IPv4 address or a bracketed IPv6 reference."""
    if host.startswith("["):
        if not host.endswith("]"):
            return False
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    if _IPV4_RE.fullmatch(host):
        return all(int(part) <= 255 for part in host.split("."))
    return _HOSTNAME_RE.fullmatch(host) is not None


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
            if not _PARAM_RE.fullmatch(_format_param(name, value)):
                raise LocalProtocolError(f"bad URI parameter {name!r}={value!r}")
        for name, value in self.headers:
            if not _HEADER_RE.fullmatch(f"{name}={value}"):
                raise LocalProtocolError(f"bad URI header {name!r}={value!r}")

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


def parse_uri(text: str) -> URI:
    """Parse a URI as it appears in a Request-URI or inside ``<>``.

    Raises :class:`SIPParseError` (400) when it is malformed.
    """
    match = _SCHEME_RE.match(text)
    if match is None:
        raise SIPParseError(f"malformed URI {text!r}")
    scheme = match.group(1).lower()
    rest = text[match.end() :]
    if scheme not in ("sip", "sips"):
        if not _OPAQUE_RE.fullmatch(rest):
            raise SIPParseError(f"malformed URI {text!r}")
        return AbsoluteURI(scheme=scheme, opaque=rest)
    try:
        return _parse_sip_uri(scheme, rest)
    except LocalProtocolError as exc:  # a part that SipURI refuses
        raise SIPParseError(f"{exc.reason} in URI {text!r}") from None


def _parse_sip_uri(scheme: str, rest: str) -> SipURI:
    """``[userinfo "@"] hostport uri-parameters [headers]``, split into the parts SipURI checks."""
    user: str | None = None
    password: str | None = None
    userinfo, at, hostpart = rest.partition("@")
    if at:
        user, colon, pw = userinfo.partition(":")
        password = pw if colon else None
        rest = hostpart
    rest, qmark, headers_text = rest.partition("?")
    hostport, *param_texts = rest.split(";")
    host, port = _split_hostport(hostport)
    params = tuple(_split_param(param) for param in param_texts)
    headers: list[tuple[str, str]] = []
    if qmark:
        for header in headers_text.split("&"):
            name, equals, value = header.partition("=")
            if not equals:
                raise LocalProtocolError(f"bad URI header {header!r}")
            headers.append((name, value))
    return SipURI(host, scheme, user, password, port, params, tuple(headers))


def _split_param(text: str) -> tuple[str, str | None]:
    name, equals, value = text.partition("=")
    return (name, value if equals else None)


def _split_hostport(text: str) -> tuple[str, int | None]:
    """``host [":" port]``; the host is checked by SipURI."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise LocalProtocolError("unterminated IPv6 reference")
        host, rest = text[: end + 1], text[end + 1 :]
    else:
        host, colon, port_text = text.partition(":")
        rest = colon + port_text
    if not rest:
        return host, None
    if not rest.startswith(":") or not _PORT_RE.fullmatch(rest[1:]):
        raise LocalProtocolError(f"bad host or port {text!r}")
    return host, int(rest[1:])
