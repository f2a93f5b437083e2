"""Header names, the header container and the typed header values.

Headers are kept as they arrived (one ``(name, value)`` line per header line,
unfolded), so that unknown headers pass through untouched; the values the
protocol needs (Via, From/To, CSeq...) are parsed into small frozen types on
demand and cached until that header changes.  Each parser follows the
grammar of RFC 3261 section 25, written as regular expressions in
:mod:`vidim.sip.abnf`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from . import abnf
from .errors import LocalProtocolError, SIPParseError
from .uri import URI, parse_uri, valid_host

__all__ = [
    "CSeq",
    "Headers",
    "MediaType",
    "NameAddr",
    "Params",
    "Via",
    "canonical_name",
    "format_params",
    "parse_content_length",
    "parse_cseq",
    "parse_max_forwards",
    "parse_media_type",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_params",
    "parse_token_list",
    "parse_via_list",
    "quote",
    "split_list",
]

T = TypeVar("T")
Params = tuple[tuple[str, "str | None"], ...]

# RFC 3261 section 7.3.3 and later RFCs' compact forms.
COMPACT_FORMS: Final = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "u": "Allow-Events",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
    "y": "Identity",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "n": "Identity-Info",
}
_KNOWN: Final = [
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info",
    "Allow", "Allow-Events", "Authentication-Info", "Authorization", "Call-ID",
    "Call-Info", "Contact", "Content-Disposition", "Content-Encoding",
    "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date", "Error-Info",
    "Event", "Expires", "From", "Identity", "Identity-Info", "In-Reply-To",
    "Max-Forwards", "Min-Expires", "Min-SE", "MIME-Version", "Organization", "Path",
    "P-Asserted-Identity", "P-Preferred-Identity", "Priority", "Proxy-Authenticate",
    "Proxy-Authorization", "Proxy-Require", "RAck", "Reason", "Record-Route",
    "Refer-To", "Referred-By", "Reject-Contact", "Reply-To", "Request-Disposition",
    "Require", "Retry-After", "Route", "RSeq", "Server", "Service-Route",
    "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject", "Subscription-State",
    "Supported", "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning",
    "WWW-Authenticate", "X-Vidim-Mode", "X-Vidim-Invite", "X-Vidim-Conference",
    "X-Vidim-Participants",
]  # fmt: skip
_CANONICAL: Final = {name.lower(): name for name in _KNOWN}
_CANONICAL.update(COMPACT_FORMS)
#: A known name or compact form -> (its key: the canonical name in lower case, the
#: canonical name); in lower case, and also in the spellings names usually come in
#: (canonical, compact in capitals), which then need no lower().
_KNOWN_NAMES: Final = {name: (cname.lower(), cname) for name, cname in _CANONICAL.items()}
_KNOWN_NAMES.update({cname: (cname.lower(), cname) for cname in _KNOWN})
_KNOWN_NAMES.update({compact.upper(): _KNOWN_NAMES[compact] for compact in COMPACT_FORMS})

#: Headers whose value is a comma-separated list (RFC 3261 section 7.3.1).
LIST_HEADERS: Final = frozenset(
    name.lower()
    for name in (
        "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
        "Allow-Events", "Call-Info", "Contact", "Content-Encoding", "Content-Language",
        "Error-Info", "In-Reply-To", "Path", "P-Asserted-Identity", "Proxy-Require",
        "Record-Route", "Require", "Route", "Service-Route", "Supported", "Unsupported",
        "Via", "Warning", "X-Vidim-Invite",
    )
)  # fmt: skip
#: Headers that may appear at most once (RFC 3261 section 20, "single value").
SINGLE_HEADERS: Final = (
    "call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type"
)  # fmt: skip


TOKEN_RE = re.compile(abnf.TOKEN)
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)
_GENERIC_PARAM_RE = re.compile(abnf.GENERIC_PARAM)
_GENERIC_PARAMS_RE = re.compile(abnf.GENERIC_PARAMS)
_NAME_ADDR_RE = re.compile(abnf.NAME_ADDR)
_VIA_PARM_RE = re.compile(abnf.VIA_PARM)
_CSEQ_RE = re.compile(abnf.CSEQ)
_MEDIA_TYPE_RE = re.compile(abnf.MEDIA_TYPE)
_DIGITS_RE = re.compile(r"[0-9]+")
#: The characters that split_list() looks at.
_LIST_SYNTAX_RE = re.compile(r'[",<>\\]')
#: What a header value cannot hold: CR, LF and the other controls (HTAB is allowed).
CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def canonical_name(name: str) -> str:
    """Return the usual spelling of a header name, expanding compact forms."""
    return _CANONICAL.get(name.lower(), name)


def _key(name: str) -> str:
    """The lower-case canonical name: what header names are compared by."""
    known = _KNOWN_NAMES.get(name) or _KNOWN_NAMES.get(name.lower())
    return name.lower() if known is None else known[0]


def quote(text: str) -> str:
    """Return ``text`` as a SIP quoted-string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(text: str) -> str:
    inner = text[1:-1]
    return _QUOTED_PAIR_RE.sub(r"\1", inner) if "\\" in inner else inner


def split_list(value: str) -> list[str]:
    """Split a header value at the commas that are outside quotes and ``<>``.

    Empty elements are an error: ``a,,b`` is not a list of SIP values.
    """
    if "," not in value:  # one element, whatever it holds: left to its own parser
        if not value.strip():
            raise SIPParseError("empty header value where a list was expected")
        return [value.strip()]
    items: list[str] = []
    start = 0
    in_quotes = in_angle = False
    escaped_until = 0  # in quotes, a backslash escapes the character after it
    for match in _LIST_SYNTAX_RE.finditer(value):
        i = match.start()
        char = value[i]
        if i < escaped_until:
            continue
        if in_quotes:
            if char == "\\":
                escaped_until = i + 2
            elif char == '"':
                in_quotes = False
        elif char == '"':
            in_quotes = True
        elif char == "<":
            in_angle = True
        elif char == ">":
            in_angle = False
        elif char == "," and not in_angle:
            items.append(value[start:i])
            start = i + 1
    if in_quotes:
        raise SIPParseError(f"unterminated quoted string in {value!r}")
    items.append(value[start:])
    stripped = [item.strip() for item in items]
    if not all(stripped):
        raise SIPParseError(f"empty element in list {value!r}")
    return stripped


def parse_params(text: str, context: str) -> Params:
    """Parse ``*( SEMI generic-param )``; the whole of ``text`` must be consumed."""
    text = text.rstrip()
    if _GENERIC_PARAMS_RE.fullmatch(text) is None:
        raise SIPParseError(f"bad parameters {text!r} in {context}")
    return _split_params(text)


def _fullmatch(pattern: re.Pattern[str], text: str, what: str) -> re.Match[str]:
    """``pattern`` matched on the whole of ``text``, or a SIPParseError about ``what``.

    The error says "bad parameters" when the match stopped at a parameter.
    """
    match = pattern.fullmatch(text)
    if match is not None:
        return match
    prefix = pattern.match(text)
    rest = text[prefix.end() :] if prefix is not None else ""
    if rest.startswith(";"):
        raise SIPParseError(f"bad parameters {rest!r} in {what}")
    raise SIPParseError(f"malformed {what}")


def _split_params(text: str) -> Params:
    """The (name, value) pairs of parameters ``abnf.GENERIC_PARAMS`` has matched."""
    if not text:
        return ()
    # findall gives "" for a flag parameter's absent value (a gen-value is never empty).
    return tuple([(name, value or None) for name, value in _GENERIC_PARAM_RE.findall(text)])


def format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def _param(params: Params, name: str) -> str | None:
    """The value of the first parameter ``name``, compared case-insensitively."""
    lname = name.lower()
    for key, value in params:
        if key.lower() == lname:
            return value
    return None


def _has_param(params: Params, name: str) -> bool:
    lname = name.lower()
    return any(key.lower() == lname for key, _ in params)


@dataclass(frozen=True, slots=True)
class NameAddr:
    """A From, To, Contact, Route... value: display name, URI and parameters."""

    uri: URI
    display_name: str | None = None
    #: Header parameters (``tag``, ``expires``...) as written, quoted values kept quoted.
    params: Params = ()

    @property
    def tag(self) -> str | None:
        return _param(self.params, "tag")

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    def has_param(self, name: str) -> bool:
        return _has_param(self.params, name)

    def with_tag(self, tag: str) -> NameAddr:
        if not TOKEN_RE.fullmatch(tag):
            raise LocalProtocolError(f"a tag must be a token, not {tag!r}")
        kept = tuple(p for p in self.params if p[0].lower() != "tag")
        return NameAddr(self.uri, self.display_name, (*kept, ("tag", tag)))

    def __str__(self) -> str:
        if self.display_name is not None:
            return f"{quote(self.display_name)} <{self.uri}>{format_params(self.params)}"
        return f"<{self.uri}>{format_params(self.params)}"


def parse_name_addr(value: str) -> NameAddr:
    """Parse ``( name-addr / addr-spec ) *( SEMI param )`` (RFC 3261 section 20.10)."""
    match = _fullmatch(_NAME_ADDR_RE, value.strip(), f"name-addr {value!r}")
    quoted, tokens, uri_text, spec, params_text = match.group(
        "quoted", "tokens", "uri", "spec", "params"
    )
    uri = parse_uri(uri_text if spec is None else spec)
    display = _unquote(quoted) if quoted is not None else tokens
    return NameAddr(uri, display, _split_params(params_text))


def parse_name_addr_list(value: str) -> list[NameAddr]:
    return [parse_name_addr(item) for item in split_list(value)]


@dataclass(frozen=True, slots=True)
class Via:
    """One Via entry (RFC 3261 section 20.42)."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()

    @property
    def branch(self) -> str | None:
        return _param(self.params, "branch")

    @property
    def received(self) -> str | None:
        return _param(self.params, "received")

    @property
    def rport(self) -> int | None:
        value = _param(self.params, "rport")
        return int(value) if value and value.isdigit() else None

    @property
    def has_rport(self) -> bool:
        return _has_param(self.params, "rport")

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return (self.host.lower(), self.port)

    @property
    def is_rfc3261_branch(self) -> bool:
        """True when the branch carries the magic cookie and something after it."""
        branch = self.branch
        return branch is not None and branch.startswith("z9hG4bK") and len(branch) > 7

    def with_params(self, **params: str | None) -> Via:
        lowered = {k.lower() for k in params}
        kept = tuple(p for p in self.params if p[0].lower() not in lowered)
        return Via(self.transport, self.host, self.port, kept + tuple(params.items()))

    def __str__(self) -> str:
        host = self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {host}{port}{format_params(self.params)}"


def _parse_via(text: str, value: str) -> Via:
    """One via-parm (``text``) of the Via line ``value``."""
    match = _fullmatch(_VIA_PARM_RE, text, f"Via {value!r}")
    name, version, transport, host, port_text, params_text = match.group(
        "protocol", "version", "transport", "host", "port", "params"
    )
    if name.upper() != "SIP" or version != "2.0":
        raise SIPParseError(f"Via with unknown protocol {name}/{version}")
    port = int(port_text) if port_text is not None else None
    if port is not None and port > 65535:
        raise SIPParseError(f"Via port out of range in {value!r}")
    params = _split_params(params_text)
    for key, pvalue in params:
        lkey = key.lower()
        if lkey == "ttl" and (pvalue is None or not pvalue.isdigit() or int(pvalue) > 255):
            raise SIPParseError(f"Via ttl out of range in {value!r}")
        if lkey == "rport" and pvalue is not None and (not pvalue.isdigit() or int(pvalue) > 65535):
            raise SIPParseError(f"bad Via rport in {value!r}")
        if lkey == "branch" and pvalue is None:
            raise SIPParseError(f"Via branch without value in {value!r}")
    if host.startswith("[") and not valid_host(host):
        raise SIPParseError(f"bad Via host in {value!r}")
    return Via(transport.upper(), host, port, params)


def parse_via_list(value: str) -> list[Via]:
    return [_parse_via(item, value) for item in split_list(value)]


@dataclass(frozen=True, slots=True)
class CSeq:
    """The CSeq header: sequence number and method."""

    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(value: str) -> CSeq:
    match = _CSEQ_RE.fullmatch(value)
    if match is None:
        raise SIPParseError(f"malformed CSeq {value!r}")
    seq = int(match.group(1))
    if seq >= 2**31:
        raise SIPParseError(f"CSeq number {seq} is not below 2**31")
    return CSeq(seq, match.group(2))


@dataclass(frozen=True, slots=True)
class MediaType:
    """A Content-Type value: type, subtype and parameters."""

    type: str
    subtype: str
    params: Params = ()

    @property
    def mime(self) -> str:
        """``type/subtype`` in lower case, for comparisons."""
        return f"{self.type}/{self.subtype}".lower()

    def param(self, name: str) -> str | None:
        value = _param(self.params, name)
        if value is not None and value.startswith('"'):
            return _unquote(value)
        return value

    def __str__(self) -> str:
        return f"{self.type}/{self.subtype}{format_params(self.params)}"


def parse_media_type(value: str) -> MediaType:
    match = _fullmatch(_MEDIA_TYPE_RE, value.rstrip(), f"media type {value!r}")
    params_text = match.group("params")
    return MediaType(match.group(1), match.group(2), _split_params(params_text))


def parse_max_forwards(value: str) -> int:
    if not _DIGITS_RE.fullmatch(value):
        raise SIPParseError(f"malformed Max-Forwards {value!r}")
    number = int(value)
    if number > 255:
        raise SIPParseError(f"Max-Forwards {number} is above 255")
    return number


def parse_content_length(value: str) -> int:
    if not _DIGITS_RE.fullmatch(value):
        raise SIPParseError(f"malformed Content-Length {value!r}")
    return int(value)


def parse_token_list(value: str) -> list[str]:
    items = split_list(value)
    for item in items:
        if not TOKEN_RE.fullmatch(item):
            raise SIPParseError(f"expected a token, got {item!r}")
    return items


def _checked_name(name: str) -> tuple[str, str]:
    """(key, canonical spelling) of a header name; raises if it is not a token."""
    known = _KNOWN_NAMES.get(name) or _KNOWN_NAMES.get(name.lower())
    if known is not None:
        return known
    if not TOKEN_RE.fullmatch(name):
        raise LocalProtocolError(f"bad header name {name!r}")
    return name.lower(), name


class Headers:
    """An ordered list of ``(name, value)`` header lines, looked up by name in any case.

    Names are kept in their canonical spelling (compact forms expanded),
    values unfolded and stripped; each line also keeps its key (the name in
    lower case), which lookups compare.  The values of each key are indexed
    on the first lookup, and :meth:`parsed` and :meth:`parsed_all` cache the
    typed values they parse, per name; a change to the lines drops the index
    and the cached values of that name.
    """

    __slots__ = ("_cache", "_index", "_lines", "_version")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        #: (key, name, value): the key is the name in lower case.
        self._lines: list[tuple[str, str, str]] = []
        #: Counts the changes (see :attr:`version`).
        self._version = 0
        #: key -> its values, in order; None until a lookup needs it.
        self._index: dict[str, list[str]] | None = None
        #: Parsed values: by key for parsed(), "*" + key for parsed_all().
        self._cache: dict[str, Any] = {}
        for name, value in items:
            self.add(name, value)

    @classmethod
    def trusted(cls, items: Iterable[tuple[str, str]]) -> Headers:
        """Headers whose values are taken as they are: not checked for controls, not stripped.

        For the parser, which has unfolded and stripped every value (a peer's
        value may hold controls: they are refused only when copied into a
        message of ours), and for code inside vidim that builds lines from
        values it made or parsed.  Names are still checked.  Anything else
        goes through ``Headers(...)``.
        """
        headers = cls()
        headers._lines = [(*_checked_name(name), value) for name, value in items]
        return headers

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((name, value) for _, name, value in self._lines)

    def __len__(self) -> int:
        return len(self._lines)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self._values(_key(name)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._lines] == [(k, v) for k, _, v in other._lines]

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def copy(self) -> Headers:
        return Headers.trusted(self)

    def _values(self, key: str) -> Sequence[str]:
        """The values of the lines of ``key``, in order (not a copy)."""
        return self._indexed().get(key, ())

    def _indexed(self) -> dict[str, list[str]]:
        """key -> its values, in order: built on the first lookup, dropped on a change."""
        index = self._index
        if index is None:
            index = self._index = {}
            for key, _, value in self._lines:
                if key in index:
                    index[key].append(value)
                else:
                    index[key] = [value]
        return index

    def line_counts(self) -> dict[str, int]:
        """How many lines there are of each name, by key (the canonical name in lower case)."""
        return {key: len(values) for key, values in self._indexed().items()}

    def get(self, name: str) -> str | None:
        """The first value of ``name``, or None."""
        values = self._values(_key(name))
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        """Every header line of ``name``, in order (lists not split)."""
        return list(self._values(_key(name)))

    def values(self, name: str) -> list[str]:
        """Every value of ``name``: header lines split into list elements."""
        return [item for line in self._values(_key(name)) for item in split_list(line)]

    def add(self, name: str, value: str) -> None:
        """Append a header line; CR, LF and other controls are refused."""
        key, cname = _checked_name(name)
        if CONTROL_RE.search(value):
            raise LocalProtocolError(f"control character in value of {cname}: {value!r}")
        self._changed(key)
        self._lines.append((key, cname, value.strip()))

    def prepend(self, name: str, value: str) -> None:
        """Insert a header line before all others (a proxy's Via, a Record-Route)."""
        self.add(name, value)
        self._lines.insert(0, self._lines.pop())

    def set(self, name: str, value: str) -> None:
        """Replace every line of ``name`` with one, where the first one was."""
        key = _key(name)
        at = next((i for i, line in enumerate(self._lines) if line[0] == key), None)
        self.remove(name)
        self.add(name, value)
        if at is not None:
            self._lines.insert(at, self._lines.pop())

    def remove(self, name: str) -> None:
        key = _key(name)
        self._changed(key)
        self._lines = [line for line in self._lines if line[0] != key]

    def parsed(self, name: str, parser: Callable[[str], T]) -> T | None:
        """The first value of ``name`` parsed by ``parser`` (None if absent), cached.

        A name is always read with the same parser: the cache is by name.
        """
        key = _key(name)
        cache = self._cache
        if key not in cache:
            values = self._values(key)
            cache[key] = parser(values[0]) if values else None
        return cache[key]  # type: ignore[no-any-return]

    def parsed_all(self, name: str, parser: Callable[[str], list[T]]) -> list[T]:
        """Every line of the list header ``name`` parsed by ``parser``, cached."""
        key = "*" + _key(name)
        cache = self._cache
        if key not in cache:
            cache[key] = [item for line in self._values(key[1:]) for item in parser(line)]
        return cache[key]  # type: ignore[no-any-return]

    @property
    def version(self) -> int:
        """Changes so far: what was built from these lines at one version holds while it lasts."""
        return self._version

    def _changed(self, key: str) -> None:
        self._version += 1
        self._index = None
        if self._cache:  # empty while a message is being built
            self._cache.pop(key, None)
            self._cache.pop("*" + key, None)
