"""What the follow-the-talker switch costs: CPU per forwarded video packet.

Conferences of 5 ``video`` participants, each sending VP8 at 30 frames per
second in ``--packets`` RTP packets of 1100 bytes per frame (about 800 kbit/s
at the default 3), a keyframe a second, the talker changing every 3 s; each
receiver gets one sender's stream, so as many packets go out as come in.
Each frame's packets are built before the switch gets them and the clock is
virtual: only the switch is measured, in this thread's CPU time
(``thread_time``, not what other processes took from the core).  It prints,
per conference count: CPU microseconds per packet received (a parse, and on
average one rewritten packet built) and the video senders one core could
switch at that rate.

    python bench/video.py            # 1, 10 and 50 conferences, 5 s of media each
    python bench/video.py --quick    # smoke: 1 conference, 1 s
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from vidim.focus.keyframes import KeyframeFeedback  # noqa: E402
from vidim.focus.video import VideoSwitch  # noqa: E402
from vidim.rtp import RtpPacket  # noqa: E402
from vidim.sdp import Codec  # noqa: E402
from vidim.vocabulary import Mode  # noqa: E402

PER_CONFERENCE = 5
FPS = 30
VP8 = Codec(96, "VP8", 90000)
FEEDBACK = KeyframeFeedback(pli=True, fir=True)
TALK_TURN = 3.0


@dataclass(frozen=True, slots=True)
class Result:
    conferences: int
    seconds: float
    packets_in: int
    packets_out: int
    cpu: float

    @property
    def us_per_packet(self) -> float:
        return 1e6 * self.cpu / self.packets_in

    @property
    def participants_per_core(self) -> int:
        """Senders one core keeps up with: media seconds per CPU second, per participant."""
        return int(self.conferences * PER_CONFERENCE * self.seconds / self.cpu)


def _frame(sender: int, frame: int, packets: int, keyframe: bool) -> list[bytes]:
    out = []
    for index in range(packets):
        # As phones send it (RFC 7741): X and I set, a 15-bit PictureID, one per frame.
        start = 0x90 if index == 0 else 0x80
        descriptor = bytes([start, 0x80, 0x80 | (frame >> 8) & 0x7F, frame & 0xFF])
        header = (b"\x10" if keyframe else b"\x11") if index == 0 else b""
        packet = RtpPacket(
            payload_type=VP8.payload,
            sequence_number=(frame * packets + index) & 0xFFFF,
            timestamp=(frame * 3000) & 0xFFFFFFFF,
            ssrc=1000 + sender,
            marker=index == packets - 1,
            payload=descriptor + header + bytes(1100),
        )
        out.append(bytes(packet))
    return out


def measure(conferences: int, seconds: float, packets: int = 3) -> Result:
    """Run ``conferences`` switches for ``seconds`` of virtual media; CPU time of the switches."""
    switches = [VideoSwitch() for _ in range(conferences)]
    for switch in switches:
        for sender in range(PER_CONFERENCE):
            switch.add(f"p{sender}", mode=Mode.VIDEO, codec=VP8, feedback=FEEDBACK, now=0.0)
    packets_in = packets_out = 0
    cpu = 0.0
    for frame in range(int(seconds * FPS)):
        now = frame / FPS
        talker = f"p{int(now // TALK_TURN) % PER_CONFERENCE}"
        keyframe = frame % FPS == 0
        datagrams = [_frame(s, frame, packets, keyframe) for s in range(PER_CONFERENCE)]
        start = time.thread_time()
        for switch in switches:
            if frame % 3 == 0:
                switch.audio_level(talker, 20, now)
            timer = switch.get_timer()
            if timer is not None and timer <= now:
                switch.handle_timer(now)
            for sender, sent in enumerate(datagrams):
                for data in sent:
                    switch.receive_datagram(f"p{sender}", data, now)
            packets_out += len(switch.packets_to_send())
            for _ in switch.events():
                pass
        cpu += time.thread_time() - start
        packets_in += conferences * PER_CONFERENCE * packets
    return Result(conferences, seconds, packets_in, packets_out, cpu)


def report(results: list[Result]) -> str:
    lines = [
        "| conferences | packets in | packets out | CPU µs per packet in | senders per core |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.conferences} | {r.packets_in} | {r.packets_out} | "
            f"{r.us_per_packet:.1f} | {r.participants_per_core} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 conference, 1 s (smoke)")
    parser.add_argument("--packets", type=int, default=3, help="RTP packets per frame")
    args = parser.parse_args()
    sizes, seconds = ([1], 1.0) if args.quick else ([1, 10, 50], 5.0)
    print(report([measure(n, seconds, args.packets) for n in sizes]))


if __name__ == "__main__":
    main()
