"""Prometheus metrics of vidim's servers: what their events and counters say.

The cores (allocator, focus) know nothing of metrics: they report events and
keep plain counters.  :class:`Metrics` turns those into ``prometheus_client``
metrics in a registry of its own, in two ways:

* **from events**, as they happen: :meth:`Metrics.on_event` takes every
  allocator and focus event with the time it was seen (requests by outcome and
  status, setup latency, focus failovers, how conferences finish);
* **at scrape time**, from the objects :meth:`Metrics.watch` and
  :meth:`Metrics.watch_relay` were given: conferences by state, built-in focus
  participants, SIP retransmissions, overload refusals, state store errors, RTP
  packets and bytes.  Reading live state when Prometheus asks (an O(conferences)
  walk) keeps the gauges right after a restart or an adoption, which made no
  events.

No I/O and no clock here: the caller passes ``now`` with each event, and
serves :meth:`Metrics.exposition` however it likes (the daemon on
``--metrics-listen``, docs/metrics.md lists every metric).  Everything is read
on the event loop's thread: the objects watched are not thread-safe.
"""

from __future__ import annotations

import dataclasses
from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from typing import Any, Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .aio.rtp import PortStats
from .allocator import Allocator, ConferenceState
from .allocator import events as allocator_events
from .allocator.conference import FINAL_STATES
from .focus import ConferenceFocus
from .focus import events as focus_events
from .rtpstats import MediaStats

__all__ = ["CONTENT_TYPE", "SETUP_BUCKETS", "Metrics"]

#: The Content-Type of :meth:`Metrics.exposition` (Prometheus text format 0.0.4).
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

#: Setup latency buckets (seconds): a conference is normally up within tens of
#: milliseconds on a LAN; a focus that does not answer costs ``focus_timeout`` (8 s).
SETUP_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _Overload(Protocol):
    @property
    def refused(self) -> int: ...

    @property
    def overloaded_now(self) -> bool: ...


class _Persistence(Protocol):
    @property
    def failures(self) -> int: ...

    @property
    def available(self) -> bool: ...


class WatchedServer(Protocol):
    """What :meth:`Metrics.watch` reads of a server (``vidim.aio.SipServer`` has it)."""

    @property
    def core(self) -> Any: ...

    @property
    def overload(self) -> _Overload | None: ...

    @property
    def persistence(self) -> _Persistence | None: ...


class WatchedRelay(Protocol):
    """What :meth:`Metrics.watch_relay` reads (``vidim.aio.RtpRelay`` has it)."""

    def stats(self) -> dict[int, Any]: ...

    @property
    def media(self) -> MediaStats: ...


class Metrics:
    """The metrics of one process's allocator and built-in focus, in :attr:`registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "vidim_requests",
            "vidim requests (MESSAGEs) answered by the allocator, by outcome and status",
            ["outcome", "status"],
            registry=self.registry,
        )
        self.setup_seconds = Histogram(
            "vidim_setup_seconds",
            "From a new conference's MESSAGE accepted until its focus answered "
            "(stage=focus_answered) and its invitations were sent (stage=invitations_sent)",
            ["stage"],
            buckets=SETUP_BUCKETS,
            registry=self.registry,
        )
        self.focus_failovers = Counter(
            "vidim_focus_failovers",
            "Conferences moved on to the next focus because one failed",
            registry=self.registry,
        )
        self.conferences_finished = Counter(
            "vidim_conferences_finished",
            "Allocator conferences over: ended (normally) or failed (no focus hosted them)",
            ["outcome"],
            registry=self.registry,
        )
        self.focus_refusals = Counter(
            "vidim_focus_refusals",
            "Calls and factory INVITEs the built-in focus refused, by status",
            ["status"],
            registry=self.registry,
        )
        self.ignored = Counter(
            "vidim_messages_ignored",
            "SIP messages ignored as malformed or unexpected (answered 400 when possible)",
            ["server"],
            registry=self.registry,
        )
        self._servers: list[tuple[str, WatchedServer]] = []
        self._relays: list[WatchedRelay] = []
        #: New conferences whose setup is being timed: id -> when accepted.
        self._setups: dict[str, float] = {}
        #: Those of them whose focus has answered.
        self._answered: set[str] = set()
        self.registry.register(_LiveState(self))

    # -- inputs -----------------------------------------------------------------------
    def watch(self, name: str, server: WatchedServer) -> None:
        """Read ``server`` (and its core) at each scrape; ``name`` is its ``server`` label."""
        self._servers.append((name, server))

    def watch_relay(self, relay: WatchedRelay) -> None:
        """Read the built-in focus's RTP counters at each scrape."""
        self._relays.append(relay)

    def on_event(self, event: object, now: float) -> None:
        """Count an allocator or focus event seen at ``now`` (seconds, any fixed origin)."""
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event, now)

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)

    # -- health -----------------------------------------------------------------------
    def not_ready(self) -> list[str]:
        """Why the process should get no new traffic now; empty when it is ready.

        The store unreachable, or the server refusing new requests for overload.
        (Whether it listens is the caller's to say: this sees no sockets.)
        """
        problems = []
        for name, server in self._servers:
            if server.persistence is not None and not server.persistence.available:
                problems.append(f"{name}: state store unreachable")
            if server.overload is not None and server.overload.overloaded_now:
                problems.append(f"{name}: overloaded")
        return problems

    # -- events -----------------------------------------------------------------------
    def _accepted(self, event: allocator_events.RequestAccepted, now: float) -> None:
        self.requests.labels("accepted", "202").inc()
        if event.command == "new" and event.conference_id is not None:
            self._setups[event.conference_id] = now

    def _refused(self, event: allocator_events.RequestRefused, now: float) -> None:
        self.requests.labels("refused", str(event.status)).inc()

    def _ignored(
        self, event: allocator_events.MessageIgnored | focus_events.MessageIgnored, now: float
    ) -> None:
        server = "focus" if isinstance(event, focus_events.MessageIgnored) else "allocator"
        self.ignored.labels(server).inc()

    def _ready(self, event: allocator_events.ConferenceReady, now: float) -> None:
        started = self._setups.get(event.conference_id)
        if started is not None:
            self.setup_seconds.labels("focus_answered").observe(now - started)
            self._answered.add(event.conference_id)

    def _invited(self, event: allocator_events.InvitationSent, now: float) -> None:
        # Every invitation of a new conference goes out at once, right after its focus answered.
        if event.conference_id in self._answered:
            self._answered.discard(event.conference_id)
            started = self._setups.pop(event.conference_id)
            self.setup_seconds.labels("invitations_sent").observe(now - started)

    def _failover(self, event: allocator_events.FocusFailover, now: float) -> None:
        self.focus_failovers.inc()

    def _finished(
        self,
        event: allocator_events.ConferenceEnded | allocator_events.ConferenceFailed,
        now: float,
    ) -> None:
        failed = isinstance(event, allocator_events.ConferenceFailed)
        self.conferences_finished.labels("failed" if failed else "ended").inc()
        self._setups.pop(event.conference_id, None)
        self._answered.discard(event.conference_id)

    def _focus_refused(self, event: focus_events.ParticipantRefused, now: float) -> None:
        self.focus_refusals.labels(str(event.status)).inc()


_HANDLERS: Final[dict[type, Any]] = {
    allocator_events.RequestAccepted: Metrics._accepted,
    allocator_events.RequestRefused: Metrics._refused,
    allocator_events.MessageIgnored: Metrics._ignored,
    allocator_events.ConferenceReady: Metrics._ready,
    allocator_events.InvitationSent: Metrics._invited,
    allocator_events.FocusFailover: Metrics._failover,
    allocator_events.ConferenceEnded: Metrics._finished,
    allocator_events.ConferenceFailed: Metrics._finished,
    focus_events.ParticipantRefused: Metrics._focus_refused,
    focus_events.MessageIgnored: Metrics._ignored,
}


class _LiveState(Collector):
    """The scrape-time metrics: read from the watched servers and relays when asked."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked: the families depend on what is watched

    def collect(self) -> Iterator[Metric]:
        servers = self._metrics._servers
        yield from _conferences(core for _, s in servers if isinstance(core := s.core, Allocator))
        yield from _focus(core for _, s in servers if isinstance(core := s.core, ConferenceFocus))
        yield _per_server(
            "vidim_sip_retransmissions",
            "SIP requests and responses sent again because no answer (or ACK) came in time",
            ((name, server.core.retransmissions) for name, server in servers),
        )
        yield _per_server(
            "vidim_overload_refusals",
            "New requests answered 503 because the server was overloaded",
            ((name, s.overload.refused) for name, s in servers if s.overload is not None),
        )
        yield _per_server(
            "vidim_store_errors",
            "State store writes that failed (each retried until the store answers)",
            ((name, s.persistence.failures) for name, s in servers if s.persistence is not None),
        )
        available = GaugeMetricFamily(
            "vidim_store_available",
            "1 while the state store answers, 0 while it fails (new conferences refused)",
            labels=["server"],
        )
        for name, server in servers:
            if server.persistence is not None:
                available.add_metric([name], float(server.persistence.available))
        yield available
        yield from _rtp(self._metrics._relays)
        yield from _participants_media(relay.media for relay in self._metrics._relays)


def _per_server(name: str, documentation: str, values: Iterable[tuple[str, int]]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=["server"])
    for server, value in values:
        family.add_metric([server], value)
    return family


def _conferences(allocators: Iterable[Allocator]) -> Iterator[Metric]:
    """Live conferences by state (ended and failed ones are gone); none without an allocator."""
    allocators = list(allocators)
    if not allocators:
        return
    states = Tally(
        conference.state
        for allocator in allocators
        for conference in allocator.conferences.values()
    )
    family = GaugeMetricFamily(
        "vidim_conferences", "Allocator conferences alive now, by state", labels=["state"]
    )
    for state in ConferenceState:
        if state not in FINAL_STATES:
            family.add_metric([state.value], states[state])
    yield family


def _focus(foci: Iterable[ConferenceFocus]) -> Iterator[Metric]:
    """The built-in focus's conferences and participants now; none without a focus."""
    foci = list(foci)
    if not foci:
        return
    snapshots = [snapshot for focus in foci for snapshot in focus.conferences()]
    yield GaugeMetricFamily(
        "vidim_focus_conferences", "Conferences on the built-in focus now", value=len(snapshots)
    )
    yield GaugeMetricFamily(
        "vidim_focus_participants",
        "Participants in a call with the built-in focus now",
        value=sum(len(snapshot.connected) for snapshot in snapshots),
    )


def _rtp(relays: Iterable[WatchedRelay]) -> Iterator[Metric]:
    """Every counter of ``PortStats``, summed over the ports (``vidim_rtp_<field>_total``)."""
    relays = list(relays)
    if not relays:
        return
    totals: Tally[str] = Tally({field.name: 0 for field in dataclasses.fields(PortStats)})
    for relay in relays:
        for stats in relay.stats().values():
            for field in dataclasses.fields(stats):
                totals[field.name] += getattr(stats, field.name)
    for name, value in sorted(totals.items()):
        yield CounterMetricFamily(
            f"vidim_rtp_{name}",
            f"The built-in focus's RTP relay, all ports: {name.replace('_', ' ')}",
            value=value,
        )


def _participants_media(relays: Iterable[MediaStats]) -> Iterator[Metric]:
    """Per participant and kind: the relay's own counts and the participant's RTCP reports."""
    relays = list(relays)
    if not relays:
        return
    labels = ["participant", "kind"]
    packets = CounterMetricFamily(
        "vidim_rtp_participant_packets",
        "Datagrams (RTP and RTCP) the relay got from (direction=in) or sent to (out) a participant",
        labels=[*labels, "direction"],
    )
    octets = CounterMetricFamily(
        "vidim_rtp_participant_bytes",
        "Bytes the relay got from (direction=in) and sent to (out) a participant",
        labels=[*labels, "direction"],
    )
    late = CounterMetricFamily(
        "vidim_rtp_out_of_order",
        "RTP packets from a participant that came after a later sequence number (late, reordered)",
        labels=labels,
    )
    malformed = CounterMetricFamily(
        "vidim_rtcp_malformed",
        "RTCP datagrams from a participant that did not parse",
        labels=labels,
    )
    lost = CounterMetricFamily(
        "vidim_rtp_lost_packets",
        "Packets a participant's RTCP reports say it lost of what the focus sent it (cumulative)",
        labels=labels,
    )
    fraction = GaugeMetricFamily(
        "vidim_rtp_fraction_lost",
        "Fraction (0-1) of packets lost since its previous RTCP report, as a participant reports",
        labels=labels,
    )
    jitter = GaugeMetricFamily(
        "vidim_rtp_jitter_seconds",
        "Interarrival jitter of what the focus sends a participant, from its latest RTCP report",
        labels=labels,
    )
    for media in relays:
        for (participant, kind), stream in sorted(media.streams().items()):
            key = [participant, kind]
            packets.add_metric([*key, "in"], stream.packets_in)
            packets.add_metric([*key, "out"], stream.packets_out)
            octets.add_metric([*key, "in"], stream.bytes_in)
            octets.add_metric([*key, "out"], stream.bytes_out)
            late.add_metric(key, stream.out_of_order)
            malformed.add_metric(key, stream.malformed_rtcp)
            lost.add_metric(key, stream.lost_packets)
            fraction.add_metric(key, stream.fraction_lost)
            if stream.jitter_seconds is not None:
                jitter.add_metric(key, stream.jitter_seconds)
    yield from (packets, octets, late, malformed, lost, fraction, jitter)
