"""vidim.metrics on the built-in focus: conferences and participants in a call, at scrape time."""

from __future__ import annotations

from types import SimpleNamespace

from focus_peers import Softphone, baresip_offer, focus_world, make_conference
from prometheus_client.parser import text_string_to_metric_families

from vidim.metrics import Metrics
from vidim.sip import Address
from vidim.vocabulary import Mode

ALICE, BOB, CAROL = "sip:alice@example.com", "sip:bob@example.com", "sip:carol@example.com"


def gauges(metrics: Metrics) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(metrics.exposition().decode())
        for sample in family.samples
        if sample.name in ("vidim_focus_conferences", "vidim_focus_participants")
    }


def test_focus_conferences_and_participants_in_a_call() -> None:
    net, focus, _, allocator = focus_world()
    metrics = Metrics()
    metrics.watch("focus", SimpleNamespace(core=focus, overload=None, persistence=None))
    assert gauges(metrics) == {"vidim_focus_conferences": 0, "vidim_focus_participants": 0}
    conference = make_conference([(ALICE, Mode.VIDEO), (BOB, Mode.VIDEO), (CAROL, Mode.AUDIO)])
    allocator.create(conference, net.now)
    net.advance()
    for index, (uri, port) in enumerate(((BOB, 6000), (CAROL, 6010))):
        phone = Softphone(
            uri[4:].split("@")[0], Address("127.0.0.1", port), baresip_offer(port, port + 2)
        )
        net.add(phone)
        phone.call(allocator.join_uri(uri), net.now)
        net.advance()
        assert phone.final(phone.invite).status == 200  # type: ignore[arg-type]
        assert gauges(metrics)["vidim_focus_participants"] == index + 1
    assert gauges(metrics)["vidim_focus_conferences"] == 1
