"""From an incoming SIP MESSAGE to a typed command, or a precise refusal.

Pure functions: no I/O, no clock.  :func:`parse_request` is the single entry
point; it returns one of the :data:`Command` types or raises
:class:`RequestRefusedError`, never anything else.  The error carries the
status to answer with (``status_hint``), a short ``reason`` fit both for a
``Warning: 399 host "reason"`` header and for an IM to a person, extra
response headers (``Accept`` with a 415, ``Allow`` with a 405) and, when it is
known, the ``requester`` to tell by IM.

The three request forms (DESIGN.md, "The request forms the daemon must accept")
-------------------------------------------------------------------------------

* **Header form** (:attr:`RequestForm.HEADER`): a MESSAGE carrying
  ``X-Vidim-Mode: <mode>``, to any Request-URI.  The invitees are the
  Request-URI's user (unless the Request-URI is the service URI) followed by
  each ``X-Vidim-Invite`` entry (a name-addr list:
  ``<sip:carol@example.com>;mode=audio, <sip:dan@example.com>``); a ``mode``
  header parameter overrides the request's mode for that invitee.  The body,
  if any, is a human note and is not read.
* **Command form** (:attr:`RequestForm.COMMAND`): a ``text/plain`` MESSAGE (or
  a ``multipart/mixed`` one whose only text is one ``text/plain`` part) to the
  service URI, holding one command in the grammar below.
* **RFC 5365 form** (:attr:`RequestForm.RESOURCE_LISTS`): a ``multipart/mixed``
  MESSAGE with an ``application/resource-lists+xml`` part (RFC 4826:
  ``<resource-lists><list><entry uri="..."/></list></resource-lists>``),
  either to the service URI or carrying ``X-Vidim-Mode``.  The mode comes from
  ``X-Vidim-Mode`` or, failing it, from a ``text/plain`` part holding a mode
  command (``/video``; its own invitees count too).  A text part holding
  ``/add [#<conference-id>]`` makes the list an :class:`AddInvitees`.  Header
  invitees come first, then the text part's, then the list entries.  A
  document with ``<!DOCTYPE`` or ``<!ENTITY`` is refused unread (billion
  laughs); ``<external>`` and ``<entry-ref>`` are refused (they would need a
  fetch).

A MESSAGE that has no ``X-Vidim-Mode`` and is not addressed to the service
URI (user and host compared case-insensitively) is **not a vidim request**:
404, so that a proxy may route it elsewhere.

The command grammar
-------------------

::

    text        = *WS command *(WS / ",") ; surrounding SP, HTAB, CR, LF (and a BOM)
                                          ; are ignored; the rest is one line
    command     = mode-cmd / add-cmd / end-cmd / status-cmd / help-cmd
    mode-cmd    = "/" mode 1*(sep invitee)
    add-cmd     = "/add" 1*(sep invitee) [sep conf-ref]
    end-cmd     = "/end" [sep conf-ref]
    status-cmd  = "/status" [sep conf-ref]
    help-cmd    = "/help" *(sep word)     ; arguments are ignored
    mode        = "video" / "audio" / "watch" / "chat"
    sep         = 1*( SP / HTAB / "," )
    invitee     = address [";mode=" mode]
    address     = bare-name               ; that user in the requester's domain
                / user "@" host           ; sip:user@host
                / ( "sip:" / "sips:" ) user "@" hostport *( ";" uri-param )
    bare-name   = 1*( token-char / "%" HEXDIG HEXDIG )  ; token-char: RFC 3261
                                          ; token without "%" (A-Z a-z 0-9 -.!*_+`'~)
    conf-ref    = "#" conf-id             ; may stand anywhere among the arguments
    conf-id     = 1*128( ALPHA / DIGIT / "-" / "_" / "." / "~" )

Command words, mode names and the ``mode`` parameter name are
case-insensitive; user parts are case-sensitive, hosts are lower-cased.  A
bare name takes the requester's scheme and host (``bob`` from
``sips:alice@example.com`` is ``sips:bob@example.com``); ``user@host`` is
always ``sip:``.  The ``;mode=`` suffix is looked for after the ``@`` (so a
user part may hold ``;``); other URI parameters of a ``sip:``/``sips:`` URI
are checked and dropped (but ``transport=``, which says how to reach the
invitee), and on the short forms they are refused.  A user
part holding ``,`` cannot be written in the command form (use the header
form).  ``#<conference-id>`` names a conference for ``/add``, ``/end`` and
``/status``; without it they act on the requester's own live conference.

Invitees
--------

Every invitee becomes an address of record: ``sip:`` or ``sips:`` only, a user
part required, no parameters (but its port and ``transport=``) or headers, host lower-cased, and
%-escapes of unreserved characters decoded (RFC 3261 section 19.1.4:
``%61lice`` is ``alice``).  Duplicates (same user and host, whatever the
scheme) collapse: **the first occurrence wins**, with its mode.  The requester
inviting itself, and anyone inviting the service URI, are dropped silently.
What remains must be at least one and at most ``max_invitees``.

Status codes
------------

====  ==========================================================================
414   (before all of these, :func:`vidim.sip.check_sizes` in the allocator) a
      Request-URI longer than 2048 characters; a header value longer than
      8192 characters gets 400 there
403   untrusted source (``require_trusted_source`` and the source is outside
      ``trusted_networks``)
404   not a vidim request (no ``X-Vidim-Mode``, not to the service URI)
405   not a MESSAGE (with ``Allow: MESSAGE``)
413   command text longer than ``max_text_length`` bytes, or a resource list
      longer than ``max_list_length`` bytes (the entity is too large: 413)
415   command form with a body that is not ``text/plain`` or
      ``multipart/mixed``, a charset other than UTF-8/US-ASCII, or a
      Content-Encoding (with ``Accept: text/plain, multipart/mixed``)
416   header form whose Request-URI is not ``sip:``/``sips:``
400   everything else: unknown mode or command, no or too many invitees, a
      malformed or non-SIP invitee, a URI (invitee, requester) longer than
      ``vidim.sip.MAX_URI_LENGTH`` (2048) characters, a control character
      (C0 but HTAB, DEL, C1; CR and LF included) in any value read or in a
      %-unescaped user part, invalid UTF-8, bad XML, a malformed
      From/P-Asserted-Identity...
====  ==========================================================================
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import NoReturn, assert_never

from ..resource_lists import RESOURCE_LISTS_NS, parse_resource_list
from ..sip import (
    MAX_URI_LENGTH,
    URI,
    BodyPart,
    LocalProtocolError,
    MediaType,
    RemoteProtocolError,
    Request,
    SIPParseError,
    SipURI,
    parse_media_type,
    parse_name_addr,
    parse_name_addr_list,
    parse_uri,
    split_list,
    unescape,
)
from ..vocabulary import LOOPBACK_NETWORKS, IPNetwork, Mode, is_trusted
from ..xmlbody import FormatError

__all__ = [
    "INVITE_HEADER",
    "MODE_HEADER",
    "RESOURCE_LISTS_NS",
    "AddInvitees",
    "Command",
    "EndConference",
    "Invitee",
    "NewConference",
    "RequestForm",
    "RequestPolicy",
    "RequestRefusedError",
    "ShowHelp",
    "ShowStatus",
    "format_command",
    "help_text",
    "parse_command",
    "parse_request",
    "requester_identity",
]

MODE_HEADER = "X-Vidim-Mode"
INVITE_HEADER = "X-Vidim-Invite"
_PAI_HEADER = "P-Asserted-Identity"
_ACCEPT = (("Accept", "text/plain, multipart/mixed"),)
_MODE_CHOICES = "use video, audio, watch or chat"
_COMMANDS = "/video, /audio, /watch, /chat, /add, /end, /status or /help"

Network = IPNetwork
DEFAULT_TRUSTED_NETWORKS = LOOPBACK_NETWORKS

# Controls refused in every value read: C0 but HTAB, DEL and C1.  HTAB is
# whitespace in header values and command text; it is refused in user parts.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_CONTROL_OR_TAB_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
_SHOWN_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()")
_BARE_NAME_RE = re.compile(r"(?:[A-Za-z0-9\-.!*_+`'~]|%[0-9A-Fa-f]{2})+")
_SCHEME_PREFIX_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:")
_CONF_ID_RE = re.compile(r"[A-Za-z0-9\-_.~]{1,128}")
_SEPARATOR_RE = re.compile(r"[ \t,]+")
_MODE_VERBS = frozenset(mode.value for mode in Mode)


# -- policy ---------------------------------------------------------------------


# Identity marks "not given": the service URI then follows ``domain``.
_AUTO_SERVICE_URI = SipURI(host="service.invalid", user="vidim")


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestPolicy:
    """What :func:`parse_request` accepts; the defaults suit a test machine.

    ``service_uri`` defaults to ``sip:vidim@<domain>``.  Raises ValueError
    for a configuration that cannot work.
    """

    domain: str = "localhost"
    service_uri: SipURI = _AUTO_SERVICE_URI
    max_invitees: int = 16
    trusted_networks: tuple[Network, ...] = DEFAULT_TRUSTED_NETWORKS
    require_trusted_source: bool = True
    #: Largest command text, in bytes of UTF-8 (larger: 413).
    max_text_length: int = 2000
    #: Largest ``application/resource-lists+xml`` part, in bytes (larger: 413).
    max_list_length: int = 65536
    #: The allocator's own addresses, (host, port): ``<service user>@`` any of
    #: them names the service too, as Kamailio's ``myself`` does (the daemon
    #: gives the addresses it listens on and advertises).  A URI without a port
    #: matches its host on any of these ports.
    local_addresses: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        try:
            SipURI(host=self.domain)
        except LocalProtocolError as exc:
            raise ValueError(f"bad domain {self.domain!r}") from exc
        if self.service_uri is _AUTO_SERVICE_URI:
            object.__setattr__(self, "service_uri", SipURI(host=self.domain.lower(), user="vidim"))
        elif not self.service_uri.user:
            raise ValueError(f"the service URI {self.service_uri} has no user part")
        if self.max_invitees < 1:
            raise ValueError("max_invitees must be at least 1")
        if self.max_text_length < 1 or self.max_list_length < 1:
            raise ValueError("length limits must be at least 1")

    @classmethod
    def for_domain(
        cls,
        domain: str,
        service_user: str = "vidim",
        *,
        max_invitees: int = 16,
        trusted_networks: Iterable[str | Network] = DEFAULT_TRUSTED_NETWORKS,
        require_trusted_source: bool = True,
        max_text_length: int = 2000,
        max_list_length: int = 65536,
    ) -> RequestPolicy:
        """The policy of a service at ``sip:<service_user>@<domain>``.

        ``trusted_networks`` may be given as strings (``"10.0.0.0/8"``).
        """
        try:
            service_uri = SipURI(host=domain.lower(), user=service_user)
        except LocalProtocolError as exc:
            raise ValueError(f"bad service URI {service_user!r}@{domain!r}") from exc
        return cls(
            domain=domain,
            service_uri=service_uri,
            max_invitees=max_invitees,
            trusted_networks=tuple(ipaddress.ip_network(net) for net in trusted_networks),
            require_trusted_source=require_trusted_source,
            max_text_length=max_text_length,
            max_list_length=max_list_length,
        )


# -- commands -------------------------------------------------------------------


class RequestForm(Enum):
    """Which of the three request forms a :class:`NewConference` came in."""

    HEADER = "header"
    COMMAND = "command"
    RESOURCE_LISTS = "resource-lists"


@dataclass(frozen=True, slots=True, kw_only=True)
class Invitee:
    """Someone to invite: an address of record and, when it overrides, a mode."""

    uri: SipURI
    #: None: the request's mode.
    mode: Mode | None = None

    def effective_mode(self, default: Mode) -> Mode:
        return default if self.mode is None else self.mode


@dataclass(frozen=True, slots=True, kw_only=True)
class NewConference:
    """``/video bob``, ``X-Vidim-Mode``, or a resource list: start a conference."""

    requester: SipURI
    mode: Mode
    invitees: tuple[Invitee, ...]
    form: RequestForm


@dataclass(frozen=True, slots=True, kw_only=True)
class AddInvitees:
    """``/add erin [#id]``: invite more people (None: the requester's conference)."""

    requester: SipURI
    invitees: tuple[Invitee, ...]
    conference_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EndConference:
    """``/end [#id]``."""

    requester: SipURI
    conference_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ShowStatus:
    """``/status [#id]``."""

    requester: SipURI
    conference_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ShowHelp:
    """``/help``."""

    requester: SipURI


Command = NewConference | AddInvitees | EndConference | ShowStatus | ShowHelp


class RequestRefusedError(RemoteProtocolError):
    """A MESSAGE refused: answer ``status_hint`` with a Warning saying ``reason``.

    ``requester`` is who to tell by IM, when known; it stays None for a
    request that is not vidim's (404) or that came from an untrusted source.
    """

    requester: SipURI | None

    def __init__(
        self,
        reason: str,
        *,
        status_hint: int = 400,
        headers: tuple[tuple[str, str], ...] = (),
        requester: SipURI | None = None,
    ) -> None:
        super().__init__(reason, status_hint=status_hint, headers=headers)
        self.requester = requester


def _refuse(reason: str, status: int = 400, headers: tuple[tuple[str, str], ...] = ()) -> NoReturn:
    raise RequestRefusedError(reason, status_hint=status, headers=headers)


def _shown(text: str, limit: int = 48) -> str:
    """``text`` as it may appear in a reason: controls as '?', cut at ``limit``."""
    text = _SHOWN_RE.sub("?", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_text(value: str, where: str, *, allow_tab: bool = True) -> None:
    if _SURROGATE_RE.search(value):
        _refuse(f"invalid UTF-8 in {where}")
    if (_CONTROL_RE if allow_tab else _CONTROL_OR_TAB_RE).search(value):
        _refuse(f"control character in {where}")


def _parse_mode(text: str, context: str = "") -> Mode:
    try:
        return Mode(text.strip().lower())
    except ValueError:
        _refuse(f'unknown mode "{_shown(text)}"{context}; {_MODE_CHOICES}')


# -- addresses ------------------------------------------------------------------


def _normalize_user(user: str) -> str:
    """Decode escapes of unreserved characters; upper-case the others' hex digits."""

    def fix(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    return _ESCAPE_RE.sub(fix, user) if "%" in user else user


def _address_of_record(uri: URI, what: str, *, keep_port: bool = False) -> SipURI:
    """``uri`` as an address of record, or a refusal naming ``what``.

    ``keep_port`` keeps an invitee's port and ``transport=``: without a
    proxy they say how a phone is reached (``sip:bob@192.0.2.5:6000;transport=tcp``,
    RFC 3263 section 4.1).  A requester's identity never has either.
    """
    if not isinstance(uri, SipURI):
        _refuse(f"unsupported URI scheme {uri.scheme}: in {what}; use sip: or sips:")
    length = len(str(uri))
    if length > MAX_URI_LENGTH:
        _refuse(f"{what} of {length} characters; at most {MAX_URI_LENGTH}")
    raw_user = uri.user
    if not raw_user:
        _refuse(f"{what} has no user part")
    user = raw_user
    if "%" in raw_user:
        if _CONTROL_OR_TAB_RE.search(unescape(raw_user)):
            _refuse(f"control character in the user part of {what}")
        user = _normalize_user(raw_user)
    elif _CONTROL_OR_TAB_RE.search(raw_user):
        _refuse(f"control character in the user part of {what}")
    raw_host = uri.host
    host = raw_host.lower()
    if not host.isascii():
        _refuse(f"malformed host in {what}")
    port = uri.port if keep_port else None
    transport = uri.transport if keep_port else None
    params = (("transport", transport),) if transport is not None else ()
    if (
        user is raw_user
        and host == raw_host
        and port == uri.port
        and uri.params == params
        and not uri.headers
        and uri.password is None
    ):
        return uri  # already an address of record (the common case): immutable, so shared
    try:
        return SipURI(host=host, scheme=uri.scheme, user=user, port=port, params=params)
    except LocalProtocolError:
        _refuse(f"malformed {what}")


def _same_person(a: SipURI, b: SipURI) -> bool:
    return a.user == b.user and a.host.lower() == b.host.lower()


def _is_service(uri: SipURI, policy: RequestPolicy) -> bool:
    """Whether ``uri`` names the vidim service (user compared unescaped, case-blind).

    Its host is the service URI's, or one of the allocator's own addresses
    (``policy.local_addresses``, with the port when the URI has one).
    """
    service = policy.service_uri
    if uri.user is None or service.user is None:
        return False
    if unescape(uri.user).lower() != unescape(service.user).lower():
        return False
    host = _host_key(uri.host)
    if host == _host_key(service.host):
        return True
    return any(
        host == _host_key(local_host) and uri.port in (None, local_port)
        for local_host, local_port in policy.local_addresses
    )


def _host_key(host: str) -> str:
    """A host as compared: lower case, an IP address in its canonical form, no brackets."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        return bare.lower()


def _asserted_identity(request: Request) -> SipURI | None:
    for line in request.headers.get_all(_PAI_HEADER):
        _check_text(line, _PAI_HEADER)
        try:
            values = parse_name_addr_list(line)
        except SIPParseError:
            _refuse(f"malformed {_PAI_HEADER}")
        for value in values:
            if isinstance(value.uri, SipURI):
                return _address_of_record(value.uri, _PAI_HEADER)
    return None  # only tel: identities: the From says who


def requester_identity(request: Request, *, source_host: str, policy: RequestPolicy) -> SipURI:
    """Who asks: the ``P-Asserted-Identity`` from a trusted source, else the From.

    An address of record.  Raises :class:`RequestRefusedError` (400, without a
    requester) when the header it reads is malformed or not a SIP user.
    """
    return _requester(request, trusted=is_trusted(source_host, policy.trusted_networks))


def _requester(request: Request, *, trusted: bool) -> SipURI:
    if trusted:
        asserted = _asserted_identity(request)
        if asserted is not None:
            return asserted
    raw = request.headers.get("from")
    if raw is None:
        _refuse("missing From")
    _check_text(raw, "From")
    try:
        from_addr = request.from_addr
    except SIPParseError:
        _refuse("malformed From")
    return _address_of_record(from_addr.uri, "From")


# -- the command grammar --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Parsed:
    """A command text, parsed but not yet checked against the policy."""

    verb: str
    invitees: tuple[Invitee, ...]
    conference_id: str | None


def _split_mode_param(params_text: str, arg: str) -> tuple[Mode | None, str]:
    """Take ``;mode=`` out of ``params_text``; return it and the other parameters."""
    mode: Mode | None = None
    kept: list[str] = []
    for piece in params_text.split(";")[1:]:
        name, eq, value = piece.partition("=")
        if name.lower() != "mode":
            kept.append(piece)
            continue
        if mode is not None:
            _refuse(f'more than one ;mode= in "{_shown(arg)}"')
        if not eq or not value:
            _refuse(f'empty ;mode= in "{_shown(arg)}"; {_MODE_CHOICES}')
        mode = _parse_mode(value, f' for "{_shown(arg)}"')
    return mode, "".join(";" + piece for piece in kept)


def _parse_invitee_arg(arg: str, requester: SipURI) -> Invitee:
    what = f'invitee "{_shown(arg)}"'
    at = arg.find("@")
    semi = arg.find(";", at + 1)
    address, params_text = (arg, "") if semi < 0 else (arg[:semi], arg[semi:])
    mode, other_params = _split_mode_param(params_text, arg)
    if _SCHEME_PREFIX_RE.match(address):
        text = address + other_params
    elif other_params:
        name = other_params[1:].partition(";")[0].partition("=")[0]
        _refuse(f'unknown parameter ";{_shown(name)}" in "{_shown(arg)}"; only ;mode=<mode>')
    elif at >= 0:
        text = "sip:" + address
    else:
        if not _BARE_NAME_RE.fullmatch(address):
            _refuse(f"malformed {what}")
        try:
            # "`" is a token character but not a user character: escape it.
            user = address.replace("`", "%60")
            uri: URI = SipURI(host=requester.host.lower(), scheme=requester.scheme, user=user)
        except LocalProtocolError:
            _refuse(f"malformed {what}")
        return Invitee(uri=_address_of_record(uri, what, keep_port=True), mode=mode)
    try:
        uri = parse_uri(text)
    except SIPParseError:
        _refuse(f"malformed {what}")
    return Invitee(uri=_address_of_record(uri, what, keep_port=True), mode=mode)


def _parse_command_text(text: str, requester: SipURI, policy: RequestPolicy) -> _Parsed:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > policy.max_text_length:
        _refuse(f"command text too long: {size} bytes, at most {policy.max_text_length}", 413)
    text = text.removeprefix("\ufeff").strip(" \t\r\n")
    if not text:
        _refuse("empty command; send /help")
    _check_text(text, "command text")
    if not text.startswith("/"):
        _refuse(f'not a command: "{_shown(text, 24)}"; start with {_COMMANDS}')
    word, *args = (part for part in _SEPARATOR_RE.split(text) if part)
    verb = word[1:].lower()
    if verb == "help":
        return _Parsed("help", (), None)
    if verb not in ("add", "end", "status") and verb not in _MODE_VERBS:
        _refuse(f'unknown command "{_shown(word, 24)}"; send /help')
    invitees: list[Invitee] = []
    conference_id: str | None = None
    for arg in args:
        if arg.startswith("#"):
            if verb in _MODE_VERBS:
                _refuse(f"/{verb} starts a new conference: no #conference-id (use /add)")
            if conference_id is not None:
                _refuse("more than one #conference-id")
            if not _CONF_ID_RE.fullmatch(arg[1:]):
                _refuse(f'malformed conference id "{_shown(arg)}"')
            conference_id = arg[1:]
        elif verb in ("end", "status"):
            _refuse(f'/{verb} takes only an optional #conference-id, not "{_shown(arg)}"')
        else:
            invitees.append(_parse_invitee_arg(arg, requester))
    return _Parsed(verb, tuple(invitees), conference_id)


def _collect(
    invitees: Sequence[Invitee], requester: SipURI, policy: RequestPolicy, hint: str
) -> tuple[Invitee, ...]:
    """Drop the requester and the service, collapse duplicates (first wins), count."""
    kept: list[Invitee] = []
    seen: set[tuple[str | None, str]] = set()
    for invitee in invitees:
        key = (invitee.uri.user, invitee.uri.host.lower())
        if key in seen or _same_person(invitee.uri, requester):
            continue
        if _is_service(invitee.uri, policy):
            continue
        seen.add(key)
        kept.append(invitee)
    if not kept:
        if invitees:
            _refuse("no invitees: you cannot invite yourself or the vidim service")
        _refuse(f"no invitees: {hint}")
    if len(kept) > policy.max_invitees:
        _refuse(f"too many invitees: {len(kept)}, at most {policy.max_invitees}")
    return tuple(kept)


def _finish(
    parsed: _Parsed,
    requester: SipURI,
    policy: RequestPolicy,
    form: RequestForm,
    more: Sequence[Invitee] = (),
) -> Command:
    if parsed.verb == "help":
        return ShowHelp(requester=requester)
    if parsed.verb == "end":
        return EndConference(requester=requester, conference_id=parsed.conference_id)
    if parsed.verb == "status":
        return ShowStatus(requester=requester, conference_id=parsed.conference_id)
    hint = (
        "/add needs at least one, e.g. /add erin"
        if parsed.verb == "add"
        else f"name at least one, e.g. /{parsed.verb} bob"
    )
    invitees = _collect((*parsed.invitees, *more), requester, policy, hint)
    if parsed.verb == "add":
        return AddInvitees(
            requester=requester, invitees=invitees, conference_id=parsed.conference_id
        )
    return NewConference(requester=requester, mode=Mode(parsed.verb), invitees=invitees, form=form)


def parse_command(text: str, *, requester: SipURI, policy: RequestPolicy) -> Command:
    """Parse one command text (the command form's body) from ``requester``.

    ``requester`` should be an address of record (see :func:`requester_identity`);
    bare names take its scheme and host.  Raises :class:`RequestRefusedError`
    (without a requester: :func:`parse_request` sets it).
    """
    parsed = _parse_command_text(text, requester, policy)
    return _finish(parsed, requester, policy, RequestForm.COMMAND)


# -- the forms ------------------------------------------------------------------


def _header_mode(lines: list[str]) -> Mode:
    values: list[str] = []
    for line in lines:
        _check_text(line, MODE_HEADER)
        values.extend(value.strip() for value in line.split(","))
    values = [value for value in values if value]
    if not values:
        _refuse(f"empty {MODE_HEADER}; {_MODE_CHOICES}")
    if len({value.lower() for value in values}) > 1:
        _refuse(f"more than one {MODE_HEADER}: {_shown(', '.join(values))}")
    return _parse_mode(values[0])


def _header_invitees(request: Request, to_service: bool) -> list[Invitee]:
    invitees: list[Invitee] = []
    if not to_service:
        uri = request.uri
        if not isinstance(uri, SipURI):
            _refuse(f"unsupported URI scheme {uri.scheme}: in the Request-URI; use sip:", 416)
        invitees.append(Invitee(uri=_address_of_record(uri, "the Request-URI", keep_port=True)))
    for line in request.headers.get_all(INVITE_HEADER):
        _check_text(line, INVITE_HEADER)
        try:
            items = split_list(line)
        except SIPParseError:
            _refuse(f"malformed {INVITE_HEADER}: {_shown(line)}")
        for item in items:
            what = f'invitee "{_shown(item)}"'
            try:
                entry = parse_name_addr(item)
            except SIPParseError:
                _refuse(f"malformed {what} in {INVITE_HEADER}")
            mode: Mode | None = None
            if entry.has_param("mode"):
                text = entry.param("mode")
                if not text:
                    _refuse(f"empty mode parameter for {what}; {_MODE_CHOICES}")
                mode = _parse_mode(text.strip('"'), f" for {what}")
            uri = _address_of_record(entry.uri, what, keep_port=True)
            invitees.append(Invitee(uri=uri, mode=mode))
    return invitees


def _media_type(value: str | None, where: str) -> MediaType | None:
    if value is None:
        return None
    _check_text(value, where)
    try:
        return parse_media_type(value)
    except SIPParseError:
        _refuse(f"malformed {where}")


def _decode_text(part: BodyPart | Request, ctype: MediaType, policy: RequestPolicy) -> str:
    charset = ctype.param("charset")
    if charset is not None and charset.lower() not in ("utf-8", "utf8", "us-ascii"):
        _refuse(f"unsupported charset {_shown(charset)}; send UTF-8", 415, _ACCEPT)
    if len(part.body) > policy.max_text_length:
        _refuse(
            f"command text too long: {len(part.body)} bytes, at most {policy.max_text_length}", 413
        )
    try:
        return part.body.decode("utf-8")
    except UnicodeDecodeError:
        _refuse("invalid UTF-8 in command text")


def _parse_resource_list(body: bytes, policy: RequestPolicy) -> list[Invitee]:
    if len(body) > policy.max_list_length:
        _refuse(f"resource list too long: {len(body)} bytes, at most {policy.max_list_length}", 413)
    try:
        entries = parse_resource_list(body, max_size=policy.max_list_length)
    except FormatError as exc:
        _refuse(f"bad resource list: {_shown(exc.reason, 80)}")
    invitees: list[Invitee] = []
    for entry in entries:
        what = f'invitee "{_shown(entry.uri)}"'
        _check_text(entry.uri, f"{what} in resource list")
        try:
            uri = parse_uri(entry.uri.strip())
        except SIPParseError:
            _refuse(f"malformed {what} in resource list")
        invitees.append(Invitee(uri=_address_of_record(uri, what, keep_port=True), mode=entry.mode))
    return invitees


def _check_encoding(request: Request) -> None:
    for line in request.headers.get_all("content-encoding"):
        if line.strip().lower() != "identity":
            headers = (*_ACCEPT, ("Accept-Encoding", "identity"))
            _refuse(f"unsupported Content-Encoding {_shown(line)}", 415, headers)


def _typed_parts(request: Request) -> list[tuple[BodyPart, MediaType | None]]:
    try:
        parts = request.body_parts()
    except SIPParseError as exc:
        _refuse(f"malformed multipart body: {_shown(exc.reason, 60)}")
    where = "Content-Type of a body part"
    return [(part, _media_type(part.headers.get("content-type"), where)) for part in parts]


def _multipart(
    request: Request,
    requester: SipURI,
    to_service: bool,
    mode_lines: list[str],
    policy: RequestPolicy,
) -> Command:
    parts = _typed_parts(request)
    lists = [p for p, t in parts if t is not None and t.mime == "application/resource-lists+xml"]
    texts = [(p, t) for p, t in parts if t is not None and t.mime == "text/plain"]
    if len(texts) > 1:
        _refuse("more than one text/plain part: send one command")
    if not lists:
        if mode_lines:
            return _header_form(request, requester, to_service, mode_lines, policy)
        if not texts:
            _refuse("no text/plain part and no resource list in the multipart body", 415, _ACCEPT)
        text = _decode_text(*texts[0], policy)
        return parse_command(text, requester=requester, policy=policy)
    if len(lists) > 1:
        _refuse("more than one resource list")
    entries = _parse_resource_list(lists[0].body, policy)
    if mode_lines:
        mode = _header_mode(mode_lines)
        more = [*_header_invitees(request, to_service), *entries]
        invitees = _collect(more, requester, policy, "the resource list is empty")
        return NewConference(
            requester=requester, mode=mode, invitees=invitees, form=RequestForm.RESOURCE_LISTS
        )
    if not texts:
        _refuse(f"no mode: add {MODE_HEADER} or a text/plain part such as /video")
    parsed = _parse_command_text(_decode_text(*texts[0], policy), requester, policy)
    if parsed.verb != "add" and parsed.verb not in _MODE_VERBS:
        _refuse(
            f"a resource list goes with /video, /audio, /watch, /chat or /add, not /{parsed.verb}"
        )
    return _finish(parsed, requester, policy, RequestForm.RESOURCE_LISTS, entries)


def _header_form(
    request: Request,
    requester: SipURI,
    to_service: bool,
    mode_lines: list[str],
    policy: RequestPolicy,
) -> Command:
    mode = _header_mode(mode_lines)
    hint = f"add {INVITE_HEADER} entries or send to the person to invite"
    invitees = _collect(_header_invitees(request, to_service), requester, policy, hint)
    return NewConference(requester=requester, mode=mode, invitees=invitees, form=RequestForm.HEADER)


def _parse_known(
    request: Request, requester: SipURI, to_service: bool, policy: RequestPolicy
) -> Command:
    mode_lines = request.headers.get_all(MODE_HEADER)
    ctype = _media_type(request.headers.get("content-type"), "Content-Type")
    if ctype is not None and ctype.type.lower() == "multipart":
        _check_encoding(request)
        return _multipart(request, requester, to_service, mode_lines, policy)
    if mode_lines:
        return _header_form(request, requester, to_service, mode_lines, policy)
    if not request.body.strip():
        _refuse("empty command; send /help")
    if ctype is None:
        _refuse("unsupported body type (no Content-Type); send text/plain", 415, _ACCEPT)
    if ctype.mime != "text/plain":
        _refuse(f"unsupported body type {_shown(ctype.mime)}; send text/plain", 415, _ACCEPT)
    _check_encoding(request)
    return parse_command(_decode_text(request, ctype, policy), requester=requester, policy=policy)


def parse_request(
    request: Request, *, source_host: str, policy: RequestPolicy, authenticated: bool = False
) -> Command:
    """Turn a MESSAGE into a :data:`Command`, or raise :class:`RequestRefusedError`.

    ``source_host`` is the IP address the request came from (the transport's
    peer, not a header).  Checks, in order: the source (403), the method
    (405), whether it is a vidim request at all (404), the requester's
    identity, then the form.  Raises nothing but :class:`RequestRefusedError`.
    ``authenticated``: the request's digest credentials were checked (an
    untrusted source is then served, as its From user).
    """
    trusted = is_trusted(source_host, policy.trusted_networks)
    if policy.require_trusted_source and not trusted and not authenticated:
        _refuse(f"untrusted source {_shown(source_host)}", 403)
    if request.method != "MESSAGE":
        reason = f"vidim requests are MESSAGE requests, not {_shown(request.method)}"
        _refuse(reason, 405, (("Allow", "MESSAGE"),))
    to_service = isinstance(request.uri, SipURI) and _is_service(request.uri, policy)
    if not to_service and MODE_HEADER not in request.headers:
        _refuse("not a vidim request", 404)
    requester = _requester(request, trusted=trusted)
    try:
        return _parse_known(request, requester, to_service, policy)
    except RequestRefusedError as exc:
        if exc.requester is None:
            exc.requester = requester
        raise


# -- writing commands -----------------------------------------------------------


def _format_invitee(invitee: Invitee, requester: SipURI) -> str:
    uri = invitee.uri
    user = uri.user or ""
    if not user or "," in user or _CONTROL_OR_TAB_RE.search(user) or " " in user:
        raise LocalProtocolError(f"invitee {uri} cannot be written as a command argument")
    short = uri.port is None and not uri.params  # transport= needs the URI form
    if (
        short
        and uri.scheme == requester.scheme
        and uri.host.lower() == requester.host.lower()
        and _BARE_NAME_RE.fullmatch(user)
    ):
        text = user
    elif short and uri.scheme == "sip":
        text = f"{user}@{uri.host}"
    else:
        port = f":{uri.port}" if uri.port is not None else ""
        params = "".join(f";{name}={value}" for name, value in uri.params)
        text = f"{uri.scheme}:{user}@{uri.host}{port}{params}"
    return text if invitee.mode is None else f"{text};mode={invitee.mode.value}"


def format_command(command: Command) -> str:
    """Write ``command`` in the command grammar; :func:`parse_command` reads it back.

    Invitees in the requester's domain (and scheme) are written as bare
    names.  Raises :class:`LocalProtocolError` for an invitee whose user part
    holds a comma (the command grammar cannot say it).
    """
    words: list[str]
    if isinstance(command, NewConference):
        words = ["/" + command.mode.value]
        words += (_format_invitee(i, command.requester) for i in command.invitees)
        return " ".join(words)
    if isinstance(command, AddInvitees):
        words = ["/add", *(_format_invitee(i, command.requester) for i in command.invitees)]
    elif isinstance(command, EndConference):
        words = ["/end"]
    elif isinstance(command, ShowStatus):
        words = ["/status"]
    elif isinstance(command, ShowHelp):
        return "/help"
    else:
        assert_never(command)
    if command.conference_id is not None:
        words.append("#" + command.conference_id)
    return " ".join(words)


def help_text(policy: RequestPolicy) -> str:
    """The ``/help`` answer: the command grammar in words."""
    return (
        f"vidim turns a message into a conference. Send one of these to {policy.service_uri}:\n"
        "  /video <invitees>  a conference with audio and video\n"
        "  /audio <invitees>  a conference with audio only\n"
        "  /watch <invitees>  invitees receive audio and video but do not send\n"
        "  /chat <invitees>   no media: the invitation and who joined, by message only\n"
        "  /add <invitees> [#<conference-id>]  invite more people\n"
        "  /end [#<conference-id>]             end your conference\n"
        "  /status [#<conference-id>]          who is in your conference\n"
        "  /help                               this text\n"
        "An invitee is a name in your own domain (bob), user@host, or a sip: "
        "or sips: URI. Add ;mode=video, ;mode=audio, ;mode=watch or ;mode=chat to give "
        "one invitee another mode. Separate invitees with spaces or commas; at most "
        f"{policy.max_invitees}. Without #<conference-id>, /add, /end and /status act on "
        "your own conference.\n"
        "Example: /video bob carol;mode=audio sip:dan@other.org"
    )
