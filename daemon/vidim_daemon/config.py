"""The daemon's configuration: TOML file, command-line overrides, validation.

:data:`SETTINGS` is the schema: every TOML key with its default (as TOML
writes it; docs/daemon.md documents each) and the one function that checks
its value and converts it.  A file may set any subset; command-line options
override the file.  :func:`load` returns a :class:`DaemonConfig` or raises
:class:`ConfigError` listing every problem with the key it concerns.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, Final

from vidim.aio.tls import TlsSettings, client_context, server_context
from vidim.allocator.profiles import FocusProfile
from vidim.overload import OverloadPolicy
from vidim.sip import (
    ALGORITHMS,
    Address,
    ClientCredentials,
    DigestRealm,
    LocalProtocolError,
    SIPParseError,
    SipURI,
    parse_uri,
    parse_users_file,
    uri_destination,
)
from vidim.vocabulary import IPNetwork

__all__ = [
    "DEFAULTS",
    "EVENT_LOOPS",
    "SETTINGS",
    "ConfigError",
    "DaemonConfig",
    "Setting",
    "default_state_dir",
    "load",
    "parse_hostport",
]

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
#: ``auto``: uvloop when it is installed (``pip install 'vidim[fast]'``), else asyncio's loop.
EVENT_LOOPS: Final = ("auto", "uvloop", "asyncio")


class ConfigError(ValueError):
    """What is wrong with a configuration: one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonConfig:
    listen: Address
    focus: tuple[str, ...]
    focus_listen: Address
    profile: FocusProfile
    proxy: Address | None
    proxy_uri: str | None
    domain: str
    service_uri: SipURI
    trusted: tuple[IPNetwork, ...]
    probe: bool
    log_level: str
    log_json: bool
    #: ``auto``, ``uvloop`` or ``asyncio`` (see :func:`vidim_daemon.cli.loop_factory`).
    event_loop: str
    probe_timeout: float
    focus_timeout: float
    idle_timeout: float
    keepalive_interval: float
    t1: float
    t2: float
    t4: float
    max_invitees: int
    rate_limit: int
    rate_window: float
    max_conferences: int
    #: None: overload control off (``[limits] overload = false``).
    overload: OverloadPolicy | None
    media_address: str
    rtp_ports: tuple[int, int]
    conference_ttl: float
    #: Where conferences are kept: ``memory:``, ``sqlite:PATH`` or ``redis://HOST:PORT/DB``.
    store: str
    #: The directory of the embedded store (``store`` names a file in it by default).
    state_dir: Path
    #: With a shared store: how long a conference's lease lasts unrenewed.
    lease_ttl: float
    #: On SIGTERM: end every conference (BYE to anchors and participants), or leave
    #: them to the store for the next daemon to adopt.
    end_on_stop: bool
    #: On SIGTERM: new requests are answered 503 for at least this long before the
    #: sockets close (so that a dispatcher in front sees it and fails over).
    refuse_on_stop: float
    #: On SIGTERM: the longest wait for the BYEs and transactions in flight.
    stop_timeout: float
    #: The address peers reach the daemon at (host, port or None: the listen
    #: port), written in Call-IDs, Vias, Contacts and the focus's URIs; None:
    #: the listen addresses themselves.
    advertise: tuple[str, int | None] | None = None
    #: Where the Prometheus metrics and the health checks are served; None: off.
    metrics_listen: Address | None = None
    #: Who vidim is when a proxy or a focus challenges it (``[auth] username``,
    #: ``password``, ``realm``); None: challenges are failures.
    credentials: ClientCredentials | None = None
    #: The users vidim challenges untrusted requesters against (``[auth]
    #: challenge = true`` and ``users_file``); None: untrusted sources are refused.
    challenge: DigestRealm | None = None
    #: Asterisk's manager interface (the ``asterisk`` profile's control channel); None: off.
    asterisk_ami: Address | None = None
    asterisk_ami_user: str = ""
    asterisk_ami_secret: str = dataclass_field(default="", repr=False)
    #: SIP over TLS for the allocator (``[tls]``: its port on ``listen``'s host,
    #: certificate, key, CA file, peer verification); None: no TLS.
    tls: TlsSettings | None = None

    @property
    def shared_store(self) -> bool:
        """A store several daemons share (Redis): conferences are leased, follow-ups routed."""
        return self.store.startswith(("redis://", "rediss://"))

    @property
    def advertised(self) -> Address:
        """Where peers reach the allocator: the advertised address, else ``listen``."""
        if self.advertise is None:
            return self.listen
        host, port = self.advertise
        return Address(host, port or self.listen.port)

    @property
    def focus_advertised(self) -> Address:
        """Where peers reach the built-in focus: the advertised host on ``focus_listen``'s port."""
        if self.advertise is None:
            return self.focus_listen
        return Address(self.advertise[0], self.focus_listen.port)

    @property
    def builtin_focus(self) -> bool:
        return not self.focus

    @property
    def focus_uris(self) -> tuple[str, ...]:
        """The foci to use: the configured ones, or the built-in one's factory."""
        if self.focus:
            return self.focus
        focus = self.focus_advertised
        host = f"[{focus.host}]" if ":" in focus.host else focus.host
        return (f"sip:conference-factory@{host}:{focus.port}",)


def parse_hostport(text: str, what: str = "address") -> Address:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) to an Address; ValueError says why."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{what} must be HOST:PORT, got {text!r}")
    port = int(port_text)
    if not 0 < port <= 65535:
        raise ValueError(f"{what} port must be 1-65535, got {port}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{what} host must be an IP address, got {host!r}") from None
    return Address(host, port)


# -- the converters: a TOML value to the config's, or ValueError saying what is wrong --
def _typed(value: Any, kind: type | tuple[type, ...], name: str) -> Any:
    """``value`` when it is a ``kind`` (a bool is no number), else ValueError."""
    if isinstance(value, bool) and kind is not bool:
        raise ValueError(f"must be a number, got {value!r}")
    if not isinstance(value, kind):
        raise ValueError(f"must be {name}, got {value!r}")
    return value


def _string(value: Any) -> str:
    return str(_typed(value, str, "str"))


def _boolean(value: Any) -> bool:
    return bool(_typed(value, bool, "bool"))


def _integer(value: Any) -> int:
    return int(_typed(value, int, "int"))


def _number(value: Any) -> float:
    return float(_typed(value, (int, float), "int or float"))


def _positive(convert: Callable[[Any], float]) -> Callable[[Any], float]:
    def positive(value: Any) -> float:
        number = convert(value)
        if number <= 0:
            raise ValueError(f"must be above 0, got {value!r}")
        return number

    return positive


def _non_negative(convert: Callable[[Any], float]) -> Callable[[Any], float]:
    def non_negative(value: Any) -> float:
        number = convert(value)
        if number < 0:
            raise ValueError(f"must be 0 or more, got {value!r}")
        return number

    return non_negative


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def one_of(value: Any) -> str:
        text = str(value).lower()
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
        return text

    return one_of


def _host_port(key: str) -> Callable[[Any], Address]:
    return lambda value: parse_hostport(_string(value), key)


def _optional_host_port(key: str) -> Callable[[Any], Address | None]:
    """Empty: None (off); else ``HOST:PORT``."""
    return lambda value: parse_hostport(text, key) if (text := _string(value)) else None


def _advertise(value: Any) -> tuple[str, int | None] | None:
    """Empty: None; else ``HOST[:PORT]`` (``[v6]:PORT``), HOST an IP address or a host name."""
    text = _string(value)
    if not text:
        return None
    host, port = text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            raise ValueError(f"must be HOST[:PORT], got {text!r}")
        port = int(rest[1:]) if rest else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text.isdigit():
            raise ValueError(f"must be HOST[:PORT], got {text!r}")
        port = int(port_text)
    if port is not None and not 0 < port <= 65535:
        raise ValueError(f"port must be 1-65535, got {port}")
    return _reachable_host(host), port


def _reachable_host(host: str) -> str:
    """An IP address other than 0.0.0.0 and ::, or a host name; else ValueError."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            SipURI(host=host)
        except Exception:
            raise ValueError(f"{host!r} is neither an IP address nor a host name") from None
        return host
    if address.is_unspecified:
        raise ValueError(f"must be an address peers can reach, not {host}")
    return host


def _profile(value: Any) -> FocusProfile:
    return FocusProfile(_one_of(tuple(p.value for p in FocusProfile))(value))


def _sip_uri(text: str) -> SipURI:
    uri = parse_uri(text)
    if not isinstance(uri, SipURI):
        raise SIPParseError("not a sip: or sips: URI")
    return uri


def _focus(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ValueError(f"must be a SIP URI or a list of them, got {value!r}")
    uris = tuple(item for item in items if item)
    for uri in uris:
        try:
            _sip_uri(uri)
        except SIPParseError as error:
            raise ValueError(f"{uri!r} is not a SIP URI ({error.reason})") from None
    return uris


def _proxy(value: Any) -> Address | None:
    """Empty: none. Else a SIP URI, where every IM and probe goes.

    Its host may be a name: it is located when a request is sent (RFC 3263,
    :mod:`vidim.aio.resolver`), so ``sip:localhost:5060`` and
    ``sip:example.com`` (NAPTR, SRV) both work.
    """
    text = _string(value)
    if not text:
        return None
    try:
        return uri_destination(_sip_uri(text))
    except (SIPParseError, LocalProtocolError) as error:
        raise ValueError(f"{text!r} must be a SIP URI ({error})") from None


def _domain(value: Any) -> str:
    domain = _string(value)
    try:
        SipURI(host=domain)
    except Exception:
        raise ValueError(f"{domain!r} is not a host name") from None
    return domain


def _service_uri(value: Any) -> SipURI | None:
    """Empty: ``sip:vidim@<domain>`` (see :func:`_build`)."""
    text = _string(value)
    if not text:
        return None
    try:
        uri = _sip_uri(text)
        if not uri.user:
            raise SIPParseError("needs sip:user@host")
    except SIPParseError as error:
        raise ValueError(f"{text!r} is not usable ({error.reason})") from None
    return uri


def _networks(value: Any) -> tuple[IPNetwork, ...]:
    networks = []
    for item in value if isinstance(value, list) else [value]:
        try:
            networks.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not a network (CIDR such as 10.0.0.0/8)") from None
    return tuple(networks)


def _ip_address(value: Any) -> str:
    text = _string(value)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"must be an IP address, got {text!r}") from None
    return text


#: What a store URL may start with (vidim.store.open_store parses the rest).
_STORE_SCHEMES: Final = ("memory:", "sqlite:", "redis://", "rediss://")


def _boolean_or_auto(value: Any) -> bool | None:
    """``true``, ``false``, or ``"auto"`` (None: decided from other settings)."""
    if value == "auto":
        return None
    if not isinstance(value, bool):
        raise ValueError(f'must be true, false or "auto", got {value!r}')
    return value


def _store(value: Any) -> str:
    """Empty: SQLite in the state directory (see :func:`_build`)."""
    text = _string(value)
    if text and not text.startswith(_STORE_SCHEMES):
        raise ValueError(f"must be memory:, sqlite:PATH or redis://HOST:PORT/DB, got {text!r}")
    return text


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/vidim`` when that is set, else ``vidim-state`` in the working directory."""
    xdg = os.environ.get("XDG_STATE_HOME")
    return Path(xdg) / "vidim" if xdg else Path("vidim-state")


def _state_dir(value: Any) -> Path:
    text = _string(value)
    return Path(text) if text else default_state_dir()


def _port_range(value: Any) -> tuple[int, int]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(p, int) and not isinstance(p, bool) for p in value)
        or not 1024 <= value[0] < value[1] <= 65535
        or value[1] - value[0] < 3
    ):
        raise ValueError(
            "must be [first, last] with 1024 <= first < last <= 65535 "
            f"and room for two calls, got {value!r}"
        )
    return (value[0], value[1])


def _algorithms(value: Any) -> tuple[str, ...]:
    """Digest algorithms, in the order offered (RFC 8760: the preferred first)."""
    items = value if isinstance(value, list) else [value]
    known = {name.lower(): name for name in ALGORITHMS}
    names = []
    for item in items:
        name = known.get(str(item).lower())
        if name is None:
            raise ValueError(f"must be a list of {', '.join(ALGORITHMS)}, got {item!r}")
        names.append(name)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"must name each algorithm once, at least one, got {value!r}")
    return tuple(names)


@dataclass(frozen=True, slots=True)
class Setting:
    """One TOML key: its default, and how its value becomes the config's."""

    default: Any
    convert: Callable[[Any], Any]
    #: The :class:`DaemonConfig` field it sets: the key's last part by default;
    #: None when :func:`_build` makes a field of it with other keys.
    field: str | None = ""


#: Every setting, by its TOML key (``table.key`` inside a table).
SETTINGS: Final[dict[str, Setting]] = {
    "listen": Setting("127.0.0.1:5070", _host_port("listen")),
    "focus": Setting([], _focus),  # empty: run the built-in focus
    "focus_listen": Setting("127.0.0.1:5080", _host_port("focus_listen")),
    "profile": Setting("rfc4579", _profile),
    "proxy": Setting("", _proxy),  # empty: IMs go direct (to the address a request came from)
    "domain": Setting("localhost", _domain),
    "service_uri": Setting("", _service_uri, None),  # empty: sip:vidim@<domain>
    "trusted": Setting(["127.0.0.0/8", "::1/128"], _networks),
    "probe": Setting(True, _boolean),
    "log_level": Setting("info", _one_of(LOG_LEVELS)),
    "log_json": Setting(False, _boolean),
    "event_loop": Setting("auto", _one_of(EVENT_LOOPS)),
    # Where conferences live beyond the process (docs/operations.md).  Empty store:
    # sqlite:<state_dir>/vidim.sqlite3; empty state_dir: $XDG_STATE_HOME/vidim or ./vidim-state.
    "store": Setting("", _store),
    "state_dir": Setting("", _state_dir),
    "lease_ttl": Setting(10.0, _positive(_number)),
    # "auto": on with the embedded store, off with a shared one (see _build).
    "end_on_stop": Setting("auto", _boolean_or_auto),
    "refuse_on_stop": Setting(1.0, _non_negative(_number)),
    "stop_timeout": Setting(5.0, _positive(_number)),
    # Empty: the listen addresses are what peers reach (then they may not be 0.0.0.0 or ::).
    "advertise": Setting("", _advertise),
    "metrics_listen": Setting("", _optional_host_port("metrics_listen")),  # empty: off
    "timers.probe_timeout": Setting(2.0, _positive(_number)),
    "timers.focus_timeout": Setting(8.0, _positive(_number)),
    "timers.idle_timeout": Setting(300.0, _positive(_number)),
    "timers.keepalive_interval": Setting(30.0, _positive(_number)),
    "timers.t1": Setting(0.5, _positive(_number)),
    "timers.t2": Setting(4.0, _positive(_number)),
    "timers.t4": Setting(5.0, _positive(_number)),
    "limits.max_invitees": Setting(16, _positive(_integer)),
    "limits.rate_limit": Setting(5, _positive(_integer)),
    "limits.rate_window": Setting(60.0, _positive(_number)),
    "limits.max_conferences": Setting(100000, _positive(_integer)),
    # Overload control (vidim/overload.py): new requests get 503 + Retry-After from
    # when a request waits overload_max_lag in the queue until the queue is short
    # again (a wait under overload_clear_lag).  The five make DaemonConfig.overload.
    "limits.overload": Setting(True, _boolean, None),
    "limits.overload_max_lag": Setting(0.2, _number, None),
    "limits.overload_clear_lag": Setting(0.02, _number, None),
    "limits.overload_hold": Setting(0.1, _number, None),
    "limits.overload_retry_after": Setting(5, _integer, None),
    "media.address": Setting("127.0.0.1", _ip_address, "media_address"),
    "media.rtp_ports": Setting([10000, 20000], _port_range),
    "media.conference_ttl": Setting(3600.0, _positive(_number)),
    # Digest (docs/security.md): the credentials vidim answers a 401/407 with (empty
    # username: none; empty realm: any realm), and whether it challenges MESSAGEs
    # from untrusted sources against users_file (htdigest lines user:realm:HA1) in
    # challenge_realm (empty: the domain), offering challenge_algorithms in that
    # order.  The seven make DaemonConfig.credentials
    # and DaemonConfig.challenge (see _auth).
    "auth.username": Setting("", _string, None),
    "auth.password": Setting("", _string, None),
    "auth.realm": Setting("", _string, None),
    "auth.challenge": Setting(False, _boolean, None),
    "auth.users_file": Setting("", _string, None),
    "auth.challenge_realm": Setting("", _string, None),
    "auth.challenge_algorithms": Setting(["SHA-256", "MD5"], _algorithms, None),
    # The asterisk profile's AMI (docs/asterisk.md): empty ami is off; the
    # credentials come from the file, never from the command line only.
    "asterisk.ami": Setting("", _optional_host_port("asterisk.ami"), "asterisk_ami"),
    "asterisk.ami_user": Setting("", _string, "asterisk_ami_user"),
    "asterisk.ami_secret": Setting("", _string, "asterisk_ami_secret"),
    # SIP over TLS (docs/security.md): the allocator's TLS listener (HOST:PORT on
    # listen's host; empty: no TLS, and sips: is refused), its certificate and key
    # (PEM), the CA file peers are verified against (empty: the system's store).
    # The five make DaemonConfig.tls (see _tls).
    "tls.listen": Setting("", _optional_host_port("tls.listen"), None),
    "tls.certificate": Setting("", _string, None),
    "tls.key": Setting("", _string, None),
    "tls.ca_file": Setting("", _string, None),
    "tls.verify_peer": Setting(True, _boolean, None),
}
_TABLES: Final = frozenset(key.split(".")[0] for key in SETTINGS if "." in key)


def _defaults() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, setting in SETTINGS.items():
        table, _, name = key.rpartition(".")
        (out.setdefault(table, {}) if table else out)[name] = setting.default
    return out


#: Every setting and its default, as TOML would write it.
DEFAULTS: Final = _defaults()

#: Settings that are gone, with what took their place (said instead of "unknown").
_REMOVED: Final = {
    f"limits.overload_{key}": "no longer a setting: overload is now decided by how long "
    "requests wait alone (limits.overload_max_lag starts refusing, "
    "limits.overload_clear_lag ends it), not by the CPU"
    for key in ("enter", "leave", "window")
}


def _flatten(data: Mapping[str, Any], problems: list[str], prefix: str = "") -> dict[str, Any]:
    """``{"timers": {"t1": 1}}`` as ``{"timers.t1": 1}``; unknown keys go to ``problems``."""
    flat: dict[str, Any] = {}
    for name, value in data.items():
        key = prefix + name
        if key in SETTINGS:
            flat[key] = value
        elif not prefix and key in _TABLES:
            if isinstance(value, Mapping):
                flat.update(_flatten(value, problems, f"{key}."))
            else:
                problems.append(f"{key}: must be a table")
        else:
            problems.append(f"{key}: {_REMOVED.get(key, 'unknown setting')}")
    return flat


def load(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> DaemonConfig:
    """Read ``path`` (TOML) if given, apply ``overrides``, validate everything."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
    problems: list[str] = []
    given = _flatten(data, problems) | _flatten(overrides or {}, problems)
    values: dict[str, Any] = {}
    for key, setting in SETTINGS.items():
        try:
            values[key] = setting.convert(given.get(key, setting.default))
        except ValueError as error:
            problems.append(f"{key}: {error}")
    config = _build(values, given, problems)
    if problems or config is None:
        raise ConfigError(problems)
    return config


def _build(
    values: dict[str, Any], given: Mapping[str, Any], problems: list[str]
) -> DaemonConfig | None:
    """The config from the converted ``values``, with the checks that take several keys."""
    overload = _overload_policy(values, problems)
    credentials, challenge = _auth(values, problems)
    tls = _tls(values, problems)
    builtin_focus = not values.get("focus", True)
    if builtin_focus and values.get("listen", 0) == values.get("focus_listen"):
        problems.append(
            "focus_listen: must differ from listen (the built-in focus needs its own port)"
        )
    _check_reachable(values, builtin_focus, problems)
    _check_asterisk(values, problems)
    if problems:
        return None
    service_uri = values["service_uri"] or SipURI(host=values["domain"].lower(), user="vidim")
    fields = {
        setting.field or key.rpartition(".")[2]: values[key]
        for key, setting in SETTINGS.items()
        if setting.field is not None
    }
    fields["store"] = values["store"] or f"sqlite:{values['state_dir'] / 'vidim.sqlite3'}"
    if fields["end_on_stop"] is None:
        # A shared store: the conferences are left for another daemon to adopt.
        fields["end_on_stop"] = not fields["store"].startswith(("redis://", "rediss://"))
    return DaemonConfig(
        **fields,
        proxy_uri=given.get("proxy") or None,
        service_uri=service_uri,
        overload=overload,
        credentials=credentials,
        challenge=challenge,
        tls=tls,
    )


def _auth(
    values: Mapping[str, Any], problems: list[str]
) -> tuple[ClientCredentials | None, DigestRealm | None]:
    """``[auth]`` as the credentials vidim answers with and the realm it challenges in.

    The users file is read here, so a SIGHUP that reloads the configuration
    takes its new lines.
    """
    username, password = values.get("auth.username", ""), values.get("auth.password", "")
    credentials = None
    if username:
        credentials = ClientCredentials(
            username=username, password=password, realm=values.get("auth.realm") or None
        )
    elif password:
        problems.append("auth.password: given without auth.username")
    users_file = values.get("auth.users_file", "")
    if not values.get("auth.challenge"):
        return credentials, None
    if not users_file:
        problems.append("auth.challenge: needs auth.users_file (htdigest lines user:realm:HA1)")
        return credentials, None
    realm = values.get("auth.challenge_realm") or values.get("domain", "localhost")
    try:
        users = parse_users_file(Path(users_file).read_text(encoding="utf-8"), realm)
    except OSError as error:
        problems.append(f"auth.users_file: cannot read {users_file}: {error.strerror}")
        return credentials, None
    except ValueError as error:
        problems.append(f"auth.users_file: {users_file}: {error}")
        return credentials, None
    if not users:
        problems.append(f"auth.users_file: {users_file} has no user of realm {realm!r}")
        return credentials, None
    algorithms = values.get("auth.challenge_algorithms", ("SHA-256", "MD5"))
    return credentials, DigestRealm(realm=realm, users=users, algorithms=algorithms)


def _tls(values: Mapping[str, Any], problems: list[str]) -> TlsSettings | None:
    """``[tls]`` as the server's TLS settings; the files are loaded here, to fail at start."""
    listen: Address | None = values.get("tls.listen")
    if listen is None:
        return None
    sip = values.get("listen")
    if sip is not None and listen.host != sip.host:
        problems.append(f"tls.listen: must be on listen's host {sip.host}, got {listen.host}")
    if sip is not None and listen.port == sip.port:
        problems.append("tls.listen: must differ from listen's port (TCP is there)")
    certificate, key = values.get("tls.certificate", ""), values.get("tls.key", "")
    for name, path in (("tls.certificate", certificate), ("tls.key", key)):
        if not path:
            problems.append(f"{name}: needed with tls.listen (a PEM file)")
    if not certificate or not key:
        return None
    ca_file = values.get("tls.ca_file") or None
    unreadable = [
        f"{name}: cannot read {path}"
        for name, path in (
            ("tls.certificate", certificate),
            ("tls.key", key),
            ("tls.ca_file", ca_file),
        )
        if path is not None and not os.access(path, os.R_OK)
    ]
    if unreadable:
        problems.extend(unreadable)
        return None
    settings = TlsSettings(
        port=listen.port,
        certificate=certificate,
        key=key,
        ca_file=ca_file,
        verify_peer=values.get("tls.verify_peer", True),
    )
    try:
        server_context(settings)
        client_context(settings)
    except (OSError, ssl.SSLError) as error:  # not PEM, or a key that does not match
        reason = getattr(error, "reason", None) or str(error)
        problems.append(f"tls: the certificate, key or CA file is not usable: {reason}")
        return None
    return settings


def _check_reachable(values: Mapping[str, Any], builtin_focus: bool, problems: list[str]) -> None:
    """A listen address of 0.0.0.0 or :: needs an advertised one: peers cannot reach it."""
    if values.get("advertise") is not None:
        return
    for key in ("listen", "focus_listen") if builtin_focus else ("listen",):
        address = values.get(key)
        if address is not None and ipaddress.ip_address(address.host).is_unspecified:
            problems.append(
                f"{key}: {address.host} is every local address, which peers cannot be told: "
                "give the address they reach with --advertise HOST[:PORT] (advertise = ...)"
            )


def _check_asterisk(values: Mapping[str, Any], problems: list[str]) -> None:
    """AMI is the asterisk profile's, and needs a user and a secret to log in."""
    if values.get("asterisk.ami") is None:
        return
    if values.get("profile") is not FocusProfile.ASTERISK:
        problems.append('asterisk.ami: only with profile = "asterisk"')
    for key in ("asterisk.ami_user", "asterisk.ami_secret"):
        if not values.get(key):
            problems.append(f"{key}: needed with asterisk.ami (AMI logs in with it)")


#: The keys of :class:`OverloadPolicy`'s fields, by field.
_OVERLOAD_KEYS: Final = {
    name: f"limits.overload_{name}" for name in ("max_lag", "clear_lag", "hold", "retry_after")
}


def _overload_policy(values: Mapping[str, Any], problems: list[str]) -> OverloadPolicy | None:
    """``limits.overload*`` as one policy (checked even when off); None when it is off."""
    if not all(key in values for key in _OVERLOAD_KEYS.values()):
        return None  # already a problem
    try:
        policy = OverloadPolicy(**{name: values[key] for name, key in _OVERLOAD_KEYS.items()})
    except ValueError as exc:
        problems.append(f"limits.overload_*: {exc}")
        return None
    return policy if values.get("limits.overload") else None
