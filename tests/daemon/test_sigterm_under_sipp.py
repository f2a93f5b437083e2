"""SIGTERM under load driven by SIPp: every request sent while the sockets were open is answered.

Issue 16, "How it is shown": SIPp (``bench/sipp/stop_requester.xml``) sends
MESSAGEs at a steady rate near the daemon's capacity and goes on past the
daemon's exit; the daemon (external focus and IM server: :class:`FocusPeer`)
gets SIGTERM in the middle of it.  The proof comes from SIPp's own records:
its ``<log>`` lines give each call's send time and answer (202 or 503, nothing
else: SIPp fails a call on any other answer, and on a 503 without Retry-After
or a Warning, and its statistics count those), and

* no MESSAGE sent before the last answered one is unanswered: the daemon reads
  one UDP socket in order, so a silent request sent earlier was dropped while
  the socket was open;
* the answers reach through the refusal window (``refuse_on_stop``) to the
  daemon's "closed" log line: the only unanswered MESSAGEs were sent as the
  socket closed or after it.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from daemon_peers import HOST, DaemonProcess, FocusPeer, SipClient, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SCENARIO = Path(__file__).resolve().parents[2] / "bench" / "sipp" / "stop_requester.xml"
#: MESSAGEs per second: near the daemon's capacity, 3/4 of the 800 setups/s it
#: sets up cleanly on this 2-core machine (docs/performance.md); overridable.
LOAD_RATE = int(os.environ.get("VIDIM_SIPP_STOP_RATE", "600"))
#: Seconds the daemon refuses new requests (503) before closing.
REFUSE = 2.5
#: How far before the daemon's "closed" line (milliseconds in its log) the
#: socket may really have closed: the line follows the close of the transports.
CLOSE_SLACK = 0.1


@dataclass
class SippRun:
    """One SIPp client process and the files it writes."""

    proc: subprocess.Popen[bytes]
    workdir: Path

    @property
    def log(self) -> Path:
        return self.workdir / "sipp.log"

    def lines(self) -> list[list[str]]:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [line.split(" ") for line in text.splitlines() if line.strip()]

    def answered(self, status: str) -> int:
        return sum(1 for fields in self.lines() if fields[0] == status)

    def stats(self) -> dict[str, str]:
        """The last row of SIPp's statistics CSV: cumulative counts."""
        rows = [r for r in (self.workdir / "sipp.csv").read_text().splitlines() if r.strip()]
        return dict(zip(rows[0].split(";"), rows[-1].split(";"), strict=False))

    def stop(self) -> None:
        """SIGUSR1: no new calls, the calls under way end (final statistics written)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGUSR1)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)

    def output(self) -> str:
        return (self.workdir / "sipp.out").read_text(errors="replace")[-3000:]


def start_sipp(workdir: Path, daemon_port: int) -> SippRun:
    binary = shutil.which("sipp")
    if binary is None:
        pytest.skip("sipp is not installed (scripts/setup installs it)")
    workdir.mkdir()
    argv = [binary, f"{HOST}:{daemon_port}", "-sf", str(SCENARIO), "-i", HOST,
            "-p", str(free_port()), "-t", "u1", "-nostdin", "-buff_size", "4194304",
            "-r", str(LOAD_RATE), "-l", str(LOAD_RATE * 10), "-m", str(LOAD_RATE * 60),
            # A 503 ends the call; no BYE follows it (SIPp's default would send one).
            "-default_behaviors", "all,-bye",
            # A MESSAGE nobody answers fails its call after two retransmissions
            # (3.5 s), so that SIPp can stop soon after the daemon's exit.
            "-max_non_invite_retrans", "2",
            "-trace_stat", "-stf", str(workdir / "sipp.csv"), "-fd", "1",
            "-trace_logs", "-log_file", str(workdir / "sipp.log"),
            "-trace_err", "-error_file", str(workdir / "sipp_errors.log")]  # fmt: skip
    with (workdir / "sipp.out").open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    return SippRun(proc, workdir)


@pytest.fixture
def focus() -> Iterator[FocusPeer]:
    peer = FocusPeer()
    try:
        yield peer
    finally:
        peer.close()


def wait_for(predicate: object, what: str, timeout: float) -> None:
    """Polls a file another process writes, bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)


def log_time(record: dict[str, object]) -> float:
    """A daemon log record's time (``2026-12-05T07:41:02.123Z``) as a Unix time."""
    stamp = str(record["time"]).removesuffix("Z")
    return dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.UTC).timestamp()


def seconds(sec: str, usec: str) -> float:
    """A SIPp gettimeofday pair (SIPp logs a value of 0 as an empty field)."""
    return (float(sec) if sec else 0.0) + (float(usec) / 1e6 if usec else 0.0)


def test_sigterm_under_sipp_load_answers_every_request_sent_while_open(
    tmp_path: Path, focus: FocusPeer
) -> None:
    config = f"refuse_on_stop = {REFUSE}\n[limits]\nrate_limit = 1000000\n"
    daemon = DaemonProcess(
        tmp_path, ["--focus", focus.uri, "--proxy", f"sip:{HOST}:{focus.port}"], config
    )
    sipp: SippRun | None = None
    client = SipClient()
    try:
        daemon.wait_ready(client)
        sipp = start_sipp(tmp_path / "sipp", daemon.port)
        # A second of steady load, then SIGTERM in the middle of it.
        wait_for(lambda: sipp.answered("202") >= LOAD_RATE, "a second of 202s", 15)
        signalled = time.time()
        daemon.signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=20) == 0, daemon.dump()
        closed = [r for r in daemon.records() if r.get("message") == f"closed {HOST}:{daemon.port}"]
        assert closed, daemon.dump()
        closed_at = log_time(closed[0])

        def sent_after_close() -> bool:
            last = sipp.lines()[-1]
            return last[0] == "sent" and seconds(last[2], last[3]) > closed_at + 0.1

        # SIPp goes on past the close, then ends its calls (unanswered: 3.5 s at most).
        wait_for(sent_after_close, "a MESSAGE sent after the close", 5)
        sipp.stop()
        sent: dict[str, float] = {}
        answers: dict[str, str] = {}
        stopping = 0  # 503s whose Warning says "shutting down" (not "overloaded")
        for fields in sipp.lines():
            if fields[0] == "sent":
                sent[fields[1]] = seconds(fields[2], fields[3])
            else:
                assert fields[0] in ("202", "503"), fields
                answers[fields[1]] = fields[0]
                stopping += fields[-2:] == ["shutting", "down"]
        assert set(answers) <= set(sent)
        silent = sorted((sent[call], call) for call in sent if call not in answers)
        last_answered = max(sent[call] for call in answers)
        refused = sum(1 for status in answers.values() if status == "503")
        print(
            f"{len(sent)} sent at {LOAD_RATE}/s, {len(answers) - refused} x 202, "
            f"{refused} x 503 ({stopping} shutting down), {len(silent)} unanswered (sent from "
            f"{silent[0][0] - closed_at:+.3f} s of the close on), "
            f"the last answered sent {last_answered - signalled:.3f} s after SIGTERM, "
            f"closed {closed_at - signalled:.3f} s after it"
        )
        # None dropped while the socket was open: every silent one was sent after the
        # last answered one, and as the socket closed (or later).
        assert not [s for s in silent if s[0] < last_answered], silent[:10]
        assert all(s[0] >= closed_at - CLOSE_SLACK for s in silent), silent[:10]
        # The 503s went on for the whole refusal window.
        assert last_answered >= signalled + REFUSE * 0.9
        assert stopping >= LOAD_RATE * REFUSE * 0.5
        # SIPp's statistics: no call failed but the unanswered ones (any other answer,
        # or a 503 without Retry-After and a Warning, would have failed its call).
        stats = sipp.stats()
        print(f"SIPp: {stats['Retransmissions(C)']} retransmissions")
        assert int(stats["OutgoingCall(C)"]) == len(sent), stats
        assert int(stats["FailedCall(C)"]) == len(silent), stats
        assert int(stats["FailedUnexpectedMessage(C)"]) == 0, stats
        assert int(stats["FailedRegexpDoesntMatch(C)"]) == 0, stats
        assert int(stats["FailedMaxUDPRetrans(C)"]) == len(silent), stats
        # Every conference set up got its BYE (end_on_stop, the embedded store's default).
        assert focus.byes == set(focus.invited)
        assert len(focus.invited) == len(answers) - refused
    finally:
        if sipp is not None:
            sipp.stop()
        daemon.stop()
        client.close()
