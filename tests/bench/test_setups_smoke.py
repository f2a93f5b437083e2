"""Smoke test of bench/setups.py: a few seconds at a low rate, every setup completes.

Runs the real SIPp, Kamailio and vidim-daemon (installed by scripts/setup), so it
is marked ``integration``.  No timing is asserted: the machine is shared.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
from bench_scripts import load_script


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("setups")


def test_join_counts_a_setup_only_when_all_three_peers_saw_it(bench: ModuleType) -> None:
    requester = [
        ["202", "1", "100.000000", "0.000000", "100.000000", "2000.000000"],
        ["202", "2", "100.000000", "5000.000000", "100.000000", "6000.000000"],
        ["202", "3", "100.000000", "9000.000000", "100.000000", "9500.000000"],
    ]
    focus = [
        [
            "ACK",
            "req1x100.000000x0.000000",
            "100.000000",
            "2500.000000",
            "100.000000",
            "3000.000000",
        ],
        [
            "ACK",
            "req2x100.000000x5000.000000",
            "100.000000",
            "7000.000000",
            "100.000000",
            "8000.000000",
        ],
        ["ACK", f"req{bench.PROBE_BASE}x0x0", "100.000000", "1.000000", "100.000000", "2.000000"],
    ]
    invitees = [
        ["IM", "MESSAGE", "sip:inv-a1", "100.000000", "4000.000000"],
        ["IM", "MESSAGE", "sip:inv-b1", "100.000000", "4100.000000"],
        ["IM", "MESSAGE", "sip:req1x100.000000x0.000000", "100.000000", "4200.000000"],
        ["IM", "MESSAGE", "sip:inv-a2", "100.000000", "9000.000000"],  # inv-b2 never answered
        ["IM", "MESSAGE", "sip:inv-a3", "100.000000", "9900.000000"],
        ["IM", "MESSAGE", "sip:inv-b3", "100.000000", "9900.000000"],  # no ACK for 3
    ]
    sent, to_202, to_invite, completed = bench.join_setups(requester, focus, invitees)
    assert set(completed) == {1}
    assert completed[1] == pytest.approx(100.0041)
    assert to_202[1] == pytest.approx(2.0)
    assert to_invite[1] == pytest.approx(2.5)
    assert sent[2] == pytest.approx(100.005)


def test_percentile_is_nearest_rank(bench: ModuleType) -> None:
    values = list(range(1, 101))
    assert bench.percentile(values, 0.5) == 50
    assert bench.percentile(values, 0.99) == 99
    assert bench.percentile([], 0.5) is None


def test_probe_answer_copies_the_transaction_headers(bench: ModuleType) -> None:
    request = bench.probe_message(7, 5555, 5070)
    answer = bench.answer_200(request, to_tag="x")
    assert answer.startswith(b"SIP/2.0 200 OK\r\n")
    assert b"To: <sip:inv-a7@127.0.0.1>;tag=x\r\n" in answer
    assert b"CSeq: 1 MESSAGE\r\n" in answer
    assert answer.endswith(b"Content-Length: 0\r\n\r\n")


@pytest.mark.integration
def test_quick_run_completes_every_setup(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = bench.main(["--quick", "--quiet", "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "| direct |" in out
    assert "| kamailio |" in out
    assert "vidim-daemon, one process" in out
    row = next(line for line in out.splitlines() if line.startswith("| 20 |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2] == "0", row  # failed setups
    if shutil.which("tcpdump") and os.geteuid() == 0:  # scripts/setup installs it; CI is root
        wire_p50, wire_p99 = float(cells[6]), float(cells[7])  # the capture's MESSAGE -> INVITE
        assert 0 < wire_p50 <= wire_p99, row
        assert "on the wire (loopback capture)" in out
        kamailio = next(line for line in out.splitlines() if line.startswith("| kamailio |"))
        relay_p50, relay_p99 = (float(v) for v in kamailio.split("|")[8].split("/"))
        assert 0 < relay_p50 <= relay_p99, kamailio
        # p99 away from host stalls "x.xx (NN%)": at most the whole p99, over a share.
        away, share = cells[8].split()
        assert 0 < float(away) <= wire_p99, row
        assert share.endswith("%)"), row
    # Every load step ran the host-stall probe beside it (bench/host_stalls.py).
    stalls, stalled_ms, probe_p50 = (int(v) for v in cells[9].split("/"))
    assert stalls >= 0, row
    assert stalled_ms >= 0, row
    assert probe_p50 > 0, row  # its median run: the machine's speed in that step
    probes = sorted(tmp_path.rglob("host_stalls.txt"))
    assert len(probes) >= 3, probes  # direct, kamailio and vidim steps
    assert all(len(p.read_text().splitlines()) >= 10 for p in probes), probes


@pytest.mark.integration
def test_quick_daemons_run_puts_every_count_behind_the_dispatcher(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--daemons 1,2``: each count on one Redis behind Kamailio, every setup completes."""
    code = bench.main(["--quick", "--quiet", "--daemons", "1,2", "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "| kamailio | 200 |" in out
    for count in (1, 2):
        row = next(line for line in out.splitlines() if line.startswith(f"| {count} | 20 |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[3] == "0", row  # failed setups
        assert cells[-1] == "yes", row
    # Every daemon of a count got some of the setups: round robin through the dispatcher.
    for log in sorted(tmp_path.glob("fleet-2-20/daemon-*/daemon.log")):
        assert "RequestAccepted(" in log.read_text(), log
    assert len(list(tmp_path.glob("fleet-2-20/daemon-*/daemon.log"))) == 2


def _pcap(packets: list[tuple[float, bytes]], ports: list[int] | None = None) -> bytes:
    """A nanosecond pcap of IPv4/UDP over Ethernet (what tcpdump writes for lo)."""
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)]
    for index, (stamp, payload) in enumerate(packets):
        port = ports[index] if ports else 5070
        udp = struct.pack(">HHHH", 5060, port, 8 + len(payload), 0) + payload
        ip = bytes([0x45, 0]) + struct.pack(">H", 20 + len(udp)) + bytes(16) + udp
        frame = bytes(12) + b"\x08\x00" + ip
        seconds = int(stamp)
        nanos = round((stamp - seconds) * 1e9)
        out.append(struct.pack("<IIII", seconds, nanos, len(frame), len(frame)) + frame)
    return b"".join(out)


def test_wire_latency_pairs_each_message_with_its_invite(bench: ModuleType, tmp_path: Path) -> None:
    def message(n: int) -> bytes:
        return f"MESSAGE sip:inv-a{n}@h SIP/2.0\r\nFrom: <sip:req{n}x1x2@h>;tag=t\r\n".encode()

    def invite(n: int) -> bytes:
        return f"INVITE sip:conf@h SIP/2.0\r\nX-Vidim-Participants: req{n}x1x2\r\n".encode()

    probe = bench.PROBE_BASE + 1
    path = tmp_path / "wire.pcap"
    path.write_bytes(
        _pcap([
            (100.000_000_000, message(7)),
            (100.000_100_000, message(8)),
            (100.000_350_000, invite(7)),  # 0.35 ms
            (100.000_500_000, message(7)),  # a retransmission: the first stamp counts
            (100.002_100_000, invite(8)),  # 2.0 ms
            (100.003_000_000, message(9)),  # never invited: not a latency
            (100.004_000_000, message(probe)),  # the loaded probe's: left out
            (100.004_200_000, invite(probe)),
        ])
    )  # fmt: skip
    stamped = sorted(bench.wire_latencies_ms(path))
    assert [at for at, _ in stamped] == pytest.approx([100.0, 100.0001], abs=1e-7)
    assert [ms for _, ms in stamped] == pytest.approx([0.35, 2.0], abs=1e-6)
    assert bench.wire_latencies_ms(tmp_path / "missing.pcap") == []


def test_relay_latency_pairs_by_direction(bench: ModuleType, tmp_path: Path) -> None:
    def message(n: int) -> bytes:
        return f"MESSAGE sip:relay@h SIP/2.0\r\nFrom: <sip:sender{n}@h>;tag=t\r\n".encode()

    relay, uas = 5070, 5080
    path = tmp_path / "relay.pcap"
    path.write_bytes(
        _pcap(
            [(5.0, message(1)), (5.000_2, message(2)), (5.000_25, message(1)), (5.001, message(2))],
            ports=[relay, relay, uas, uas],
        )
    )
    latencies = sorted(
        ms for _, ms in bench.wire_latencies_ms(path, relay, bench._ANCHOR_CORRELATOR)
    )
    assert latencies == pytest.approx([0.25, 0.8], abs=1e-6)


def test_daemon_config_carries_the_event_loop_and_extra_limits(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "EVENT_LOOP", "asyncio")
    monkeypatch.setattr(bench, "LIMITS", ["overload_hold = 0.5"])
    path = tmp_path / "vidim.toml"
    bench.daemon_config(path, listen=5070, focus=5080, proxy=5060, log_level="info")
    from vidim_daemon.config import load

    config = load(path)
    assert config.event_loop == "asyncio"
    assert config.overload is not None
    assert config.overload.hold == 0.5


def test_the_report_names_the_loop_and_version_the_daemons_said_they_ran(
    bench: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "daemon.log").write_text(
        "2026-11-26 14:28:42,334 INFO vidim.daemon: vidim-daemon 0.1.0: allocator on "
        "127.0.0.1:34175 (UDP and TCP), event loop uvloop 0.23.0 [event_loop=uvloop 0.23.0]\n"
    )
    assert bench.daemon_event_loops(tmp_path) == "uvloop 0.23.0"
    assert bench.daemon_versions(tmp_path) == "0.1.0"


def test_the_profile_sorts_samples_into_the_layers_of_the_aio_package(bench: ModuleType) -> None:
    aio = "/work/vidim/aio/server.py"
    raw = (
        f"datagram_received ({aio}:163);_datagram_received ({aio}:488) 3\n"
        f"_fire ({aio}:935);_log_message ({aio}:972);emit (logging/__init__.py:1100) 1\n"
    )
    assert dict(bench._category_rows(raw)) == {
        "aio glue (`SipServer`: receive, transmit, timer)": 75.0,
        "logging (records, formatting, file writes)": 25.0,
    }


def test_a_clean_rate_needs_every_lower_step_clean(bench: ModuleType) -> None:
    def steps(*clean: tuple[int, bool]) -> list[SimpleNamespace]:
        return [SimpleNamespace(rate=rate, clean=ok) for rate, ok in clean]

    # 1,800 was clean after 1,600 was not: a good minute, not a sustained rate.
    assert bench.clean_rate(steps((1400, True), (1600, False), (1800, True))) == 1400
    assert bench.clean_rate(steps((1800, True), (1400, True), (1600, True))) == 1800  # any order
    assert bench.clean_rate(steps((50, False), (200, True))) is None
    assert bench.clean_rate([]) is None


def test_a_time_sipp_logs_as_nothing_is_zero_and_the_setup_counts(
    bench: ModuleType, tmp_path: Path
) -> None:
    """SIPp writes ``[$u0]`` holding 0.0 as nothing; the setup is not lost for it.

    (Before, such a call was counted failed: a few in 100,000, and enough to make a
    step unclean, Kamailio's anchors too.)
    """
    log = tmp_path / "requester.log"
    log.write_text(
        "202 7 1795747215.000000  1795747215.000000 2118.000000\n"
        "202 8 1795747215.000000 5.000000 1795747215.000000 9.000000\n"
    )
    sipp = bench.Sipp(name="requester", proc=None, port=0, workdir=tmp_path)
    requester = sipp.log_lines()
    assert [len(fields) for fields in requester] == [6, 6]
    focus = [["ACK", "req7x1795747215.000000x", "1795747215.000000", "500.000000",
              "1795747215.000000", "600.000000"]]  # fmt: skip
    invitees = [
        ["IM", "sip:inv-a7", "1795747215.000000", "700.000000"],
        ["IM", "sip:inv-b7", "1795747215.000000", "800.000000"],
    ]
    invitees = [[fields[0], "MESSAGE", *fields[1:]] for fields in invitees]
    sent, to_202, to_invite, completed = bench.join_setups(requester, focus, invitees)
    assert set(completed) == {7}
    assert sent[7] == pytest.approx(1795747215.0)
    assert to_invite[7] == pytest.approx(0.5, abs=1e-3)  # ms, from epoch seconds
    assert to_202[7] == pytest.approx(2.118, abs=1e-3)


def test_the_latency_targets_are_read_at_the_clean_rate(bench: ModuleType) -> None:
    def step(rate: int, clean: bool, p99: float) -> SimpleNamespace:
        return SimpleNamespace(
            rate=rate, clean=clean, to_invite_ms=[p99] * 10, wire_ms=[p99] * 10,
            wire_stamped=None, stalls=[],
        )  # fmt: skip

    report = SimpleNamespace(
        anchors=[], probe=None,
        vidim=[step(600, True, 5.0), step(800, False, 50.0), step(1600, True, 40.0)],
    )  # fmt: skip
    text = "\n".join(bench.format_targets(report))
    assert "vidim 600 setups/s" in text
    assert "| at that rate: p99 MESSAGE->INVITE < 10 ms | 5.00 ms on the wire" in text
    assert "under 10 ms: 600 setups/s" in text
