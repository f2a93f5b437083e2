"""Issue 18, operations: what an operator expects of the real daemon on loopback.

Metrics and health checks scraped over HTTP after a conference is set up; an
advertised address written instead of 0.0.0.0; ``vidim@`` the listen address
is the service; a busy port or an unreachable listen address refused with one
line and exit 2; ``--help`` giving every option's default.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from daemon_peers import HOST, DaemonProcess, SipClient, free_port
from prometheus_client.parser import text_string_to_metric_families
from vidim_daemon.cli import main

from redis_peer import RedisServer
from vidim.rtp import ReceiverReport, ReportBlock, RtpPacket, build_rtcp
from vidim.sip import Request, Response, new_branch, new_tag

pytestmark = pytest.mark.timeout(120)


class RecordingClient(SipClient):
    """A requester and invitee that also keeps every request the daemon sent it."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        super().__init__()

    def handle(self, message: Request | Response, addr: tuple[str, int]) -> None:
        if isinstance(message, Request):
            self.requests.append(message)
        super().handle(message, addr)

    def command(self, uri: str, port: int, text: str) -> str:
        """A command-form MESSAGE (no X-Vidim-Mode) to ``uri``, sent to ``port``; its Call-ID."""
        call_id = new_tag() + new_tag()
        request = Request(
            "MESSAGE",
            uri,
            [
                ("Via", f"SIP/2.0/UDP {HOST}:{self.port};branch={new_branch()};rport"),
                ("Max-Forwards", "70"),
                ("From", f"<sip:alice@localhost>;tag={new_tag()}"),
                ("To", f"<{uri}>"),
                ("Call-ID", call_id),
                ("CSeq", "1 MESSAGE"),
                ("Content-Type", "text/plain"),
            ],
            text.encode(),
        )
        self.sock.sendto(request.to_bytes(), (HOST, port))
        return call_id


@pytest.fixture
def client() -> Iterator[RecordingClient]:
    peer = RecordingClient()
    try:
        yield peer
    finally:
        peer.close()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


def samples(text: str) -> Samples:
    """Every sample of a scrape, by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def set_up_conference(daemon: DaemonProcess, client: RecordingClient) -> None:
    """A new conference with one invitee (the client itself), until its invitation arrives."""
    call_id = client.message(daemon.port, f"sip:bob@{HOST}:{client.port}", user="alice")
    assert client.wait_answer(call_id).status == 202
    client.wait_for(
        lambda: any("X-Vidim-Conference" in r.headers for r in client.requests), "the invitation"
    )


def test_metrics_and_health_scraped_from_the_daemon_after_a_setup(
    tmp_path: Path, client: RecordingClient
) -> None:
    metrics_port = free_port()
    daemon = DaemonProcess(tmp_path, ["--metrics-listen", f"{HOST}:{metrics_port}"])
    base = f"http://{HOST}:{metrics_port}"
    try:
        daemon.wait_ready(client)
        assert get(f"{base}/healthz") == (200, "alive\n")
        assert get(f"{base}/readyz") == (200, "ready\n")
        set_up_conference(daemon, client)
        refused = client.message(daemon.port, f"sip:vidim@{HOST}:{daemon.port}", user="carol")
        assert client.wait_answer(refused).status == 400  # inviting only the service
        status, text = get(f"{base}/metrics")
        assert status == 200
        got = samples(text)
        assert got[("vidim_requests_total", (("outcome", "accepted"), ("status", "202")))] == 1
        assert got[("vidim_requests_total", (("outcome", "refused"), ("status", "400")))] == 1
        assert got[("vidim_conferences", (("state", "active"),))] == 1
        assert got[("vidim_conferences", (("state", "allocating"),))] == 0
        for stage in ("focus_answered", "invitations_sent"):
            assert got[("vidim_setup_seconds_count", (("stage", stage),))] == 1
            assert 0 < got[("vidim_setup_seconds_sum", (("stage", stage),))] < 5
        assert got[("vidim_focus_conferences", ())] == 1
        assert got[("vidim_focus_participants", ())] == 0
        assert got[("vidim_focus_failovers_total", ())] == 0
        for server in ("allocator", "focus"):
            labels = (("server", server),)
            assert got[("vidim_store_errors_total", labels)] == 0
            assert got[("vidim_store_available", labels)] == 1
            assert got[("vidim_sip_retransmissions_total", labels)] >= 0
        assert got[("vidim_overload_refusals_total", (("server", "allocator"),))] == 0
        assert got[("vidim_rtp_packets_in_total", ())] == 0
        assert get(f"{base}/nothing")[0] == 404
    finally:
        daemon.stop()


def join_built_in_focus(client: RecordingClient, rtp: socket.socket, *rtcp: socket.socket) -> str:
    """Call the join URI of the invitation with audio and video (RTCP: ``rtcp``); the answer."""
    invitation = next(r for r in client.requests if "X-Vidim-Conference" in r.headers)
    joined = str(invitation.headers.get("X-Vidim-Conference")).partition(">")[0].lstrip("<")
    host_port = joined.split("@", 1)[1].split(";", 1)[0]
    focus = (host_port.rpartition(":")[0], int(host_port.rpartition(":")[2]))
    rtp_port = rtp.getsockname()[1]
    audio_rtcp, video_rtcp = (sock.getsockname()[1] for sock in rtcp)
    offer = (
        f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        f"a=rtcp:{audio_rtcp}\r\na=sendrecv\r\n"
        f"m=video {rtp_port + 2} RTP/AVP 99\r\na=rtpmap:99 VP8/90000\r\n"
        f"a=rtcp:{video_rtcp}\r\na=sendrecv\r\n"
    ).encode()
    call_id, tag = new_tag() + new_tag(), new_tag()
    headers = [
        ("Max-Forwards", "70"),
        ("From", f"<sip:bob@{HOST}:{client.port}>;tag={tag}"),
        ("To", f"<{joined}>"),
        ("Call-ID", call_id),
    ]
    via = ("Via", f"SIP/2.0/UDP {HOST}:{client.port};branch={new_branch()};rport")
    invite = Request(
        "INVITE",
        joined,
        [
            via,
            *headers,
            ("CSeq", "1 INVITE"),
            ("Contact", f"<sip:bob@{HOST}:{client.port}>"),
            ("Content-Type", "application/sdp"),
        ],
        offer,
    )
    client.sock.sendto(invite.to_bytes(), focus)
    answer = client.wait_answer(call_id)
    assert answer.status == 200, answer
    ack_headers = [h for h in headers if h[0] != "To"] + [("To", str(answer.headers.get("To")))]
    via = ("Via", f"SIP/2.0/UDP {HOST}:{client.port};branch={new_branch()};rport")
    ack = Request("ACK", joined, [via, *ack_headers, ("CSeq", "1 ACK")])
    client.sock.sendto(ack.to_bytes(), focus)
    return answer.body.decode()


def test_rtp_and_rtcp_metrics_of_a_call_with_loss_and_reordering(
    tmp_path: Path, client: RecordingClient
) -> None:
    """Issue 18: the relay's own counts and the phone's RTCP reports, per participant."""
    metrics_port = free_port()
    daemon = DaemonProcess(tmp_path, ["--metrics-listen", f"{HOST}:{metrics_port}"])
    rtp, rtcp, video_rtcp = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3))
    try:
        for sock in (rtp, rtcp, video_rtcp):
            sock.bind((HOST, 0))
        daemon.wait_ready(client)
        set_up_conference(daemon, client)
        answer = join_built_in_focus(client, rtp, rtcp, video_rtcp)
        ports = {
            line.split()[0].removeprefix("m="): int(line.split()[1])
            for line in answer.splitlines()
            if line.startswith("m=")
        }
        base = f"http://{HOST}:{metrics_port}/metrics"

        def scrape_until(condition: Callable[[Samples], bool], what: str) -> Samples:
            deadline = time.monotonic() + 5
            while not condition(got := samples(get(base)[1])):
                assert time.monotonic() < deadline, f"no {what} within 5 s: {got}"
                time.sleep(0.05)  # polling an HTTP endpoint: the bound is the deadline
            return got

        def bob_audio(got: Samples) -> list[Labels]:
            return [
                labels
                for name, labels in got
                if name == "vidim_rtp_out_of_order_total" and ("kind", "audio") in labels
            ]

        got = scrape_until(lambda got: bool(bob_audio(got)), "relay route for the call")
        (who,) = bob_audio(got)
        assert "bob" in dict(who)["participant"]
        for seq in (1, 2, 4, 3, 5):  # 3 comes late
            packet = RtpPacket(payload_type=0, sequence_number=seq, timestamp=160 * seq, ssrc=77)
            rtp.sendto(bytes(packet), (HOST, ports["audio"]))
        lossy = ReportBlock(
            ssrc=1234, fraction_lost=64, packets_lost=25, highest_sequence=500, jitter=1800
        )
        rtcp.sendto(
            build_rtcp([ReceiverReport(ssrc=77, reports=(lossy,))]), (HOST, ports["audio"] + 1)
        )
        video_report = build_rtcp([ReceiverReport(ssrc=78, reports=(lossy,))])
        video_rtcp.sendto(video_report, (HOST, ports["video"] + 1))
        # Not from the audio RTCP address the offer named: a stranger's, never the phone's.
        rtp.sendto(video_report, (HOST, ports["audio"] + 1))
        video = (("kind", "video"), who[1])
        got = scrape_until(
            lambda got: (
                got.get(("vidim_rtp_lost_packets_total", who)) == 25
                and got.get(("vidim_rtp_participant_packets_total", (("direction", "in"), *who)))
                == 6
                and ("vidim_rtp_jitter_seconds", video) in got
            ),
            "RTCP and RTP counted",
        )
        assert got[("vidim_rtp_fraction_lost", who)] == 0.25
        assert got[("vidim_rtp_out_of_order_total", who)] == 1
        assert got[("vidim_rtp_strangers_total", ())] == 1
        assert ("vidim_rtp_jitter_seconds", who) not in got  # audio source 1234: clock unknown
        assert got[("vidim_rtp_jitter_seconds", video)] == pytest.approx(0.02)  # 1800 at 90 kHz
        assert got[("vidim_rtp_lost_packets_total", video)] == 25
    finally:
        rtp.close()
        rtcp.close()
        video_rtcp.close()
        daemon.stop()


def test_readyz_is_503_once_the_daemon_stops_listening(
    tmp_path: Path, client: RecordingClient
) -> None:
    """SIGTERM: from the signal the SIP servers refuse (503), and so does /readyz."""
    metrics_port = free_port()
    daemon = DaemonProcess(
        tmp_path, ["--metrics-listen", f"{HOST}:{metrics_port}"], "refuse_on_stop = 5.0\n"
    )
    try:
        daemon.wait_ready(client)
        daemon.signal(15)
        daemon.wait_log("stopping:")
        status, text = get(f"http://{HOST}:{metrics_port}/readyz")
        assert status == 503
        assert f"SIP {HOST}:{daemon.port} not listening" in text
    finally:
        daemon.stop()


def wait_status(url: str, status: int, timeout: float = 15.0) -> str:
    """Poll ``url`` until it answers ``status`` (bounded); its body."""
    deadline = time.monotonic() + timeout
    while True:
        got, body = get(url)
        if got == status:
            return body
        assert time.monotonic() < deadline, f"{url}: {got} {body}"
        time.sleep(0.05)  # polling an HTTP endpoint, bounded by the deadline


def test_readyz_and_store_metrics_follow_the_store(tmp_path: Path, client: RecordingClient) -> None:
    """Redis stopped: a request's write fails, /readyz says so; started again: ready again."""
    redis = RedisServer(tmp_path)
    redis.start()
    metrics_port = free_port()
    base = f"http://{HOST}:{metrics_port}"
    daemon = DaemonProcess(
        tmp_path, ["--metrics-listen", f"{HOST}:{metrics_port}", "--store", redis.url]
    )
    try:
        daemon.wait_ready(client)
        assert get(f"{base}/readyz") == (200, "ready\n")
        redis.stop()
        client.message(daemon.port, f"sip:bob@{HOST}:{client.port}")
        assert "allocator: state store unreachable" in wait_status(f"{base}/readyz", 503)
        got = samples(get(f"{base}/metrics")[1])
        assert got[("vidim_store_available", (("server", "allocator"),))] == 0
        assert got[("vidim_store_errors_total", (("server", "allocator"),))] >= 1
        redis.start()
        wait_status(f"{base}/readyz", 200)
        assert (
            samples(get(f"{base}/metrics")[1])[
                ("vidim_store_available", (("server", "allocator"),))
            ]
            == 1
        )
    finally:
        daemon.stop()
        redis.stop()


def test_advertised_address_replaces_the_any_address(
    tmp_path: Path, client: RecordingClient
) -> None:
    """Listening on 0.0.0.0, what the daemon writes names 127.0.0.2 (reached on loopback)."""
    port, focus_port = free_port(), free_port()
    daemon = DaemonProcess(
        tmp_path,
        ["--listen", f"0.0.0.0:{port}", "--focus-listen", f"0.0.0.0:{focus_port}",
         "--advertise", "127.0.0.2"],
    )  # fmt: skip
    daemon.port, daemon.focus_port = port, focus_port  # the later options win
    try:
        daemon.wait_ready(client)
        set_up_conference(daemon, client)  # the allocator reached the focus at 127.0.0.2
        invitation = next(r for r in client.requests if "X-Vidim-Conference" in r.headers)
        text = invitation.to_bytes().decode()
        assert "0.0.0.0" not in text
        assert invitation.call_id.endswith("@127.0.0.2")
        assert f"SIP/2.0/UDP 127.0.0.2:{daemon.port}" in str(invitation.headers.get("via"))
        assert f"@127.0.0.2:{daemon.focus_port}" in str(
            invitation.headers.get("x-vidim-conference")
        )
    finally:
        daemon.stop()


def test_any_address_without_advertise_is_refused_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vidim_daemon", "run", "--listen", f"0.0.0.0:{free_port()}",
         "--store", "memory:"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "vidim-daemon: listen: 0.0.0.0 is every local address, which peers cannot be told: "
        "give the address they reach with --advertise HOST[:PORT] (advertise = ...)"
    ]


def test_end_to_vidim_at_the_listen_address_is_the_service(
    tmp_path: Path, client: RecordingClient
) -> None:
    """No proxy, no domain: ``/end`` to sip:vidim@127.0.0.1:PORT (404 before issue 18)."""
    daemon = DaemonProcess(tmp_path, [])
    try:
        daemon.wait_ready(client)
        set_up_conference(daemon, client)
        call_id = client.command(f"sip:vidim@{HOST}:{daemon.port}", daemon.port, "/end")
        assert client.wait_answer(call_id).status == 202
        daemon.wait_log("ConferenceEnded(")
    finally:
        daemon.stop()


@pytest.mark.parametrize("busy", ["listen", "focus_listen", "metrics"])
def test_a_busy_port_is_one_line_and_exit_2(tmp_path: Path, busy: str) -> None:
    ports = {"listen": free_port(), "focus_listen": free_port(), "metrics": free_port()}
    kind = socket.SOCK_STREAM if busy == "metrics" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as taken:
        taken.bind((HOST, ports[busy]))
        taken.listen() if kind == socket.SOCK_STREAM else None
        result = subprocess.run(
            [sys.executable, "-m", "vidim_daemon", "run", "--store", "memory:",
             "--listen", f"{HOST}:{ports['listen']}",
             "--focus-listen", f"{HOST}:{ports['focus_listen']}",
             "--metrics-listen", f"{HOST}:{ports['metrics']}"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    what = "(metrics, TCP)" if busy == "metrics" else "(UDP and TCP)"
    assert result.stderr.splitlines()[-1] == (
        f"vidim-daemon: cannot listen on {HOST}:{ports[busy]} {what}: address already in use"
    )


@pytest.mark.parametrize("command", ["run", "focus"])
def test_help_gives_every_options_default(command: str) -> None:
    options = [
        param for param in main.commands[command].params if param.name not in ("help", "version")
    ]
    assert len(options) >= 12
    for option in options:
        assert "[" in (getattr(option, "help", None) or ""), f"{option.name} has no default"
    result = CliRunner().invoke(main, [command, "--help"])
    assert "--advertise HOST[:PORT]" in result.output
    assert "--metrics-listen HOST:PORT" in result.output
