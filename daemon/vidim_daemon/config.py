"""The daemon's configuration: TOML file, command-line overrides, validation.

Every setting has a default (see :data:`DEFAULTS`, documented in
docs/daemon.md); a file may set any subset; command-line options override
the file.  :func:`load` returns a :class:`DaemonConfig` or raises
:class:`ConfigError` listing every problem with the key it concerns.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from vidim.allocator.profiles import FocusProfile
from vidim.overload import OverloadPolicy
from vidim.sip import Address, SIPParseError, SipURI, parse_uri

__all__ = ["DEFAULTS", "EVENT_LOOPS", "ConfigError", "DaemonConfig", "load", "parse_hostport"]

#: Every setting and its default, as TOML would write it.
DEFAULTS: dict[str, Any] = {
    "listen": "127.0.0.1:5070",
    "focus": [],  # empty: run the built-in focus
    "focus_listen": "127.0.0.1:5080",
    "profile": "rfc4579",
    "proxy": "",  # empty: IMs go direct (to the address a request came from)
    "domain": "localhost",
    "service_uri": "",  # empty: sip:vidim@<domain>
    "trusted": ["127.0.0.0/8", "::1/128"],
    "probe": True,
    "log_level": "info",
    "log_json": False,
    # auto: uvloop when it is installed (pip install 'vidim[fast]'), else asyncio's own loop.
    "event_loop": "auto",
    "timers": {
        "probe_timeout": 2.0,
        "focus_timeout": 8.0,
        "idle_timeout": 300.0,
        "keepalive_interval": 30.0,
        "t1": 0.5,
        "t2": 4.0,
        "t4": 5.0,
    },
    "limits": {
        "max_invitees": 16,
        "rate_limit": 5,
        "rate_window": 60.0,
        "max_conferences": 100000,
        # Overload control (vidim/overload.py): new requests get 503 + Retry-After
        # from when a request waits overload_max_lag in the queue until the queue
        # is short again (a wait under overload_clear_lag).
        "overload": True,
        "overload_max_lag": 0.2,
        "overload_clear_lag": 0.02,
        "overload_hold": 0.1,
        "overload_retry_after": 5,
    },
    "media": {
        "address": "127.0.0.1",
        "rtp_ports": [40000, 40999],
        "conference_ttl": 3600.0,
    },
}
_LOG_LEVELS = ("debug", "info", "warning", "error")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")


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
    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
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

    @property
    def builtin_focus(self) -> bool:
        return not self.focus

    @property
    def focus_uris(self) -> tuple[str, ...]:
        """The foci to use: the configured ones, or the built-in one's factory."""
        if self.focus:
            return self.focus
        host = self.focus_listen.host
        host = f"[{host}]" if ":" in host else host
        return (f"sip:conference-factory@{host}:{self.focus_listen.port}",)


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


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


#: Settings that are gone, with what took their place (said instead of "unknown").
_REMOVED: Final = {
    f"limits.overload_{key}": "no longer a setting: overload is now decided by how long "
    "requests wait alone (limits.overload_max_lag starts refusing, "
    "limits.overload_clear_lag ends it), not by the CPU"
    for key in ("enter", "leave", "window")
}


def _unknown_keys(
    data: Mapping[str, Any], schema: Mapping[str, Any], prefix: str = ""
) -> list[str]:
    problems = []
    for key, value in data.items():
        if key not in schema:
            hint = _REMOVED.get(prefix + key)
            problems.append(f"{prefix}{key}: " + (hint or "unknown setting"))
        elif isinstance(schema[key], dict):
            if not isinstance(value, Mapping):
                problems.append(f"{prefix}{key}: must be a table")
            else:
                problems += _unknown_keys(value, schema[key], f"{prefix}{key}.")
    return problems


def load(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> DaemonConfig:
    """Read ``path`` (TOML) if given, apply ``overrides``, validate everything."""
    data: dict[str, Any] = {}
    problems: list[str] = []
    if path is not None:
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
        problems += _unknown_keys(data, DEFAULTS)
    merged = _merge(_merge(DEFAULTS, data), overrides or {})
    return _build(merged, problems)


def _overload_policy(
    limits: Mapping[str, Any], check: Callable[[str, Any, Any], Any], problems: list[str]
) -> OverloadPolicy | None:
    enabled = check("limits.overload", bool, limits["overload"])
    values = {}
    for key in ("max_lag", "clear_lag", "hold"):
        values[key] = check(f"limits.overload_{key}", (int, float), limits[f"overload_{key}"])
    retry_after = check("limits.overload_retry_after", int, limits["overload_retry_after"])
    if None in values.values() or retry_after is None:
        return None
    try:
        policy = OverloadPolicy(
            max_lag=float(values["max_lag"]),
            clear_lag=float(values["clear_lag"]),
            hold=float(values["hold"]),
            retry_after=int(retry_after),
        )
    except ValueError as exc:
        problems.append(f"limits.overload_*: {exc}")
        return None
    return policy if enabled else None


def _build(raw: dict[str, Any], problems: list[str]) -> DaemonConfig:
    def check(key: str, kind: type | tuple[type, ...], value: Any) -> Any:
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            problems.append(f"{key}: must be a number, got {value!r}")
            return None
        if not isinstance(value, kind):
            names = (
                kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            )
            problems.append(f"{key}: must be {names}, got {value!r}")
            return None
        return value

    def address(key: str) -> Address | None:
        value = check(key, str, raw[key])
        if value is None:
            return None
        try:
            return parse_hostport(value, key)
        except ValueError as exc:
            problems.append(f"{key}: {exc}")
            return None

    def positive(section: str, key: str, kind: type | tuple[type, ...] = (int, float)) -> Any:
        value = check(f"{section}.{key}", kind, raw[section][key])
        if value is not None and value <= 0:
            problems.append(f"{section}.{key}: must be above 0, got {value!r}")
        return value

    listen = address("listen")
    focus_listen = address("focus_listen")
    focus_value = raw["focus"]
    focus_list = [focus_value] if isinstance(focus_value, str) else focus_value
    focus: list[str] = []
    if not isinstance(focus_list, list) or not all(isinstance(f, str) for f in focus_list):
        problems.append(f"focus: must be a SIP URI or a list of them, got {focus_value!r}")
    else:
        for item in focus_list:
            if not item:
                continue
            try:
                if not isinstance(parse_uri(item), SipURI):
                    raise SIPParseError("not a sip: or sips: URI")
                focus.append(item)
            except SIPParseError as exc:
                problems.append(f"focus: {item!r} is not a SIP URI ({exc.reason})")
    profile = None
    try:
        profile = FocusProfile(check("profile", str, raw["profile"]) or "")
    except ValueError:
        problems.append(
            f"profile: must be one of {', '.join(p.value for p in FocusProfile)}, "
            f"got {raw['profile']!r}"
        )
    proxy: Address | None = None
    proxy_uri: str | None = None
    proxy_text = check("proxy", str, raw["proxy"])
    if proxy_text:
        try:
            uri = parse_uri(proxy_text)
            if not isinstance(uri, SipURI):
                raise SIPParseError("not a sip: URI")
            host = uri.host[1:-1] if uri.host.startswith("[") else uri.host
            ipaddress.ip_address(host)
            transport = (uri.transport or "udp").upper()
            proxy = Address(host, uri.port or 5060, transport)
            proxy_uri = proxy_text
        except (SIPParseError, ValueError) as exc:
            problems.append(f"proxy: {proxy_text!r} must be a SIP URI with an IP address ({exc})")
    domain = check("domain", str, raw["domain"]) or "localhost"
    try:
        SipURI(host=domain)
    except Exception:
        problems.append(f"domain: {domain!r} is not a host name")
        domain = "localhost"
    service_text = check("service_uri", str, raw["service_uri"])
    service_uri = SipURI(host=domain.lower(), user="vidim")
    if service_text:
        try:
            parsed = parse_uri(service_text)
            if not isinstance(parsed, SipURI) or not parsed.user:
                raise SIPParseError("needs sip:user@host")
            service_uri = parsed
        except SIPParseError as exc:
            problems.append(f"service_uri: {service_text!r} is not usable ({exc.reason})")
    trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    trusted_value = raw["trusted"]
    if not isinstance(trusted_value, list):
        trusted_value = [trusted_value]
    for item in trusted_value:
        try:
            trusted.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            problems.append(f"trusted: {item!r} is not a network (CIDR such as 10.0.0.0/8)")
    log_level = str(raw["log_level"]).lower()
    if log_level not in _LOG_LEVELS:
        problems.append(
            f"log_level: must be one of {', '.join(_LOG_LEVELS)}, got {raw['log_level']!r}"
        )
    event_loop = str(raw["event_loop"]).lower()
    if event_loop not in EVENT_LOOPS:
        problems.append(
            f"event_loop: must be one of {', '.join(EVENT_LOOPS)}, got {raw['event_loop']!r}"
        )
    timers = {k: positive("timers", k) for k in DEFAULTS["timers"]}
    limits = {
        k: positive("limits", k, int if k != "rate_window" else (int, float))
        for k in ("max_invitees", "rate_limit", "rate_window", "max_conferences")
    }
    overload = _overload_policy(raw["limits"], check, problems)
    media_address = check("media.address", str, raw["media"]["address"]) or "127.0.0.1"
    try:
        ipaddress.ip_address(media_address)
    except ValueError:
        problems.append(f"media.address: must be an IP address, got {media_address!r}")
    ports = raw["media"]["rtp_ports"]
    rtp_ports = (40000, 40999)
    if (
        not isinstance(ports, list)
        or len(ports) != 2
        or not all(isinstance(p, int) and not isinstance(p, bool) for p in ports)
        or not 1024 <= ports[0] < ports[1] <= 65535
        or ports[1] - ports[0] < 3
    ):
        problems.append(
            f"media.rtp_ports: must be [first, last] with 1024 <= first < last <= 65535 "
            f"and room for two calls, got {ports!r}"
        )
    else:
        rtp_ports = (ports[0], ports[1])
    ttl = positive("media", "conference_ttl")
    probe = check("probe", bool, raw["probe"])
    log_json = check("log_json", bool, raw["log_json"])
    if listen is not None and focus_listen is not None and not focus and listen == focus_listen:
        problems.append(
            "focus_listen: must differ from listen (the built-in focus needs its own port)"
        )
    if problems:
        raise ConfigError(problems)
    assert listen is not None
    assert focus_listen is not None
    assert profile is not None
    return DaemonConfig(
        listen=listen,
        focus=tuple(focus),
        focus_listen=focus_listen,
        profile=profile,
        proxy=proxy,
        proxy_uri=proxy_uri,
        domain=domain,
        service_uri=service_uri,
        trusted=tuple(trusted),
        probe=bool(probe),
        log_level=log_level,
        log_json=bool(log_json),
        event_loop=event_loop,
        probe_timeout=float(timers["probe_timeout"]),
        focus_timeout=float(timers["focus_timeout"]),
        idle_timeout=float(timers["idle_timeout"]),
        keepalive_interval=float(timers["keepalive_interval"]),
        t1=float(timers["t1"]),
        t2=float(timers["t2"]),
        t4=float(timers["t4"]),
        max_invitees=int(limits["max_invitees"]),
        rate_limit=int(limits["rate_limit"]),
        rate_window=float(limits["rate_window"]),
        max_conferences=int(limits["max_conferences"]),
        overload=overload,
        media_address=media_address,
        rtp_ports=rtp_ports,
        conference_ttl=float(ttl),
    )
