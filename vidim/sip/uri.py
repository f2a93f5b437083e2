"""URIs: SIP/SIPS parsed into parts, every other scheme kept opaque.

Parts keep their escaped form so that a URI serializes back exactly as it
arrived; :func:`unescape` gives the decoded text when it is needed.
"""

from __future__ import annotations

import importlib.machinery
import ipaddress
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

from . import abnf
from .errors import LocalProtocolError, SIPParseError
from .value import ValueType

__all__ = ["URI", "AbsoluteURI", "SipURI", "format_host", "parse_uri", "unescape", "valid_host"]

_SCHEME_RE: Final = re.compile(rf"({abnf.SCHEME}):")
_USER_RE: Final = re.compile(abnf.USER)
_PASSWORD_RE: Final = re.compile(abnf.PASSWORD)
_PARAM_RE: Final = re.compile(rf"({abnf.PARAMCHARS})(?:=({abnf.PARAMCHARS}))?")
_HEADER_RE: Final = re.compile(rf"({abnf.HNAME})=({abnf.HVALUE})")
_HOSTNAME_RE: Final = re.compile(abnf.HOSTNAME)
_IPV4_RE: Final = re.compile(abnf.IPV4)
_OPAQUE_RE: Final = re.compile(rf"{abnf.URIC}+")
_PORT_RE: Final = re.compile(r"[0-9]{1,5}")

Params = tuple[tuple[str, "str | None"], ...]


def unescape(text: str) -> str:
    """Decode %-escapes (RFC 3261 section 19.1.2), keeping invalid ones as they are."""
    return unquote(text, errors="surrogateescape") if "%" in text else text


#: host -> valid_host(host); bounded (hosts come from peers): emptied when full.
_VALID_HOSTS: Final[dict[str, bool]] = {}


def valid_host(host: str) -> bool:
    """True for a hostname, an IPv4 address or a bracketed IPv6 reference."""
    known = _VALID_HOSTS.get(host)
    if known is not None:
        return known
    valid = _check_host(host)
    if len(_VALID_HOSTS) >= 4096:
        _VALID_HOSTS.clear()
    _VALID_HOSTS[host] = valid
    return valid


def _check_host(host: str) -> bool:
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


class SipURI(ValueType):
    """A ``sip:`` or ``sips:`` URI (RFC 3261 section 19.1).

    Immutable and hashable (values are cached and shared between messages).
    A ``__slots__`` class with read-only properties rather than a frozen
    dataclass: the parser builds six of these per message, and a frozen
    dataclass costs three times as much to build (``object.__setattr__`` per
    field).  The constructor validates; the parser, which has validated
    already, goes through :func:`_build_sip_uri`.
    """

    __slots__ = ("_headers", "_host", "_params", "_password", "_port", "_scheme", "_user")
    __match_args__ = ("host", "scheme", "user", "password", "port", "params", "headers")

    _host: str
    _scheme: str
    _user: str | None
    _password: str | None
    _port: int | None
    _params: Params
    _headers: tuple[tuple[str, str], ...]

    def __init__(
        self,
        host: str,
        scheme: str = "sip",
        user: str | None = None,
        password: str | None = None,
        port: int | None = None,
        params: Params = (),
        headers: tuple[tuple[str, str], ...] = (),
        *,
        _trusted: bool = False,
    ) -> None:
        # ``_trusted``: the parts were validated already (the parser, and the
        # copies made from a valid URI); for code inside vidim only.
        if not _trusted:
            if scheme not in ("sip", "sips"):
                raise LocalProtocolError(f"SipURI scheme must be sip or sips, not {scheme!r}")
            if not valid_host(host):
                raise LocalProtocolError(f"bad host {host!r}")
            if user is not None and not _USER_RE.fullmatch(user):
                raise LocalProtocolError(f"bad user part {user!r}")
            if port is not None and not 0 < port <= 65535:
                raise LocalProtocolError(f"bad port {port!r}")
            for name, value in params:
                if not _PARAM_RE.fullmatch(name if value is None else f"{name}={value}"):
                    raise LocalProtocolError(f"bad URI parameter {name!r}={value!r}")
            params = tuple(params)
            headers = tuple(headers)
        self._host = host
        self._scheme = scheme
        self._user = user
        self._password = password
        self._port = port
        self._params = params
        self._headers = headers

    @property
    def host(self) -> str:
        return self._host

    @property
    def scheme(self) -> str:
        return self._scheme

    @property
    def user(self) -> str | None:
        return self._user

    @property
    def password(self) -> str | None:
        return self._password

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def params(self) -> Params:
        """URI parameters in order, escaped; a flag parameter (``lr``) has value None."""
        return self._params

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """URI headers (``?name=value``) in order, escaped."""
        return self._headers

    def _key(self) -> tuple[object, ...]:
        return (
            self._host, self._scheme, self._user, self._password, self._port, self._params,
            self._headers,
        )  # fmt: skip

    def __repr__(self) -> str:
        return (
            f"SipURI(host={self._host!r}, scheme={self._scheme!r}, user={self._user!r}, "
            f"password={self._password!r}, port={self._port!r}, params={self._params!r}, "
            f"headers={self._headers!r})"
        )

    def param(self, name: str) -> str | None:
        """Return the first parameter ``name`` (case-insensitive), or None."""
        lname = name.lower()
        for key, value in self._params:
            if key.lower() == lname:
                return value
        return None

    def has_param(self, name: str) -> bool:
        lname = name.lower()
        return any(key.lower() == lname for key, _ in self._params)

    def with_params(self, **params: str | None) -> SipURI:
        """Return a copy with parameters set (``None`` for a flag parameter).

        Only the new parameters are checked: the rest of the URI was valid.
        """
        for name, value in params.items():
            if not _PARAM_RE.fullmatch(name if value is None else f"{name}={value}"):
                raise LocalProtocolError(f"bad URI parameter {name!r}={value!r}")
        kept = self._params
        if kept:
            lowered = {k.lower() for k in params}
            kept = tuple(p for p in kept if p[0].lower() not in lowered)
        return _build_sip_uri(
            self._scheme, self._user, self._password, self._host, self._port,
            kept + tuple(params.items()), self._headers,
        )  # fmt: skip

    def without_params_or_headers(self) -> SipURI:
        return _build_sip_uri(self._scheme, self._user, None, self._host, self._port, (), ())

    @property
    def transport(self) -> str | None:
        value = self.param("transport")
        return value.lower() if value is not None else None

    @property
    def address_of_record(self) -> str:
        """``scheme:user@host`` (no port, no parameters): the identity of a user."""
        if self._user is None:
            return f"{self._scheme}:{self._host.lower()}"
        return f"{self._scheme}:{self._user}@{self._host.lower()}"

    def __str__(self) -> str:
        # Concatenation: these strings are short, and most URIs have a user,
        # a port and at most one parameter.
        user = self._user
        if user is None:
            text = f"{self._scheme}:{self._host}"
        elif self._password is None:
            text = f"{self._scheme}:{user}@{self._host}"
        else:
            text = f"{self._scheme}:{user}:{self._password}@{self._host}"
        if self._port is not None:
            text += f":{self._port}"
        if self._params:
            for name, value in self._params:
                text += f";{name}" if value is None else f";{name}={value}"
        if self._headers:
            text += "?" + "&".join(f"{name}={value}" for name, value in self._headers)
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
    if text.startswith("sip"):
        fast = _fast_sip_uri(text)
        if fast is not None:
            return fast
    return _parse_uri_slow(text)


def _parse_uri_slow(text: str) -> URI:
    """The general parser: every URI the grammar allows (and no fast path)."""
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


# Fast paths.  These patterns cover the SIP URIs phones and proxies write
# (RFC 3261 section 19.1: lower-case scheme, no password, no %-escapes, no URI
# headers) and are strict enough that a match needs no further check: host
# labels, IPv4 octets and the port range are in the pattern.  Whatever they
# do not match goes to the general parser, which decides; tests/sip/
# test_fast_paths.py checks that both give equal results.
_IPV4_OCTET: Final = r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9]?[0-9])"
# hostname = *( domainlabel "." ) toplabel [ "." ], written so that the regex
# engine does not backtrack inside a label: a label is runs of alphanumerics
# joined by runs of hyphens (the same language as abnf.HOSTNAME).
_FAST_LABEL: Final = r"[A-Za-z0-9]++(?:-++[A-Za-z0-9]++)*+"
_FAST_TOPLABEL: Final = r"[A-Za-z][A-Za-z0-9]*+(?:-++[A-Za-z0-9]++)*+"
#: hostname / IPv4address (RFC 3261 section 25.1), exactly; no IPv6 reference.
_FAST_HOST: Final = (
    rf"(?:{_IPV4_OCTET}(?:\.{_IPV4_OCTET}){{3}}|(?:{_FAST_LABEL}\.)*{_FAST_TOPLABEL}\.?)"
)
#: port = 1*DIGIT, 0-65535, exactly.
_FAST_PORT: Final = r"(?:[0-5]?[0-9]{1,4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
#: A superset of host (IPv6 references included) and of port, for the
#: patterns that capture them: the builders check those with valid_host()
#: (cached per host) and int(), which is cheaper than the exact patterns.
_LOOSE_HOST: Final = r"[A-Za-z0-9\-.]+|\[[0-9A-Fa-f:.]+\]"
_LOOSE_PORT: Final = r"[0-9]{1,5}"
_FAST_PCHAR: Final = rf"[{abnf.UNRESERVED}\[\]/:&+$]"


def _fast_sip_uri_pattern(host: str = _LOOSE_HOST, port: str = _LOOSE_PORT) -> str:
    """``sip(s):[user@]host[:port]*(;param)`` with groups scheme, user, host, port, params."""
    return (
        rf"(sips?):(?:([{abnf.UNRESERVED}&=+$,]++)@)?({host})(?::({port}))?"
        rf"((?:;{_FAST_PCHAR}++(?:={_FAST_PCHAR}++)?)*+)"
    )


_FAST_SIP_RE: Final = re.compile(_fast_sip_uri_pattern())


def _fast_sip_uri(text: str) -> SipURI | None:
    """The common forms, or None for the general parser."""
    if _COMPILED:
        uri = _scan_sip_uri(text)
        if uri is not None:
            return uri
    return _fast_sip_uri_regex(text)


def _fast_sip_uri_regex(text: str) -> SipURI | None:
    """The fast path's regular expression, behind the scanner (and for the tests)."""
    match = _FAST_SIP_RE.fullmatch(text)
    if match is None:
        return None
    scheme, user, host, port, params_text = match.groups()
    return _fast_sip_uri_from_groups(scheme, user, host, port, params_text)


# Hand-written scanners, ahead of the fast regexes: str.find/partition and a
# character-set check per part, which compiled code runs as a loop over the
# characters (ord(text[i]) and a bytes table: no object per character;
# interpreted, str.strip(chars)),
# cost a fraction of a regex match.  A scanner accepts a subset of its regex's
# language (no IPv6, no quoted values...) and gives what the regex path gives;
# for anything else it returns None and the regex path decides
# (tests/sip/test_scanners.py checks both).
_ALNUM_CHARS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


class _CharSet:
    """A set of ASCII characters, for :func:`_only`."""

    __slots__ = ("chars", "table")

    chars: str
    #: 128 octets: 1 at the code of each character of the set, else 0.
    table: bytes

    def __init__(self, chars: str) -> None:
        self.chars = chars
        self.table = bytes(1 if chr(code) in chars else 0 for code in range(128))


#: True when this module runs compiled (mypyc).  Interpreted, a scanner's
#: dozen str calls cost more than one regex match: the parsers call the
#: scanners only when compiled (the tests call them in both builds), and
#: the character check is str.strip(chars) instead of a loop.
_COMPILED: Final = __file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))

_DIGIT_SET: Final = _CharSet("0123456789")
#: unreserved (abnf.UNRESERVED) plus "&=+$," : the user part of _fast_sip_uri_pattern.
_USER_SET: Final = _CharSet(_ALNUM_CHARS + "-_.!~*'()&=+$,")
#: _FAST_PCHAR: paramchar without escapes.
_PCHAR_SET: Final = _CharSet(_ALNUM_CHARS + "-_.!~*'()[]/:&+$")
#: _LOOSE_HOST without the IPv6 reference.
_HOST_SET: Final = _CharSet(_ALNUM_CHARS + "-.")


def _only(text: str, charset: _CharSet) -> bool:
    """True when ``text`` is not empty and every character of it is in ``charset``."""
    if not text:
        return False
    if not _COMPILED:
        return not text.strip(charset.chars)
    table = charset.table
    for i in range(len(text)):
        code = ord(text[i])
        if code >= 128 or not table[code]:
            return False
    return True


def _scan_port(port: str) -> bool:
    """1 to 5 ASCII digits (_LOOSE_PORT)."""
    return len(port) <= 5 and _only(port, _DIGIT_SET)


def _scan_sip_uri(text: str) -> SipURI | None:
    """:data:`_FAST_SIP_RE`'s URIs without IPv6, scanned; None: not one of them."""
    if text.startswith("sip:"):
        scheme = "sip"
        pos = 4
    elif text.startswith("sips:"):
        scheme = "sips"
        pos = 5
    else:
        return None
    user: str | None = None
    at = text.find("@", pos)
    if at >= 0:
        user = text[pos:at]
        if not _only(user, _USER_SET):
            return None
        pos = at + 1
    semi = text.find(";", pos)
    if semi < 0:
        hostport = text[pos:]
        params_text = ""
    else:
        hostport = text[pos:semi]
        params_text = text[semi:]
        for item in params_text[1:].split(";"):
            name, eq, value = item.partition("=")
            if not _only(name, _PCHAR_SET) or (eq and not _only(value, _PCHAR_SET)):
                return None
    host, colon, port = hostport.partition(":")
    if not _only(host, _HOST_SET):
        return None
    if colon:
        if not _scan_port(port):
            return None
        return _fast_sip_uri_from_groups(scheme, user, host, port, params_text)
    return _fast_sip_uri_from_groups(scheme, user, host, None, params_text)


#: port text -> its number (bounded: ports come from peers).
_PORT_NUMBERS: Final[dict[str, int]] = {}


def _port_number(port: str) -> int:
    """int(port) for 1-5 ASCII digits, from a cache: the same few ports recur."""
    number = _PORT_NUMBERS.get(port)
    if number is None:
        number = int(port)
        if len(_PORT_NUMBERS) < 1024:
            _PORT_NUMBERS[port] = number
    return number


def _fast_sip_uri_from_groups(
    scheme: str, user: str | None, host: str, port: str | None, params_text: str
) -> SipURI | None:
    """Build the URI a :func:`_fast_sip_uri_pattern` match describes (None: not valid)."""
    if not valid_host(host):
        return None
    port_number = None
    if port is not None:
        port_number = _port_number(port)
        if port_number > 65535:
            return None
    params: Params = ()
    if params_text:
        if params_text.find(";", 1) < 0:  # one parameter (transport, lr): the usual case
            name, eq, value = params_text[1:].partition("=")
            params = ((name, value if eq else None),)
        else:
            items: list[tuple[str, str | None]] = []
            for item in params_text[1:].split(";"):
                name, eq, value = item.partition("=")
                items.append((name, value if eq else None))
            params = tuple(items)
    return SipURI(host, scheme, user, None, port_number, params, (), _trusted=True)


def _build_sip_uri(
    scheme: str,
    user: str | None,
    password: str | None,
    host: str,
    port: int | None,
    params: Params,
    headers: tuple[tuple[str, str], ...],
) -> SipURI:
    """A SipURI from parts the parser has validated (the constructor's checks skipped)."""
    return SipURI(host, scheme, user, password, port, params, headers, _trusted=True)


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
