"""vidim.metrics: what the allocator's events and counters become, scraped as Prometheus text.

A real allocator on a virtual clock (its INVITE to the focus unanswered, so
retransmitted); the server's overload guard, state store and the RTP relay
are stand-ins with the attributes the metrics read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from allocator_factory import message_request
from prometheus_client.parser import text_string_to_metric_families

from vidim.aio import PortStats
from vidim.allocator import Allocator, AllocatorConfig, RequestPolicy
from vidim.allocator import events as ev
from vidim.focus import events as focus_events
from vidim.focus.media import Route
from vidim.metrics import Metrics
from vidim.rtp import ReceiverReport, ReportBlock, RtpPacket, build_rtcp
from vidim.rtpstats import MediaStats
from vidim.sip import Address
from vidim.vocabulary import Mode

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(metrics: Metrics) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics.exposition().decode())
        for sample in family.samples
    }


@dataclass
class Overload:
    refused: int = 0
    overloaded_now: bool = False


@dataclass
class Store:
    failures: int = 0
    available: bool = True


@dataclass
class Server:
    core: Any
    overload: Overload | None = field(default_factory=Overload)
    persistence: Store | None = field(default_factory=Store)


class Relay:
    def __init__(self, stats: dict[int, PortStats], media: MediaStats | None = None) -> None:
        self._stats = stats
        self.media = media if media is not None else MediaStats()

    def stats(self) -> dict[int, PortStats]:
        return self._stats


def test_setup_latency_from_the_message_to_the_focus_answer_and_the_invitations() -> None:
    metrics = Metrics()
    metrics.on_event(ev.RequestAccepted(call_id="m1", requester="sip:a@x", command="new",
                                        conference_id="c1"), 100.0)  # fmt: skip
    metrics.on_event(ev.ConferenceReady(conference_id="c1", conference_uri="sip:conf@f"), 100.25)
    for invitee in ("sip:b@x", "sip:c@x"):  # one setup: the second invitation is not timed
        metrics.on_event(ev.InvitationSent(conference_id="c1", invitee=invitee, mode=Mode.VIDEO),
                         100.5)  # fmt: skip
    # A follow-up (/status) and a conference restored (never accepted here) are not setups.
    metrics.on_event(ev.RequestAccepted(call_id="m2", requester="sip:a@x", command="status",
                                        conference_id="c1"), 101.0)  # fmt: skip
    metrics.on_event(ev.ConferenceReady(conference_id="c9", conference_uri="sip:conf@f"), 101.0)
    got = scrape(metrics)
    focus_answered, invited = (("stage", "focus_answered"),), (("stage", "invitations_sent"),)
    assert got[("vidim_setup_seconds_count", focus_answered)] == 1
    assert got[("vidim_setup_seconds_sum", focus_answered)] == 0.25
    assert got[("vidim_setup_seconds_bucket", (("le", "0.25"), *focus_answered))] == 1
    assert got[("vidim_setup_seconds_bucket", (("le", "0.1"), *focus_answered))] == 0
    assert got[("vidim_setup_seconds_count", invited)] == 1
    assert got[("vidim_setup_seconds_sum", invited)] == 0.5
    assert got[("vidim_requests_total", (("outcome", "accepted"), ("status", "202")))] == 2
    assert metrics._setups == {}  # nothing left behind


def test_refusals_failovers_and_how_conferences_finish_are_counted() -> None:
    metrics = Metrics()
    metrics.on_event(ev.RequestAccepted(call_id="m1", requester="sip:a@x", command="new",
                                        conference_id="c1"), 1.0)  # fmt: skip
    for status in (403, 403, 413):
        metrics.on_event(ev.RequestRefused(call_id="m", requester=None, status=status,
                                           reason="no"), 1.0)  # fmt: skip
    metrics.on_event(ev.FocusFailover(conference_id="c1", failed="sip:f1", next="sip:f2",
                                      reason="503 Service Unavailable"), 9.0)  # fmt: skip
    metrics.on_event(ev.ConferenceFailed(conference_id="c1", reason="no focus"), 17.0)
    metrics.on_event(ev.ConferenceEnded(conference_id="c2", reason="ended"), 17.0)
    metrics.on_event(ev.MessageIgnored(reason="bad", summary="x"), 17.0)
    metrics.on_event(focus_events.ParticipantRefused(conference_uri=None, call_id="i",
                                                     status=403, reason="no", source="s"), 17.0)  # fmt: skip
    got = scrape(metrics)
    assert got[("vidim_requests_total", (("outcome", "refused"), ("status", "403")))] == 2
    assert got[("vidim_requests_total", (("outcome", "refused"), ("status", "413")))] == 1
    assert got[("vidim_focus_failovers_total", ())] == 1
    assert got[("vidim_conferences_finished_total", (("outcome", "failed"),))] == 1
    assert got[("vidim_conferences_finished_total", (("outcome", "ended"),))] == 1
    assert got[("vidim_messages_ignored_total", (("server", "allocator"),))] == 1
    assert got[("vidim_focus_refusals_total", (("status", "403"),))] == 1
    assert ("vidim_setup_seconds_count", (("stage", "focus_answered"),)) not in got
    assert metrics._setups == {}


def test_live_state_is_read_at_scrape_time() -> None:
    """Conferences by state, retransmissions, overload, store errors and RTP, when Prometheus asks."""
    allocator = Allocator(
        AllocatorConfig(
            requests=RequestPolicy.for_domain("example.com"),
            focus_uris=("sip:conference-factory@192.0.2.1:5080",),
            probe=False,
        )
    )
    request = message_request("sip:bob@example.com", extra=[("X-Vidim-Mode", "video")])
    allocator.receive(request, Address("127.0.0.1", 5060), 0.0)
    allocator.messages_to_send()
    allocator.handle_timer(0.5)  # Timer A: the INVITE to the (silent) focus again
    metrics = Metrics()
    server = Server(allocator, Overload(refused=7), Store(failures=2, available=False))
    metrics.watch("allocator", server)
    metrics.watch_relay(Relay({40000: PortStats(packets_in=3, bytes_in=300, packets_out=6),
                               40002: PortStats(packets_in=1, bytes_in=90, dropped=4)}))  # fmt: skip
    got = scrape(metrics)
    assert got[("vidim_conferences", (("state", "allocating"),))] == 1
    assert got[("vidim_conferences", (("state", "active"),))] == 0
    assert got[("vidim_sip_retransmissions_total", (("server", "allocator"),))] == 1
    assert got[("vidim_overload_refusals_total", (("server", "allocator"),))] == 7
    assert got[("vidim_store_errors_total", (("server", "allocator"),))] == 2
    assert got[("vidim_store_available", (("server", "allocator"),))] == 0
    assert got[("vidim_rtp_packets_in_total", ())] == 4
    assert got[("vidim_rtp_bytes_in_total", ())] == 390
    assert got[("vidim_rtp_packets_out_total", ())] == 6
    assert got[("vidim_rtp_dropped_total", ())] == 4
    assert got[("vidim_rtp_errors_total", ())] == 0
    assert metrics.not_ready() == ["allocator: state store unreachable"]
    server.overload = Overload(overloaded_now=True)
    server.persistence = Store()
    assert metrics.not_ready() == ["allocator: overloaded"]
    allocator.handle_timer(1.5)
    assert scrape(metrics)[("vidim_sip_retransmissions_total", (("server", "allocator"),))] == 2


def test_participants_media_from_the_relay_is_exported_per_participant_and_kind() -> None:
    """RTCP loss and jitter, the relay's own counts and late packets, labelled by who and what."""
    media = MediaStats()
    bob = Route(100, "sip:bob@x", "video", False, ("127.0.0.1", 4000))
    bob_rtcp = Route(101, "sip:bob@x", "video", True, ("127.0.0.1", 4001))
    for seq in (1, 3, 2):
        media.received(bob, bytes(RtpPacket(payload_type=96, sequence_number=seq, timestamp=0,
                                            ssrc=7)), 0.0)  # fmt: skip
    lossy = ReportBlock(ssrc=9, fraction_lost=128, packets_lost=40, highest_sequence=0, jitter=9000)
    media.received(bob_rtcp, build_rtcp([ReceiverReport(ssrc=7, reports=(lossy,))]), 1.0)
    media.sent(bob, 1000)
    metrics = Metrics()
    metrics.watch_relay(Relay({}, media))
    got = scrape(metrics)
    who = (("kind", "video"), ("participant", "sip:bob@x"))
    assert got[("vidim_rtp_fraction_lost", who)] == 0.5
    assert got[("vidim_rtp_lost_packets_total", who)] == 40
    assert got[("vidim_rtp_jitter_seconds", who)] == pytest.approx(0.1)
    assert got[("vidim_rtp_out_of_order_total", who)] == 1
    assert got[("vidim_rtcp_malformed_total", who)] == 0
    assert got[("vidim_rtp_participant_packets_total", (("direction", "in"), *who))] == 4
    assert got[("vidim_rtp_participant_packets_total", (("direction", "out"), *who))] == 1
    assert got[("vidim_rtp_participant_bytes_total", (("direction", "out"), *who))] == 1000
