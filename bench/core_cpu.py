"""CPU per conference setup inside the sans-IO allocator: no sockets, no event loop.

The setup of ``bench/setups.py`` (header-form MESSAGE with two invitees,
profile ``asterisk``, no probe) driven in-process: every peer answer is a
byte template filled in by this script, and only the allocator's own work is
timed: ``receive_datagram`` for each datagram in, ``messages_to_send`` plus
``to_bytes`` for each message out, and ``events``.  This is what the daemon
pays per setup on top of the event loop, the sockets and logging.

    python bench/core_cpu.py                 # 5 rounds of 2,000 setups
    python bench/core_cpu.py --profile       # and cProfile's top functions
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from vidim.allocator.allocator import Allocator, AllocatorConfig  # noqa: E402
from vidim.allocator.profiles import FocusProfile  # noqa: E402
from vidim.sip import Address  # noqa: E402

ALLOCATOR = Address("127.0.0.1", 5070)
PROXY = Address("127.0.0.1", 5060)
FOCUS = Address("127.0.0.1", 5080)
QUIET = 3600.0

_SDP = (
    "v=0\r\no=focus 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 0\r\nm=video 6002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
)
_HEAD_RE = re.compile(r"^(Via|From|To|Call-ID|CSeq): [^\r\n]*", re.MULTILINE)


def _message(number: int) -> bytes:
    return (
        f"MESSAGE sip:inv-a{number}@127.0.0.1:5070 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-{number}-1\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:req{number}@127.0.0.1:5060>;tag={number}SIPpTag001\r\n"
        f"To: <sip:inv-a{number}@127.0.0.1:5070>\r\n"
        f"Call-ID: {number}-bench@127.0.0.1\r\n"
        "CSeq: 1 MESSAGE\r\n"
        f"Contact: <sip:req{number}@127.0.0.1:5060>\r\n"
        "X-Vidim-Mode: video\r\n"
        f"X-Vidim-Invite: <sip:inv-b{number}@127.0.0.1:5060>\r\n"
        "Content-Type: text/plain\r\n"
        "Content-Length: 4\r\n\r\nhi!\n"
    ).encode()


def _answer(request: bytes, tag: str, extra: str = "", body: str = "") -> bytes:
    """A 200 to ``request`` as SIPp's ``[last_*]`` would write it."""
    text = request.decode()
    head = text.split("\r\n\r\n", 1)[0]
    lines = [m.group(0) for m in _HEAD_RE.finditer(head)]
    out = ["SIP/2.0 200 OK"]
    for line in lines:
        if line.startswith("To: ") and ";tag=" not in line:
            line += f";tag={tag}"
        out.append(line)
    if extra:
        out.append(extra)
    if body:
        out.append("Content-Type: application/sdp")
    out.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(out) + "\r\n\r\n" + body).encode()


class Bench:
    def __init__(self) -> None:
        self.allocator = Allocator(
            AllocatorConfig(
                local=ALLOCATOR,
                focus_uris=(f"sip:conference@{FOCUS.host}:{FOCUS.port}",),
                profile=FocusProfile.ASTERISK,
                proxy=PROXY,
                probe=False,
                keepalive_interval=QUIET,
                idle_timeout=QUIET,
                max_conferences=10_000_000,
                rate_limit=10_000_000,
            )
        )
        self.now = 0.0
        self.inside = 0.0
        self.datagrams = 0
        self.number = 0
        self.rooms = 0
        #: Per setup: the MESSAGE in, to the 202 and the INVITE out as bytes (seconds).
        self.message_path: list[float] = []

    def _feed(self, data: bytes, source: Address, first: bool = False) -> None:
        allocator = self.allocator
        start = time.perf_counter()
        allocator.receive_datagram(data, source, self.now)
        out = [(m.to_bytes(), m, d) for m, d in allocator.messages_to_send()]
        allocator.events()
        elapsed = time.perf_counter() - start
        self.inside += elapsed
        if first:
            self.message_path.append(elapsed)
        self.datagrams += 1 + len(out)
        for data_out, message, destination in out:
            method = getattr(message, "method", None)
            if method is None or method == "ACK":
                continue
            if method == "INVITE":
                self.rooms += 1
                answer = _answer(
                    data_out,
                    f"f{self.rooms}",
                    f"Contact: <sip:conf-{self.rooms}@127.0.0.1:5080>;isfocus",
                    _SDP,
                )
            else:
                answer = _answer(data_out, f"i{self.number}")
            self._feed(answer, destination)

    def setup(self) -> None:
        self.number += 1
        self._feed(_message(self.number), PROXY, first=True)

    def run(self, count: int) -> float:
        """Microseconds of allocator CPU per setup over ``count`` setups."""
        self.inside = 0.0
        for _ in range(count):
            self.setup()
            self.now += 0.001
            if self.number % 200 == 0:
                start = time.perf_counter()
                self.allocator.handle_timer(self.now)
                self.allocator.messages_to_send()
                self.inside += time.perf_counter() - start
        return self.inside / count * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setups", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    bench = Bench()
    bench.run(200)  # warm every path
    gc.collect()
    results = []
    for _ in range(args.rounds):
        bench.message_path.clear()
        results.append(bench.run(args.setups))
    per = bench.datagrams / bench.number
    path = sorted(bench.message_path)
    print(
        f"allocator CPU per setup: best {min(results):.0f} us, "
        f"median {sorted(results)[len(results) // 2]:.0f} us "
        f"({per:.1f} datagrams per setup)"
    )
    print(
        "MESSAGE in to 202 and INVITE out as bytes (last round): "
        f"p50 {path[len(path) // 2] * 1e6:.0f} us, p99 {path[int(len(path) * 0.99)] * 1e6:.0f} us"
    )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        bench.run(args.setups)
        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(35)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
