"""URIs: SIP/SIPS parsed into parts, every other scheme kept opaque.

Parts keep their escaped form so that a URI serializes back exactly as it
arrived; :func:`unescape` gives the decoded text when it is needed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

from . import abnf
from .errors import LocalProtocolError, SIPParseError

__all__ = ["URI", "AbsoluteURI", "SipURI", "format_host", "parse_uri", "unescape", "valid_host"]

_SCHEME_RE = re.compile(rf"({abnf.SCHEME}):")
_USER_RE = re.compile(abnf.USER)
_PASSWORD_RE = re.compile(abnf.PASSWORD)
_PARAM_RE = re.compile(rf"({abnf.PARAMCHARS})(?:=({abnf.PARAMCHARS}))?")
_HEADER_RE = re.compile(rf"({abnf.HNAME})=({abnf.HVALUE})")
_HOSTNAME_RE = re.compile(abnf.HOSTNAME)
_IPV4_RE = re.compile(abnf.IPV4)
_OPAQUE_RE = re.compile(rf"{abnf.URIC}+")
_PORT_RE = re.compile(r"[0-9]{1,5}")

Params = tuple[tuple[str, "str | None"], ...]


def unescape(text: str) -> str:
    """Decode %-escapes (RFC 3261 section 19.1.2), keeping invalid ones as they are."""
    return unquote(text, errors="surrogateescape") if "%" in text else text


@lru_cache(maxsize=4096)
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


def _split_hostport(text: str, whole: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SIPParseError(f"unterminated IPv6 reference in URI {whole!r}")
        host, rest = text[: end + 1], text[end + 1 :]
    else:
        host, sep, port_text = text.partition(":")
        rest = sep + port_text
    port: int | None = None
    if rest:
        if not rest.startswith(":") or not _PORT_RE.fullmatch(rest[1:]):
            raise SIPParseError(f"bad host or port in URI {whole!r}")
        port = int(rest[1:])
        if port > 65535:
            raise SIPParseError(f"port out of range in URI {whole!r}")
    if not valid_host(host):
        raise SIPParseError(f"bad host in URI {whole!r}")
    return host, port


@dataclass(frozen=True, slots=True)
class SipURI:
    """A ``sip:`` or ``sips:`` URI (RFC 3261 section 19.1)."""

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
        if not valid_host(self.host):
            raise LocalProtocolError(f"bad host {self.host!r}")
        if self.user is not None and not _USER_RE.fullmatch(self.user):
            raise LocalProtocolError(f"bad user part {self.user!r}")
        if self.port is not None and not 0 < self.port <= 65535:
            raise LocalProtocolError(f"bad port {self.port!r}")
        for name, value in self.params:
            if not _PARAM_RE.fullmatch(name if value is None else f"{name}={value}"):
                raise LocalProtocolError(f"bad URI parameter {name!r}={value!r}")

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
        return SipURI(
            host=self.host,
            scheme=self.scheme,
            user=self.user,
            password=self.password,
            port=self.port,
            params=kept + tuple(params.items()),
            headers=self.headers,
        )

    def without_params_or_headers(self) -> SipURI:
        return SipURI(host=self.host, scheme=self.scheme, user=self.user, port=self.port)

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
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts += [":", self.password]
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts += [":", str(self.port)]
        for name, value in self.params:
            parts += [";", name] if value is None else [";", name, "=", value]
        for i, (name, value) in enumerate(self.headers):
            parts += ["?" if i == 0 else "&", name, "=", value]
        return "".join(parts)


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
    if text.startswith("sip"):
        fast = _fast_sip_uri(text)
        if fast is not None:
            return fast
    match = _SCHEME_RE.match(text)
    if match is None:
        raise SIPParseError(f"malformed URI {text!r}")
    scheme = match.group(1).lower()
    rest = text[match.end() :]
    if scheme not in ("sip", "sips"):
        if not _OPAQUE_RE.fullmatch(rest):
            raise SIPParseError(f"malformed URI {text!r}")
        return AbsoluteURI(scheme=scheme, opaque=rest)
    return _parse_sip_uri(scheme, rest, text)


_FAST_SIP_RE = re.compile(
    r"(sips?):(?:([A-Za-z0-9\-_.!~*'()&=+$,]+)@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)"
    r"(?::([0-9]{1,5}))?((?:;[A-Za-z0-9\-_.!~*'()\[\]/:&+$]+(?:=[A-Za-z0-9\-_.!~*'()\[\]/:&+$]+)?)*)"
)


def _fast_sip_uri(text: str) -> SipURI | None:
    """The common forms (no escapes, password or URI headers), or None."""
    match = _FAST_SIP_RE.fullmatch(text)
    if match is None:
        return None
    scheme, user, host, port_text, params_text = match.groups()
    port = int(port_text) if port_text is not None else None
    if (port is not None and port > 65535) or not valid_host(host):
        return None
    params: tuple[tuple[str, str | None], ...] = ()
    if params_text:
        params = tuple(
            (name, value if eq else None)
            for name, eq, value in (p.partition("=") for p in params_text[1:].split(";"))
        )
    return _build_sip_uri(scheme, user, None, host, port, params, ())


def _build_sip_uri(
    scheme: str,
    user: str | None,
    password: str | None,
    host: str,
    port: int | None,
    params: Params,
    headers: tuple[tuple[str, str], ...],
) -> SipURI:
    # Validated by the parser: skip __post_init__'s checks on the hot path.
    uri = object.__new__(SipURI)
    _set = object.__setattr__
    _set(uri, "host", host)
    _set(uri, "scheme", scheme)
    _set(uri, "user", user)
    _set(uri, "password", password)
    _set(uri, "port", port)
    _set(uri, "params", params)
    _set(uri, "headers", headers)
    return uri


def _parse_sip_uri(scheme: str, rest: str, whole: str) -> SipURI:
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, sep, pw = userinfo.partition(":")
        if not _USER_RE.fullmatch(user):
            raise SIPParseError(f"bad user part in URI {whole!r}")
        if sep:
            if not _PASSWORD_RE.fullmatch(pw):
                raise SIPParseError(f"bad password in URI {whole!r}")
            password = pw
    headers_text = ""
    qmark = rest.find("?")
    if qmark >= 0:
        rest, headers_text = rest[:qmark], rest[qmark + 1 :]
    hostport, *param_texts = rest.split(";")
    host, port = _split_hostport(hostport, whole)
    params: list[tuple[str, str | None]] = []
    for param in param_texts:
        pmatch = _PARAM_RE.fullmatch(param)
        if pmatch is None:
            raise SIPParseError(f"bad parameter {param!r} in URI {whole!r}")
        params.append((pmatch.group(1), pmatch.group(2)))
    headers: list[tuple[str, str]] = []
    if qmark >= 0:
        for header in headers_text.split("&"):
            hmatch = _HEADER_RE.fullmatch(header)
            if hmatch is None:
                raise SIPParseError(f"bad header {header!r} in URI {whole!r}")
            headers.append((hmatch.group(1), hmatch.group(2)))
    return _build_sip_uri(scheme, user, password, host, port, tuple(params), tuple(headers))
