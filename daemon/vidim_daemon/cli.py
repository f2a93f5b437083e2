"""``vidim-daemon``: run the allocator (and by default the built-in focus), or check a config.

Thin on purpose: it reads the configuration, builds the sans-IO cores, puts
each behind a :class:`vidim.aio.SipServer`, logs their events, shuts them
down cleanly on SIGTERM/SIGINT (:func:`stop_conferences`: every conference
ended, or left to the store, as ``end_on_stop`` says), and reloads what can
change at run time on SIGHUP (:func:`reload_config`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import importlib
import ipaddress
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import click

from vidim import __version__
from vidim.aio import (
    Cluster,
    FocusMedia,
    Persistence,
    RtpRelay,
    SipServer,
    restore_core,
    serve_forever_until_signal,
)
from vidim.aio.ami import AsteriskAmi
from vidim.aio.focus import MediaEvent
from vidim.allocator import Allocator, AllocatorConfig, RequestPolicy
from vidim.allocator import events as allocator_events
from vidim.focus import ConferenceFocus, FocusConfig
from vidim.focus import events as focus_events
from vidim.focus.mixer import SourceChanged
from vidim.focus.video import VideoEvent
from vidim.metrics import Metrics
from vidim.sip import Address, TransactionConfig
from vidim.store import StateStore, StoreUnavailable, open_store
from vidim.vocabulary import IPNetwork, is_trusted

from .config import DEFAULTS, SETTINGS, ConfigError, DaemonConfig, load
from .endpoint import HealthEndpoint
from .logs import setup_logging

__all__ = [
    "DEBUG_EVENTS",
    "RELOADABLE",
    "Running",
    "allocator_config",
    "build_allocator",
    "build_focus",
    "loop_factory",
    "main",
    "reload_config",
    "stop_conferences",
]

log = logging.getLogger("vidim.daemon")


def _transactions(config: DaemonConfig) -> TransactionConfig:
    return TransactionConfig(t1=config.t1, t2=config.t2, t4=config.t4)


def build_allocator(config: DaemonConfig) -> Allocator:
    return Allocator(allocator_config(config))


def allocator_config(config: DaemonConfig) -> AllocatorConfig:
    return AllocatorConfig(
        local=config.advertised,
        requests=RequestPolicy(
            domain=config.domain,
            service_uri=config.service_uri,
            max_invitees=config.max_invitees,
            trusted_networks=config.trusted,
            local_addresses=_own_addresses(config),
        ),
        focus_uris=config.focus_uris,
        profile=config.profile,
        # The URI as given: it says how to reach the proxy (sips:, transport=).
        proxy=config.proxy_uri or config.proxy,
        probe=config.probe,
        probe_timeout=config.probe_timeout,
        focus_timeout=config.focus_timeout,
        idle_timeout=config.idle_timeout,
        keepalive_interval=config.keepalive_interval,
        rate_limit=config.rate_limit,
        rate_window=config.rate_window,
        max_conferences=config.max_conferences,
        transactions=_transactions(config),
        credentials=config.credentials,
        challenge=config.challenge,
        presence_reported=config.asterisk_ami is not None,
        tls_port=config.tls.port if config.tls is not None else None,
    )


def build_focus(config: DaemonConfig) -> ConferenceFocus:
    return ConferenceFocus(
        FocusConfig(
            local=config.focus_advertised,
            media_address=config.media_address,
            rtp_ports=config.rtp_ports,
            conference_ttl=config.conference_ttl,
            trusted_networks=focus_trusted(config),
            transactions=_transactions(config),
        )
    )


def _own_addresses(config: DaemonConfig) -> tuple[tuple[str, int], ...]:
    """Where the allocator is reached (TLS too): ``vidim@`` any of these is the service too."""
    addresses = [config.advertised, config.listen]
    if config.tls is not None:
        tls_port = config.tls.port
        addresses += [dataclasses.replace(a, port=tls_port) for a in addresses]
    return tuple(
        dict.fromkeys(
            (address.host, address.port)
            for address in addresses
            if address.host not in ("0.0.0.0", "::")
        )
    )


def focus_trusted(config: DaemonConfig) -> tuple[IPNetwork, ...]:
    """``--trusted`` and this daemon's own SIP addresses: its allocator creates conferences.

    The built-in focus takes factory INVITEs from trusted sources only (issue 18);
    the allocator beside it sends them from its ``--listen`` address (or, bound to
    0.0.0.0, from the focus's own address).
    """
    own = []
    for host in {config.listen.host, config.focus_listen.host}:
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(host.strip("[]"))
            if not address.is_unspecified and not is_trusted(host, config.trusted):
                own.append(ipaddress.ip_network(address))
    return (*config.trusted, *sorted(own, key=str))


def _focus_events(media: FocusMedia) -> Callable[[Any], None]:
    """Log the focus's events; its media plan changes go to the RTP relay."""
    log_event = _event_logger("focus")

    def on_event(event: Any) -> None:
        log_event(event)
        media.on_event(event)

    return on_event


def _media_event(item: MediaEvent) -> None:
    """Log what the video switch decides (talker, source, keyframe requests) at INFO, and a
    mixer's change of source; audio levels (50 a second per speaker) are not logged."""
    event = item.event
    if isinstance(event, VideoEvent | SourceChanged):
        logging.getLogger("vidim.media").info("%s in %s", event, item.conference)


def _counted(on_event: Callable[[Any], None], metrics: Metrics | None) -> Callable[[Any], None]:
    """``on_event``, and each event counted in ``metrics`` (when there are metrics)."""
    if metrics is None:
        return on_event

    def on_event_counted(event: Any) -> None:
        on_event(event)
        metrics.on_event(event, time.monotonic())

    return on_event_counted


#: Events logged at DEBUG: neither a request nor a change of state (those are
#: logged at INFO, issue 4), e.g. each invitation sent, and the focus's media plans.
DEBUG_EVENTS: frozenset[type] = frozenset(
    {
        allocator_events.InvitationSent,
        allocator_events.ConferenceReady,  # the ACTIVE state change says it at INFO
        focus_events.InviteesAdded,
        focus_events.MediaPlanChanged,
        focus_events.SubscriptionStarted,
        focus_events.SubscriptionEnded,
    }
)


#: Events that need an operator's eye, logged at WARNING: a request that could not be
#: sent, the ``[auth]`` credentials a proxy or a focus refuses.
WARNING_EVENTS: frozenset[type] = frozenset(
    {allocator_events.TransportUnavailable, allocator_events.AuthenticationFailed}
)


def _event_logger(name: str) -> Callable[[Any], None]:
    """Log each event with its ``conference_id`` and ``call_id`` fields, when it has them."""
    logger = logging.getLogger(f"vidim.{name}")

    def on_event(event: Any) -> None:
        level = logging.DEBUG if type(event) in DEBUG_EVENTS else logging.INFO
        if type(event) in WARNING_EVENTS:
            level = logging.WARNING
        extra = {
            key: value
            for key in ("conference_id", "call_id")
            if (value := getattr(event, key, None)) is not None
        }
        logger.log(level, "%s", event, extra=extra)

    return on_event


def loop_factory(choice: str) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """The event loop to run on, and its name for the start-up line.

    ``auto`` takes uvloop when it is installed (``pip install 'vidim[fast]'``:
    a little less CPU and latency, docs/daemon.md) and asyncio's own loop otherwise;
    ``uvloop`` requires it (ImportError when missing); ``asyncio`` never uses it.
    """
    if choice == "asyncio":
        return None, "asyncio"
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise
        return None, "asyncio"
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory, f"uvloop {uvloop.__version__}"


#: Young objects a garbage collection scans at most (Python's default is 700).
GC_THRESHOLD = 5_000


def _short_gc_pauses() -> None:
    """Keep garbage-collection pauses short in a long-lived server.

    Reference counting frees everything a conference leaves behind (the
    allocator and the focus make no reference cycles, which
    tests/daemon/test_logs_and_loop.py checks), so what the collector costs
    is scanning live objects, and a pause is as long as what it scans: with
    the default thresholds a daemon holding 50,000 conferences paused for
    30-80 ms every few seconds, which set bench/setups.py's p99.  So what was
    built at start-up, and then whatever survives a collection, is frozen out
    of the collector's sight (``gc.freeze``, constant time): a collection scans
    at most the young objects, and old ones are never scanned again.  The
    price: a reference cycle among objects that outlived a collection is never
    reclaimed (there are none to reclaim).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 10, 10)
    gc.callbacks.append(_freeze_survivors)


def _freeze_survivors(phase: str, info: dict[str, int]) -> None:
    if phase == "stop":
        gc.freeze()


async def _open_store(config: DaemonConfig) -> StateStore | None:
    """The state store, opened; None (and an ERROR saying why) when it cannot be."""
    store = open_store(config.store)
    try:
        await store.open()
    except StoreUnavailable as error:
        log.error("cannot open the state store %s: %s", config.store, error)
        return None
    return store


@dataclass(slots=True)
class Running:
    """What SIGTERM and SIGHUP act on: the config in force, the cores, their servers."""

    config: DaemonConfig
    allocator: Allocator | None
    focus: ConferenceFocus | None
    servers: list[SipServer[Any]]
    #: Reads the configuration again (the TOML file, then the same command line).
    load_again: Callable[[], DaemonConfig] | None = None


def stop_conferences(running: Running) -> None:
    """On SIGTERM, once new requests get 503: end every conference, or leave them all.

    With ``end_on_stop`` every allocator conference's anchor gets its BYE
    (external focus included) and the built-in focus's participants theirs;
    the servers' drain then waits (``stop_timeout`` at most) for those
    transactions.  Without it nothing is sent: the conferences are left as
    they are, for a daemon sharing the store to adopt.
    """
    allocator, focus = running.allocator, running.focus
    if allocator is not None:
        count = len(allocator.conferences)
    else:
        count = len(focus.conferences()) if focus is not None else 0
    if not running.config.end_on_stop:
        log.info("stopping: leaving %d conferences to the store", count, extra={"count": count})
        return
    log.info("stopping: ending %d conferences", count, extra={"count": count})
    now = time.time()
    if allocator is not None:
        allocator.end_all(now)
    if focus is not None:
        focus.end_all(now)
    for server in running.servers:
        server.transmit()


#: The config fields SIGHUP applies (the others need a restart); ``focus`` only
#: from one external focus list to another.
RELOADABLE: Final = frozenset(
    {
        "log_level",
        "trusted",
        "probe",
        "proxy",
        "proxy_uri",
        "probe_timeout",
        "focus_timeout",
        "idle_timeout",
        "keepalive_interval",
        "max_invitees",
        "rate_limit",
        "rate_window",
        "max_conferences",
        "focus",
        "end_on_stop",
        "credentials",
        "challenge",
    }
)


def _setting_names(fields: list[str]) -> list[str]:
    """Config fields as the TOML keys an operator edits (``limits.max_invitees``)."""
    keys = {setting.field or key.rpartition(".")[2]: key for key, setting in SETTINGS.items()}
    keys |= {"proxy_uri": "proxy", "overload": "limits.overload*"}
    keys |= {"credentials": "auth.username/password/realm", "challenge": "auth.*"}
    keys |= {"tls": "tls.*"}
    return list(dict.fromkeys(keys.get(name, name) for name in fields))


def reload_config(running: Running) -> None:
    """On SIGHUP: read the config again and apply what can change at run time.

    One INFO line says what changed (or that nothing did); settings that need
    a restart are named in a WARNING and keep their running value; an invalid
    file is an ERROR with its problems, and the running config stays.
    Never raises: SIGHUP never stops the daemon.
    """
    if running.load_again is None:
        log.warning("SIGHUP: no configuration to reload")
        return
    try:
        new = running.load_again()
    except ConfigError as error:
        log.error("config reload failed, keeping the running config: %s",
                  "; ".join(error.problems), extra={"problems": error.problems})  # fmt: skip
        return
    old = running.config
    changed = [f.name for f in dataclasses.fields(DaemonConfig)
               if getattr(new, f.name) != getattr(old, f.name)]  # fmt: skip
    external_both = bool(old.focus) and bool(new.focus) and running.allocator is not None
    fixed = [name for name in changed
             if name not in RELOADABLE or (name == "focus" and not external_both)]  # fmt: skip
    if fixed:
        log.warning("config reload: needs a restart, not applied: %s",
                    ", ".join(_setting_names(fixed)))  # fmt: skip
    applied = dataclasses.replace(new, **{name: getattr(old, name) for name in fixed})
    try:
        if running.allocator is not None:
            running.allocator.reconfigure(allocator_config(applied))
        if running.focus is not None:
            running.focus.trust(focus_trusted(applied))
    except Exception:
        log.exception("config reload failed, keeping the running config")
        return
    logging.getLogger().setLevel(applied.log_level.upper())
    running.config = applied
    done = [name for name in changed if name not in fixed]
    if done:
        log.info("config reloaded: changed %s", ", ".join(_setting_names(done)),
                 extra={"changed": _setting_names(done)})  # fmt: skip
    else:
        log.info("config reloaded: nothing changed")


@contextlib.contextmanager
def _reload_on_sighup(running: Running) -> Iterator[None]:
    """SIGHUP calls :func:`reload_config` while the daemon runs."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, reload_config, running)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


async def _run(
    config: DaemonConfig,
    *,
    allocator_on: bool,
    focus_on: bool,
    loop_name: str = "asyncio",
    load_again: Callable[[], DaemonConfig] | None = None,
) -> int:
    store = await _open_store(config)
    if store is None:
        return 1
    try:
        return await _serve_with(
            store,
            config,
            allocator_on=allocator_on,
            focus_on=focus_on,
            loop_name=loop_name,
            load_again=load_again,
        )
    finally:
        await store.close()


def _focus_namespace(config: DaemonConfig) -> str:
    """Each daemon's built-in focus has its own records: its URIs name its address."""
    return f"focus@{_show(config.focus_advertised)}" if config.shared_store else "focus"


async def _focus_server(
    store: StateStore, config: DaemonConfig, metrics: Metrics | None = None
) -> tuple[ConferenceFocus, FocusMedia, SipServer[Any]]:
    focus = build_focus(config)
    namespace = _focus_namespace(config)
    restored = await restore_core(store, focus, time.time(), log, namespace=namespace)
    log.info("built-in focus: %d conference(s) restored from %s", restored, config.store)
    media = FocusMedia(
        focus, RtpRelay(config.media_address), logger=log, on_media_event=_media_event
    )
    server = SipServer(
        focus,
        host=config.focus_listen.host,
        port=config.focus_listen.port,
        clock=time.time,
        on_event=_counted(_focus_events(media), metrics),
        persistence=Persistence(store, namespace, logger=log, name=config.store),
    )
    media.attach(server)  # a restored port that cannot be bound ends its call
    return focus, media, server


async def _allocator_server(
    store: StateStore, config: DaemonConfig, metrics: Metrics | None = None
) -> tuple[Allocator, Cluster | None, SipServer[Any], AsteriskAmi | None]:
    """The allocator behind its server; with a shared store, among the other daemons."""
    allocator = build_allocator(config)
    cluster: Cluster | None = None
    if config.shared_store:
        cluster = Cluster(
            store, allocator, owner=_show(config.advertised), lease_ttl=config.lease_ttl, logger=log
        )
        persistence = Persistence(
            store, allocator.namespace, owner=cluster.owner, guard=cluster, logger=log,
            name=config.store,
        )  # fmt: skip
    else:
        persistence = Persistence(store, allocator.namespace, logger=log, name=config.store)
    ami = _asterisk_ami(config, allocator)
    on_event = _counted(_event_logger("allocator"), metrics)
    server = SipServer(
        allocator,
        host=config.listen.host,
        port=config.listen.port,
        clock=time.time,
        on_event=on_event if ami is None else _both(on_event, ami.on_event),
        overload=config.overload,
        persistence=persistence,
        follow_ups=cluster,
        tls=config.tls,
    )
    if ami is not None:
        ami.attach(server)
    if cluster is not None:
        cluster.attach(server)
        resumed = await cluster.start(time.time())
        log.info(
            "%d conference(s) resumed from %s (lease owner %s, lease %g s)",
            resumed, config.store, cluster.owner, config.lease_ttl,
        )  # fmt: skip
    else:
        restored = await restore_core(store, allocator, time.time(), log)
        log.info("%d conference(s) restored from %s", restored, config.store)
    return allocator, cluster, server, ami


def _asterisk_ami(config: DaemonConfig, allocator: Allocator) -> AsteriskAmi | None:
    """The asterisk profile's control channel (``[asterisk] ami``), or None when off."""
    if config.asterisk_ami is None:
        return None
    address = config.asterisk_ami
    return AsteriskAmi(
        allocator,
        address.host,
        address.port,
        config.asterisk_ami_user,
        config.asterisk_ami_secret,
        logger=log,
    )


def _both(first: Callable[[Any], None], second: Callable[[Any], None]) -> Callable[[Any], None]:
    """One ``on_event`` that calls two, in order."""

    def on_event(event: Any) -> None:
        first(event)
        second(event)

    return on_event


async def _serve_with(
    store: StateStore,
    config: DaemonConfig,
    *,
    allocator_on: bool,
    focus_on: bool,
    loop_name: str,
    load_again: Callable[[], DaemonConfig] | None,
) -> int:
    _short_gc_pauses()

    servers: list[SipServer[Any]] = []
    focus: ConferenceFocus | None = None
    allocator: Allocator | None = None
    media: FocusMedia | None = None
    cluster: Cluster | None = None
    ami: AsteriskAmi | None = None
    metrics = Metrics() if config.metrics_listen is not None else None
    if focus_on:
        # First: the allocator's restored conferences check their anchors on it.
        focus, media, focus_server = await _focus_server(store, config, metrics)
        servers.append(focus_server)
    if allocator_on:
        allocator, cluster, allocator_server, ami = await _allocator_server(store, config, metrics)
        servers.append(allocator_server)
    endpoint = _health_endpoint(config, metrics, servers, media)
    problem = await _start_listening(servers, endpoint)
    if problem is not None:
        click.echo(f"vidim-daemon: {problem}", err=True)
        if cluster is not None:
            await cluster.close()
        if media is not None:
            await media.close()
        return 2
    if ami is not None:
        await ami.start()
        log.info("Asterisk AMI: %s:%d (user %s)", ami.host, ami.port, config.asterisk_ami_user)
    tls = f", TLS on port {config.tls.port}" if config.tls is not None and allocator_on else ""
    what = " and ".join(
        (["allocator on " + _show(config.listen) + tls] if allocator_on else [])
        + ([f"built-in focus on {_show(config.focus_listen)}"] if focus_on else [])
    )
    log.info(
        "vidim-daemon %s: %s (UDP and TCP), event loop %s",
        __version__,
        what,
        loop_name,
        extra={"event_loop": loop_name},
    )

    running = Running(config, allocator, focus, servers, load_again)
    with _reload_on_sighup(running):
        await serve_forever_until_signal(
            servers,
            before_close=lambda: stop_conferences(running),
            drain=running.config.stop_timeout,
            refuse_for=running.config.refuse_on_stop,
        )
    if cluster is not None:
        await cluster.close()
    if ami is not None:
        await ami.close()
    if media is not None:
        await media.close()
    if endpoint is not None:
        await endpoint.close()
    log.info("stopped")
    return 0


def _health_endpoint(
    config: DaemonConfig,
    metrics: Metrics | None,
    servers: list[SipServer[Any]],
    media: FocusMedia | None,
) -> HealthEndpoint | None:
    """The metrics and health endpoint on ``metrics_listen``, watching every server (or None)."""
    if config.metrics_listen is None or metrics is None:
        return None
    for server in servers:
        metrics.watch("focus" if isinstance(server.core, ConferenceFocus) else "allocator", server)
    if media is not None:
        metrics.watch_relay(media.relay)
    address = config.metrics_listen
    return HealthEndpoint(metrics, servers, host=address.host, port=address.port, logger=log)


async def _start_listening(
    servers: list[SipServer[Any]], endpoint: HealthEndpoint | None
) -> str | None:
    """Bind the health endpoint, then every SIP server; or the one line saying what could not be.

    A port already taken (or a privileged one, or an address not on this host)
    closes whatever was opened already.
    """
    address = ""
    try:
        if endpoint is not None:
            address = f"{_show(Address(endpoint.host, endpoint.port))} (metrics, TCP)"
            await endpoint.start()
        for server in servers:
            address = f"{_show(Address(server.host, server.port))} (UDP and TCP)"
            if server.tls_port is not None:
                address += f" or {_show(Address(server.host, server.tls_port))} (TLS)"
            await server.start()
    except OSError as error:
        for server in servers:
            if server.started:
                await server.close(drain=0.0)
            elif server.persistence is not None:
                await server.persistence.close()
        if endpoint is not None:
            await endpoint.close()
        return f"cannot listen on {address}: {_os_reason(error)}"
    return None


def _os_reason(error: OSError) -> str:
    """``address already in use``: the OS's words, without the errno."""
    reason = os.strerror(error.errno) if error.errno else str(error)
    return reason[:1].lower() + reason[1:]


def _serve(
    config: DaemonConfig,
    *,
    allocator_on: bool,
    focus_on: bool,
    load_again: Callable[[], DaemonConfig] | None = None,
) -> int:
    """Run the daemon on the configured event loop (``event_loop``: auto, uvloop, asyncio)."""
    try:
        factory, name = loop_factory(config.event_loop)
    except ImportError:
        click.echo(
            "vidim-daemon: event_loop = uvloop, but uvloop is not installed "
            "(pip install 'vidim[fast]')",
            err=True,
        )
        return 2
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(
            _run(
                config,
                allocator_on=allocator_on,
                focus_on=focus_on,
                loop_name=name,
                load_again=load_again,
            )
        )


def _show(address: Address) -> str:
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"{host}:{address.port}"


def _tls_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The ``--tls-*`` options of ``run``: the ``[tls]`` table on the command line."""
    options = [
        click.option(
            "--tls-listen",
            metavar="HOST:PORT",
            help="Allocator over TLS, on --listen's host (needs a certificate and key) [off].",
        ),
        click.option("--tls-certificate", metavar="PEM", help="TLS server certificate [none]."),
        click.option("--tls-key", metavar="PEM", help="Its private key [none]."),
        click.option(
            "--tls-ca-file",
            metavar="PEM",
            help="CAs TLS peers are verified against [the system's store].",
        ),
        click.option(
            "--no-tls-verify",
            is_flag=True,
            help="Do not verify TLS peers (tests and closed labs only) [verified].",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _tls_overrides(options: dict[str, Any]) -> dict[str, Any]:
    """The ``--tls-*`` options given, as ``tls.*`` config keys."""
    out: dict[str, Any] = {
        f"tls.{key}": options[f"tls_{key}"]
        for key in ("listen", "certificate", "key", "ca_file")
        if options.get(f"tls_{key}")
    }
    if options.get("no_tls_verify"):
        out["tls.verify_peer"] = False
    return out


def _overrides(**options: Any) -> dict[str, Any]:
    """Command-line options that were given, as config keys."""
    out = _tls_overrides(options) | {
        key: list(value) if isinstance(value, tuple) else value  # --focus, --trusted
        for key, value in options.items()
        if key in SETTINGS and value not in (None, (), False)
    }
    if options.get("no_probe"):
        out["probe"] = False
    if options.get("end_on_stop") is False:  # --no-end-on-stop
        out["end_on_stop"] = False
    if options.get("asterisk_ami"):  # the credentials stay in the file
        out["asterisk"] = {"ami": options["asterisk_ami"]}
    return out


def _load_or_exit(path: str | None, overrides: dict[str, Any]) -> DaemonConfig:
    try:
        return load(path, overrides)
    except ConfigError as error:
        for problem in error.problems:
            click.echo(f"vidim-daemon: {problem}", err=True)
        sys.exit(2)


_COMMON = [
    click.option(
        "--config", "config_path", type=click.Path(dir_okay=False), help="TOML file [none]."
    ),
    click.option("--domain", help=f"SIP domain served [{DEFAULTS['domain']}]."),
    click.option(
        "--trusted",
        multiple=True,
        metavar="CIDR",
        help="Trusted network (repeatable) [127.0.0.0/8, ::1/128].",
    ),
    click.option(
        "--store",
        metavar="URL",
        help="Where conferences are kept: sqlite:PATH, redis://HOST:PORT/DB or memory: "
        "[sqlite:<state-dir>/vidim.sqlite3].",
    ),
    click.option(
        "--state-dir",
        metavar="DIR",
        help="The embedded store's directory [$XDG_STATE_HOME/vidim, else ./vidim-state].",
    ),
    click.option(
        "--log-level",
        type=click.Choice(["debug", "info", "warning", "error"]),
        help=f"debug logs every message in and out [{DEFAULTS['log_level']}].",
    ),
    click.option("--log-json", is_flag=True, help="One JSON object per log line [off: plain]."),
    click.option(
        "--event-loop",
        type=click.Choice(["auto", "uvloop", "asyncio"]),
        help="auto: uvloop when installed, else asyncio's [auto].",
    ),
    click.option(
        "--end-on-stop/--no-end-on-stop",
        default=None,
        help="On SIGTERM end every conference, or leave them to the store "
        "[end, but leave with a Redis store].",
    ),
    click.option(
        "--advertise",
        metavar="HOST[:PORT]",
        help="The address peers reach, written in Call-IDs, Vias, Contacts and the "
        "focus's URIs; needed to listen on 0.0.0.0 or :: [the listen addresses].",
    ),
    click.option(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="Serve Prometheus /metrics, /healthz and /readyz over HTTP, e.g. "
        "127.0.0.1:9470 [off].",
    ),
]


def _common(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_COMMON):
        func = option(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vidim-daemon")
def main() -> None:
    """vidim: escalate an instant message into a video conference."""


@main.command()
@_common
@click.option(
    "--listen", metavar="HOST:PORT", help=f"Allocator, UDP and TCP [{DEFAULTS['listen']}]."
)
@click.option(
    "--focus",
    multiple=True,
    metavar="URI",
    help="External focus (repeatable: failover) [none: the built-in focus].",
)
@click.option(
    "--focus-listen", metavar="HOST:PORT", help=f"Built-in focus [{DEFAULTS['focus_listen']}]."
)
@click.option(
    "--profile",
    type=click.Choice(["rfc4579", "asterisk", "freeswitch"]),
    help=f"How the focus is spoken to [{DEFAULTS['profile']}].",
)
@click.option("--proxy", metavar="URI", help="The IM server for IMs and probes [none: direct].")
@click.option("--service-uri", metavar="URI", help="Command-form address [sip:vidim@<domain>].")
@click.option("--no-probe", is_flag=True, help="Do not probe invitees with OPTIONS [probing on].")
@click.option(
    "--asterisk-ami",
    metavar="HOST:PORT",
    help="Asterisk's manager interface, for --profile asterisk (user and secret in "
    "[asterisk] of --config) [off].",
)
@_tls_options
def run(config_path: str | None, **options: Any) -> None:
    """Run the allocator and, unless --focus is given, the built-in focus."""
    overrides = _overrides(**options)
    config = _load_or_exit(config_path, overrides)
    setup_logging(config.log_level, json_lines=config.log_json)
    sys.exit(
        _serve(
            config,
            allocator_on=True,
            focus_on=config.builtin_focus,
            load_again=lambda: load(config_path, overrides),
        )
    )


@main.command()
@_common
@click.option(
    "--focus-listen", metavar="HOST:PORT", help=f"Built-in focus [{DEFAULTS['focus_listen']}]."
)
def focus(config_path: str | None, **options: Any) -> None:
    """Run the built-in focus alone."""
    overrides = _overrides(**options)
    config = _load_or_exit(config_path, overrides)
    setup_logging(config.log_level, json_lines=config.log_json)
    sys.exit(
        _serve(
            config,
            allocator_on=False,
            focus_on=True,
            load_again=lambda: load(config_path, overrides),
        )
    )


@main.command("check-config")
@click.argument("path", type=click.Path(dir_okay=False))
def check_config(path: str) -> None:
    """Validate a TOML configuration and say precisely what is wrong."""
    config = _load_or_exit(path, {})
    focus_text = (
        ", ".join(config.focus) if config.focus else f"built-in on {_show(config.focus_listen)}"
    )
    click.echo(
        f"{path}: OK: allocator on {_show(config.listen)}, focus {focus_text}, "
        f"profile {config.profile.value}, proxy {config.proxy_uri or 'none'}, "
        f"domain {config.domain}, service {config.service_uri}"
        + (f", TLS on port {config.tls.port}" if config.tls is not None else "")
    )
