"""RFC 3263 section 4 on recorded DNS answers: which targets, in which order, over what.

No network: :func:`locate_with` answers each query from a table, and records
the queries so that a test can say which lookups were (not) made.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence

import pytest
from sip_factory import request_bytes

from vidim.sip import (
    Address,
    Request,
    parse_message,
    parse_uri,
    request_destination,
    uri_destination,
)
from vidim.sip.locate import Naptr, Query, Record, Srv, locate_with, order_srv


def located(
    destination: Address,
    answers: Mapping[Query, Sequence[Record]],
    transports: Sequence[str] = ("UDP", "TCP"),
) -> tuple[list[Address], list[Query]]:
    asked: list[Query] = []

    def answer(query: Query) -> Sequence[Record]:
        asked.append(query)
        return answers.get(query, ())

    return locate_with(destination, answer, transports=transports), asked


def srv(target: str, port: int, priority: int = 10, weight: int = 0) -> Srv:
    return Srv(priority=priority, weight=weight, port=port, target=target)


def naptr(service: str, replacement: str, order: int = 50, preference: int = 50) -> Naptr:
    return Naptr(
        order=order, preference=preference, flags="s", service=service, replacement=replacement
    )


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sip:bob@example.com", Address("example.com", 5060, "UDP", "NAPTR")),
        ("sip:bob@example.com:5070", Address("example.com", 5070, "UDP", "A")),
        ("sip:bob@example.com;transport=tcp", Address("example.com", 5060, "TCP", "SRV")),
        ("sips:bob@example.com", Address("example.com", 5061, "TLS", "NAPTR")),
        ("sip:bob@192.0.2.1", Address("192.0.2.1", 5060, "UDP")),
    ],
)
def test_the_uri_says_which_records_a_name_starts_with(uri: str, expected: Address) -> None:
    destination = uri_destination(parse_uri(uri))
    assert destination == expected
    if expected.host != "192.0.2.1":
        assert destination.lookup == expected.lookup


def test_a_dialog_transport_or_a_large_request_fixes_the_transport() -> None:
    """NAPTR may not choose UDP again for what RFC 3261 18.1.1 sends over TCP."""
    uri = parse_uri("sip:bob@example.com")
    assert uri_destination(uri, default_transport="TCP").lookup == "SRV"
    assert uri_destination(uri, size=5000).lookup == "SRV"
    big = parse_message(request_bytes(body=b"x" * 2000))
    assert isinstance(big, Request)
    destination = request_destination(big, uri)
    assert (destination.transport, destination.lookup) == ("TCP", "SRV")


def test_an_ip_address_is_not_looked_up() -> None:
    destination = Address("192.0.2.7", 5070, "TCP", "NAPTR")
    assert located(destination, {}) == ([destination], [])


def test_a_port_given_asks_only_for_addresses() -> None:
    answers = {Query("example.com", "ADDRESS"): ["192.0.2.1", "2001:db8::1"]}
    targets, asked = located(Address("example.com", 5070, "UDP", "A"), answers)
    assert targets == [Address("192.0.2.1", 5070, "UDP"), Address("2001:db8::1", 5070, "UDP")]
    assert asked == [Query("example.com", "ADDRESS")]


def test_naptr_chooses_the_transport_by_order_and_preference() -> None:
    answers: dict[Query, Sequence[Record]] = {
        Query("example.com", "NAPTR"): [
            naptr("SIP+D2U", "_sip._udp.example.com", preference=20),
            naptr("SIP+D2T", "_sip._tcp.example.com", preference=10),
            naptr("SIPS+D2T", "_sips._tcp.example.com", order=10),  # no TLS here: skipped
            Naptr(order=1, preference=1, flags="u", service="SIP+D2U", replacement="x.example"),
            naptr("E2U+sip", "_sip._udp.example.com", order=1),  # not a SIP service
        ],
        Query("_sip._tcp.example.com", "SRV"): [srv("tcp.example.com", 5062)],
        Query("_sip._udp.example.com", "SRV"): [srv("udp.example.com", 5064)],
        Query("tcp.example.com", "ADDRESS"): ["192.0.2.10"],
        Query("udp.example.com", "ADDRESS"): ["192.0.2.20"],
    }
    targets, asked = located(Address("example.com", 5060, "UDP", "NAPTR"), answers)
    assert targets == [Address("192.0.2.10", 5062, "TCP"), Address("192.0.2.20", 5064, "UDP")]
    assert Query("_sips._tcp.example.com", "SRV") not in asked
    # With TLS among our transports, the SIPS service of the lowest order comes first.
    targets, _ = located(
        Address("example.com", 5060, "UDP", "NAPTR"),
        {
            **answers,
            Query("_sips._tcp.example.com", "SRV"): [srv("tls.example.com", 5061)],
            Query("tls.example.com", "ADDRESS"): ["192.0.2.50"],
        },
        transports=("UDP", "TCP", "TLS"),
    )
    assert targets[0] == Address("192.0.2.50", 5061, "TLS")


def test_a_sips_uri_uses_only_the_sips_service() -> None:
    answers: dict[Query, Sequence[Record]] = {
        Query("example.com", "NAPTR"): [
            naptr("SIP+D2U", "_sip._udp.example.com", order=1),
            naptr("SIPS+D2T", "_sips._tcp.example.com", order=2),
        ],
        Query("_sips._tcp.example.com", "SRV"): [srv("tls.example.com", 5081)],
        Query("_sip._udp.example.com", "SRV"): [srv("udp.example.com", 5082)],
        Query("tls.example.com", "ADDRESS"): ["192.0.2.30"],
        Query("udp.example.com", "ADDRESS"): ["192.0.2.40"],
    }
    targets, asked = located(Address("example.com", 5061, "TLS", "NAPTR"), answers)
    assert targets == [Address("192.0.2.30", 5081, "TLS")]
    assert Query("_sip._udp.example.com", "SRV") not in asked


def test_without_naptr_every_transport_has_its_srv_query_the_uris_first() -> None:
    answers: dict[Query, Sequence[Record]] = {
        Query("_sip._udp.example.com", "SRV"): [srv("a.example.com", 5070)],
        Query("_sip._tcp.example.com", "SRV"): [srv("a.example.com", 5071)],
        Query("a.example.com", "ADDRESS"): ["192.0.2.1"],
    }
    targets, asked = located(Address("example.com", 5060, "UDP", "NAPTR"), answers)
    assert targets == [Address("192.0.2.1", 5070, "UDP"), Address("192.0.2.1", 5071, "TCP")]
    assert asked[0] == Query("example.com", "NAPTR")


def test_a_named_transport_asks_only_its_srv_name() -> None:
    answers: dict[Query, Sequence[Record]] = {
        Query("_sip._tcp.example.com", "SRV"): [
            srv("backup.example.com", 5090, priority=20),
            srv("main.example.com", 5080, priority=10),
        ],
        Query("main.example.com", "ADDRESS"): ["192.0.2.1"],
        Query("backup.example.com", "ADDRESS"): ["192.0.2.2"],
    }
    targets, asked = located(Address("example.com", 5060, "TCP", "SRV"), answers)
    assert targets == [Address("192.0.2.1", 5080, "TCP"), Address("192.0.2.2", 5090, "TCP")]
    assert Query("example.com", "NAPTR") not in asked
    assert Query("_sip._udp.example.com", "SRV") not in asked


def test_no_srv_records_fall_back_to_the_addresses_on_the_default_port() -> None:
    answers = {Query("example.com", "ADDRESS"): ["192.0.2.9"]}
    targets, asked = located(Address("example.com", 5060, "UDP", "NAPTR"), answers)
    assert targets == [Address("192.0.2.9", 5060, "UDP")]
    assert [query.kind for query in asked] == ["NAPTR", "SRV", "SRV", "ADDRESS"]
    targets, _ = located(Address("example.com", 5060, "TCP", "SRV"), answers)
    assert targets == [Address("192.0.2.9", 5060, "TCP")]


def test_a_dot_target_means_no_service_and_no_fallback() -> None:
    answers: dict[Query, Sequence[Record]] = {
        Query("_sip._tcp.example.com", "SRV"): [srv(".", 0)],
        Query("example.com", "ADDRESS"): ["192.0.2.9"],
    }
    assert located(Address("example.com", 5060, "TCP", "SRV"), answers)[0] == []


def test_a_name_without_any_record_has_no_target() -> None:
    assert located(Address("nowhere.invalid", 5060, "UDP", "NAPTR"), {})[0] == []


def test_srv_priority_is_strict_and_weight_shares_the_first_place() -> None:
    """RFC 2782: lowest priority first; within one, a pick proportional to weight."""
    records = [
        srv("light", 1, priority=10, weight=10),
        srv("heavy", 2, priority=10, weight=90),
        srv("zero", 3, priority=10, weight=0),
        srv("later", 4, priority=20, weight=100),
    ]
    rng = random.Random(18)
    firsts: Counter[str] = Counter()
    for _ in range(2000):
        ordered = order_srv(records, rng)
        assert sorted(r.target for r in ordered) == ["heavy", "later", "light", "zero"]
        assert ordered[-1].target == "later"
        firsts[ordered[0].target] += 1
    assert 1650 < firsts["heavy"] < 1950, firsts
    assert 120 < firsts["light"] < 300, firsts
    assert firsts["zero"] < 60, firsts
