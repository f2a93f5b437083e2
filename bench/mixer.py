"""How many participants one core mixes in real time: the audio mixer on a real clock.

Conferences of 5 participants (all PCMU, or all Opus), each participant
sending 20 ms packets of a tone at its own phase, each conference's mixer
ticking at its own phase, all in one thread on the real clock, as the
asyncio layer will drive them.  For each size it reports:

* **late p99 / max**: how late the mixers' ticks ran (the issue's limit: never
  more than 5 ms late);
* **empty loop late p99 / max**: the reference, run at the same time in a
  process of its own: a loop that sleeps to a deadline every millisecond and
  does nothing else, i.e. how late this host wakes a sleeper up with no mixing
  at all;
* **CPU wait**: how long the mixers' thread was ready to run but waited for
  a CPU that other processes held (Linux's ``/proc/thread-self/schedstat``),
  as a share of the run;
* **GC pause max**: the longest pause of Python's garbage collector (the
  phones' pre-built packets are frozen out of its sight, ``gc.freeze``);
* **ticks > 5 ms late**, all of them, and who made each late: the **host**
  when the tick would have been at most 5 ms late but for the empty loop's
  worst lateness meanwhile or just before (the machine stopped every process;
  the backlog a stall leaves takes about as long again), **others**
  when it would have been but for the time the mixers' thread waited for a
  CPU meanwhile (other processes had them), **ours** otherwise (the mixers
  were behind with their own work);
* **CPU**: the CPU time this thread spent inside the mixers (``thread_time``,
  so not the time another process held the core), as a share of the wall-clock
  time, and that share per participant (one core = 100 %);
* **added delay p50 / p99**: from a packet's arrival (when it reached the
  socket, not when a loop running behind read it) to the moment the first
  outgoing packet that contains it was built (the read, jitter buffer, tick,
  mixing and encoding).

The phones' packets are encoded before the run: only the mixer is measured.
The first second is not counted: every phone sends its first packet within the
same 20 ms, and making that many decoders at once (about 1 ms each for Opus,
a resampler's filters) puts the loop 80 ms behind at 75 Opus participants,
where a focus sees its participants join one by one.

    python bench/mixer.py                              # PCMU (8 and 16 kHz mix), Opus
    python bench/mixer.py --write docs/performance.md  # and rewrite its "Audio mixer" section
    python bench/mixer.py --quick                      # smoke: small sizes, 1 s each
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import gc
import heapq
import os
import platform
import random
import subprocess
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "bench"):  # run as a script from anywhere
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from doc_section import replace_section  # noqa: E402 - bench/doc_section.py
from vidim.focus.codecs import MIX_RATE, AudioEncoder, codec_for  # noqa: E402
from vidim.focus.mixer import AudioMixer, MixerConfig  # noqa: E402
from vidim.rtp import RtpPacket  # noqa: E402
from vidim.vocabulary import Mode  # noqa: E402

RESULTS_BEGIN = "<!-- bench/mixer.py results: begin (rewritten by --write) -->"
RESULTS_END = "<!-- bench/mixer.py results: end -->"
PER_CONFERENCE = 5
TICK = 0.020
LATE_LIMIT = 0.005
DELAY_LIMIT = 0.040
#: The empty loop's period.
REFERENCE_PERIOD = 0.001
#: Seconds the reference process gets to start before both loops begin, and the first
#: seconds of a run, not counted: every phone's first packet makes its decoder at once.
LEAD = 0.5
WARMUP = 1.0
PAYLOAD_TYPES = {"pcmu": 0, "opus": 111}

#: (when it was due on the monotonic clock, seconds late), per tick or wake-up.
Lateness = list[tuple[float, float]]


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else 0.0


@dataclass(frozen=True, slots=True)
class Result:
    codec: str
    rate: int
    participants: int
    seconds: float
    late_p99: float
    late_max: float
    empty_p99: float
    empty_max: float
    over: int
    """Ticks more than ``LATE_LIMIT`` late ..."""
    over_host: int
    """... while the empty loop was held up too ..."""
    over_others: int
    """... else while the mixers' thread waited for a CPU ..."""
    over_ours: int
    """... and the rest."""
    cpu_wait: float
    """Share of the run the mixers' thread waited for a CPU."""
    gc_max: float
    """The longest pause of Python's garbage collector in the run (seconds)."""
    busy: float
    delay_p50: float
    delay_p99: float

    @property
    def real_time(self) -> bool:
        """No tick more than 5 ms late by our own doing, and CPU to spare."""
        return self.over_ours == 0 and self.busy < 1.0


def empty_loop(start: float, end: float, period: float = REFERENCE_PERIOD) -> Lateness:
    """The reference: sleep to a deadline every ``period`` from ``start`` to ``end``
    (monotonic clock, shared by every process), doing nothing else; how late each wake-up."""
    woken: Lateness = []
    due = start
    while due < end:
        ahead = due - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        woken.append((due, time.monotonic() - due))
        due += period
    return woken


def start_reference(start: float, end: float) -> subprocess.Popen[str]:
    """:func:`empty_loop` in a process of its own (no GIL shared with the mixers)."""
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--reference", f"{start!r},{end!r}"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def read_reference(process: subprocess.Popen[str]) -> Lateness:
    out, _ = process.communicate(timeout=60)
    return [(float(due), float(late)) for due, late in (line.split() for line in out.splitlines())]


class CollectorPauses:
    """The longest pause of Python's cyclic garbage collector after ``since``."""

    def __init__(self, since: float) -> None:
        self.since = since
        self.worst = 0.0
        self._began = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        now = time.monotonic()
        if phase == "start":
            self._began = now
        elif self._began >= self.since:
            self.worst = max(self.worst, now - self._began)

    def close(self) -> None:
        gc.callbacks.remove(self._callback)


class CpuWait:
    """Seconds this thread has waited for a CPU while it could run: the second field of
    Linux's ``/proc/thread-self/schedstat`` (0 where there is none)."""

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self._fd = None

    def __call__(self) -> float:
        if self._fd is None:
            return 0.0
        return int(os.pread(self._fd, 128, 0).split()[1]) / 1e9

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


def overlap(reference: Lateness, begin: float, end: float, look_back: float) -> float:
    """How late the empty loop ran at worst while the interval ``[begin, end]`` went by
    (its wake-ups sorted by due time, none ever more than ``look_back`` late)."""
    first = bisect.bisect_left(reference, (begin - look_back, 0.0))
    worst = 0.0
    for due, late in reference[first:]:
        if due > end:
            break
        if due + late > begin:
            worst = max(worst, late)
    return worst


def phone_packets(codec_name: str, frequency: float, ssrc: int, count: int) -> list[bytes]:
    """``count`` 20 ms RTP packets of a tone, as a phone would send them."""
    codec = codec_for(codec_name, PAYLOAD_TYPES[codec_name])
    encoder = AudioEncoder(codec)
    frame = MIX_RATE // 50
    t = np.arange(frame * 50)  # one second of tone, looped
    pcm = (6000 * np.sin(2 * np.pi * frequency * t / MIX_RATE)).astype(np.int16)
    payloads = [encoder.encode(pcm[i * frame : (i + 1) * frame]) for i in range(50)]
    return [
        bytes(
            RtpPacket(
                payload_type=codec.payload_type,
                sequence_number=i & 0xFFFF,
                timestamp=(i * codec.timestamp_step) & 0xFFFFFFFF,
                ssrc=ssrc,
                payload=payloads[i % 50],
            )
        )
        for i in range(count)
    ]


def measure(
    codec_name: str,
    rate: int,
    participants: int,
    seconds: float,
    seed: int = 1,
    *,
    stall: float = 0.0,
) -> Result:
    """Run ``participants`` (in conferences of 5, mixing at ``rate``) for ``seconds``,
    after ``WARMUP`` seconds not counted (everyone joined at once: see the docstring).

    ``stall``: the loop stops that long every second, as a stalled host stops it, to
    see what a stall costs in delay afterwards (its late ticks are then ours)."""
    chance = random.Random(seed)
    conferences = max(1, participants // PER_CONFERENCE)
    codec = codec_for(codec_name, PAYLOAD_TYPES[codec_name])
    ticks = int((WARMUP + seconds) / TICK)
    packets = {
        (c, p): phone_packets(codec_name, 300.0 + 250 * p, 1000 * c + p, ticks)
        for c in range(conferences)
        for p in range(PER_CONFERENCE)
    }
    # The phones' packets are the bench's, not the focus's: out of the collector's sight.
    gc.collect()
    gc.freeze()
    config = MixerConfig(rate=rate, record_delays=True)
    mixers = [AudioMixer(config) for _ in range(conferences)]
    start = time.monotonic() + LEAD
    counted, end = start + WARMUP, start + WARMUP + seconds
    reference = start_reference(counted, end)
    # (when, order, conference, participant or -1 for the mixer's tick, packet index)
    agenda: list[tuple[float, int, int, int, int]] = []
    order = 0
    for c, mixer in enumerate(mixers):
        phase = chance.uniform(0, TICK)
        for p in range(PER_CONFERENCE):
            mixer.add(f"p{p}", mode=Mode.AUDIO, codec=codec, now=start + phase - TICK)
            agenda.append((start + chance.uniform(0, TICK), order, c, p, 0))
            order += 1
        timer = mixer.get_timer()
        assert timer is not None
        agenda.append((timer, order, c, -1, 0))
        order += 1
    heapq.heapify(agenda)
    pauses = CollectorPauses(counted)
    # Per tick: when it was due, how late it ran, when that was, and how long the thread
    # had waited for a CPU by then; per frame played: its delay.  Arrays of floats, which
    # the collector does not walk (lists of these sizes cost its passes milliseconds).
    due_at, late_by, ran_at, cpu_waited, delays = (array("d") for _ in range(5))
    cpu_wait = CpuWait()
    busy = 0.0
    clock, cpu = time.monotonic, time.thread_time
    next_stall = counted + 0.5
    while agenda:
        when, _, c, p, index = heapq.heappop(agenda)
        if when >= end:
            continue
        if stall and clock() >= next_stall:
            time.sleep(stall)
            next_stall += 1.0
        ahead = when - clock()
        if ahead > 0.0005:
            time.sleep(ahead)
        began, cpu_began = clock(), cpu()
        mixer = mixers[c]
        if p < 0:
            recorded = len(mixer.delays)
            # As the asyncio layer: a timer a hair early is handled at its time.
            mixer.handle_timer(max(began, when))
            mixer.packets_to_send()
            done = clock()
            if when >= counted:
                due_at.append(when)
                late_by.append(began - when)
                ran_at.append(began)
                cpu_waited.append(cpu_wait())
                delays.extend(d + (done - began) for d in mixer.delays[recorded:])
            del mixer.delays[:]
            next_tick = mixer.get_timer()
            assert next_tick is not None
            heapq.heappush(agenda, (next_tick, order, c, -1, 0))
        else:
            # Stamped when it reached the socket: a read that comes late is delay too.
            mixer.receive_datagram(f"p{p}", packets[c, p][index], when)
            if index + 1 < ticks:
                heapq.heappush(agenda, (when + TICK, order, c, p, index + 1))
        order += 1
        if began >= counted:
            busy += cpu() - cpu_began
    cpu_wait.close()
    pauses.close()
    gc.unfreeze()
    empty = sorted(read_reference(reference))
    empty_lateness = [seconds_late for _, seconds_late in empty]
    look_back = max(empty_lateness, default=0.0)
    host = others = ours = 0
    for due, seconds_late, waited_by_now in zip(due_at, late_by, cpu_waited, strict=True):
        if seconds_late <= LATE_LIMIT:
            continue
        # What the thread had waited for a CPU at the last tick before this one was due.
        before = max(bisect.bisect_right(ran_at, due) - 1, 0)
        cpu_taken = waited_by_now - cpu_waited[before]
        # The host's stall, or the backlog it left (worked off in about as long again).
        stalled = overlap(empty, due - seconds_late, due + seconds_late, look_back)
        if seconds_late - stalled <= LATE_LIMIT:
            host += 1
        elif seconds_late - cpu_taken <= LATE_LIMIT:
            others += 1
        else:
            ours += 1
    return Result(
        codec=codec_name,
        rate=rate,
        participants=conferences * PER_CONFERENCE,
        seconds=seconds,
        late_p99=percentile(late_by, 0.99),
        late_max=max(late_by),
        empty_p99=percentile(empty_lateness, 0.99),
        empty_max=max(empty_lateness, default=0.0),
        over=host + others + ours,
        over_host=host,
        over_others=others,
        over_ours=ours,
        cpu_wait=(cpu_waited[-1] - cpu_waited[0]) / seconds,
        gc_max=pauses.worst,
        busy=busy / seconds,
        delay_p50=percentile(delays, 0.5),
        delay_p99=percentile(delays, 0.99),
    )


def table(results: list[Result]) -> str:
    lines = [
        "| codec | mix rate (Hz) | participants | CPU (% of a core) | per participant (%) "
        "| CPU wait (%) | GC pause max (ms) | tick late p99 / max (ms) "
        "| empty loop late p99 / max (ms) "
        "| ticks > 5 ms late: all / host / others / ours | added delay p50 / p99 (ms) "
        "| real time |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r.codec} | {r.rate} | {r.participants} "
            f"| {r.busy * 100:.0f} | {r.busy * 100 / r.participants:.2f} "
            f"| {r.cpu_wait * 100:.0f} | {r.gc_max * 1e3:.1f} "
            f"| {r.late_p99 * 1e3:.1f} / {r.late_max * 1e3:.1f} "
            f"| {r.empty_p99 * 1e3:.1f} / {r.empty_max * 1e3:.1f} "
            f"| {r.over} / {r.over_host} / {r.over_others} / {r.over_ours} "
            f"| {r.delay_p50 * 1e3:.1f} / {r.delay_p99 * 1e3:.1f} "
            f"| {'yes' if r.real_time else 'no'} |"
        )
    return "\n".join(lines)


def largest(results: list[Result], passed: Callable[[Result], bool]) -> str:
    """Per codec and rate, the largest size that passed with every smaller one passing too."""
    best: dict[tuple[str, int], int] = {}
    failed: set[tuple[str, int]] = set()
    for r in results:
        run = (r.codec, r.rate)
        best.setdefault(run, 0)
        if not passed(r):
            failed.add(run)
        elif run not in failed:
            best[run] = r.participants
    return ", ".join(f"{codec} at {rate} Hz: {n}" for (codec, rate), n in best.items())


def report(results: list[Result], seconds: float, load_before: float) -> str:
    load = os.getloadavg()[0]
    never_late = largest(results, lambda r: r.over == 0 and r.busy < 1.0)
    ours = largest(results, lambda r: r.real_time)
    delay = largest(results, lambda r: r.real_time and r.delay_p99 < DELAY_LIMIT)
    return (
        f"Measured {dt.date.today().isoformat()} on {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs shared with other work "
        f"(load average {load_before:.1f} before, {load:.1f} after), {seconds:g} s per "
        f"size after a second not counted, conferences of {PER_CONFERENCE}, one thread.  A "
        f"tick more than {LATE_LIMIT * 1e3:.0f} ms late is the *host*'s when it would not "
        f"have been but for the empty loop's lateness meanwhile or as long before (a process "
        f"of its own that does nothing), *others*' when it would not have been but for the "
        f"time the mixers' thread waited for a CPU meanwhile, *ours* otherwise; real time: "
        f"no tick of ours, "
        f"and the mixers' CPU under a whole core.  A largest size counts only when every "
        f"smaller one passed too.\n\n"
        f"{table(results)}\n\n"
        f"Largest size with no tick more than {LATE_LIMIT * 1e3:.0f} ms late at all: "
        f"{never_late}.  \n"
        f"Largest size in real time (no tick of ours more than {LATE_LIMIT * 1e3:.0f} ms "
        f"late): {ours}.  \n"
        f"... and with an added delay p99 under {DELAY_LIMIT * 1e3:.0f} ms: {delay}.\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pcmu8", default="100,200,300,400,500,600", help="sizes: PCMU at 8 kHz")
    parser.add_argument("--pcmu16", default="50,100,150,200", help="sizes: PCMU at 16 kHz")
    parser.add_argument("--opus", default="25,50,75,100", help="sizes: Opus mixed at 16 kHz")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--stall", type=float, default=0.0, help="stop the loop this long a second")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 and 10, 1 s each")
    parser.add_argument("--write", type=Path, help="rewrite the Audio mixer results in this file")
    parser.add_argument("--reference", help=argparse.SUPPRESS)  # START,END: the empty loop
    args = parser.parse_args(argv)
    if args.reference:
        start, end = (float(t) for t in args.reference.split(","))
        print("\n".join(f"{due!r} {late!r}" for due, late in empty_loop(start, end)))
        return 0
    load_before = os.getloadavg()[0]
    if args.quick:
        args.pcmu8, args.pcmu16, args.opus, args.seconds = "5,10", "5", "5", 1.0
    results = []
    for option, codec, rate in (
        ("pcmu8", "pcmu", 8000),
        ("pcmu16", "pcmu", 16000),
        ("opus", "opus", 16000),
    ):
        for size in (int(n) for n in getattr(args, option).split(",") if n):
            result = measure(codec, rate, size, args.seconds, stall=args.stall)
            results.append(result)
            print(table([result]).splitlines()[-1], flush=True)
    text = report(results, args.seconds, load_before)
    print()
    print(text)
    if args.write:
        replace_section(args.write, RESULTS_BEGIN, RESULTS_END, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
