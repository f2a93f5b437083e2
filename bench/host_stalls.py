"""Moments when the machine itself stops running us: a fixed piece of work timed every 10 ms.

On a virtual machine the host can take the CPU away from the guest for tens of
milliseconds without the guest seeing it as steal time (``/proc/stat``'s steal
column stays flat).  Every process in the guest stops at once; a server queues
what arrives meanwhile and works it off afterwards, so its p99 latency is then
set by the host, not by the server.  On the 2-core VM of docs/performance.md
both vCPUs stall together for 10-100 ms every 1.5-2 s, and every cluster of
slow conference setups in ``bench/setups.py`` lines up with one.

The probe is a separate process (no GIL shared with the benchmark) that wakes
up every ``interval`` and spins a fixed loop of about 0.1-0.2 ms (about 2% of
one CPU), and writes, per run, when it was due on the system clock (the clock
tcpdump stamps with) and how long after that it ended: its wake-up's lateness
plus its run, so that a stall that spans a due time shows whether it caught
the probe asleep or running.  A run that ended ``FACTOR`` times the median or
more, and at least ``MIN_US``, after it was due was held by something other than
its own work: a stall.  The guest's own scheduler also holds the probe when another
process runs on its CPU, for 0.3-3 ms under load here, hence the floor; so
stalls are evidence to compare, not a verdict: the benchmark reports the
latency both with and without the setups near them.

    .venv/bin/python bench/host_stalls.py --seconds 20   # this machine, idle
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Seconds between two timed runs of the work.
INTERVAL = 0.01
#: Iterations of the timed loop (about 0.2 ms of one CPU here).
WORK = 2_000
#: A run this many times slower than the median, and at least ``MIN_US`` long, is a stall.
FACTOR = 3.0
#: Shorter holds are the guest's own scheduler (another process on the probe's CPU,
#: under load: 0.3-3 ms); the host's are 11-90 ms here, in steps of about 12 ms.
MIN_US = 5_000.0
#: Stalls closer than this (seconds) are one window.
MERGE = 0.05


@dataclass(frozen=True)
class Stall:
    """A window of the system clock (seconds) in which the probe was held up."""

    start: float
    end: float

    @property
    def ms(self) -> float:
        return (self.end - self.start) * 1e3


def probe(out: Path, seconds: float, interval: float = INTERVAL, work: int = WORK) -> None:
    """Every ``interval``, wake up and run ``work`` iterations; one line per run to ``out``.

    Each line is the time the run was due (system clock) and how long after
    that it ended, in microseconds: the wake-up's lateness plus the run.  A
    stall that spans a due time shows either way, in the sleep or in the run.
    """
    end = time.monotonic() + seconds
    with out.open("w") as file:
        due = time.perf_counter() + interval
        while time.monotonic() < end:
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            n = 0
            while n < work:
                n += 1
            done = time.perf_counter()
            took = done - due
            file.write(f"{time.time() - took:.6f} {took * 1e6:.1f}\n")
            file.flush()
            due = done + interval


def start(out: Path, seconds: float) -> subprocess.Popen[bytes]:
    """The probe in its own process for ``seconds`` (or until terminated)."""
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--probe", str(out), "--seconds",
         str(seconds)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip


def read_samples(path: Path) -> list[tuple[float, float]]:
    """(start on the system clock in seconds, duration in microseconds) per run."""
    samples: list[tuple[float, float]] = []
    if not path.exists():
        return samples
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) == 2:
            try:
                samples.append((float(fields[0]), float(fields[1])))
            except ValueError:
                continue
    return samples


def find_stalls(
    samples: Sequence[tuple[float, float]],
    factor: float = FACTOR,
    merge: float = MERGE,
    min_us: float = MIN_US,
) -> list[Stall]:
    """The windows in which runs took ``factor`` times the median and ``min_us`` or more, merged."""
    if len(samples) < 10:
        return []
    median = statistics.median(duration for _, duration in samples)
    stalls: list[Stall] = []
    for start_at, duration in samples:
        if duration < factor * median or duration < min_us:
            continue
        end_at = start_at + duration / 1e6
        if stalls and start_at - stalls[-1].end <= merge:
            stalls[-1] = Stall(stalls[-1].start, max(stalls[-1].end, end_at))
        else:
            stalls.append(Stall(start_at, end_at))
    return stalls


def stalled_ms(stalls: Iterable[Stall]) -> float:
    """How long the stalls held the probe, in all."""
    return sum(stall.ms for stall in stalls)


def away_from(
    stamped: Iterable[tuple[float, float]],
    stalls: Sequence[Stall],
    before: float = 0.01,
    after: float = 0.25,
) -> list[float]:
    """The values whose stamp is not within ``before`` of a stall or ``after`` past its end.

    A stall's backlog takes a while to work off (100-150 ms for the daemon at
    1,000 setups/s here), hence the longer margin after a stall than before.
    """
    windows = sorted((s.start - before, s.end + after) for s in stalls)
    kept = []
    for stamp, value in stamped:
        if not any(lo <= stamp <= hi for lo, hi in windows):
            kept.append(value)
    return kept


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--probe", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe is not None:
        probe(args.probe, args.seconds)
        return 0
    out = Path(f"/tmp/host_stalls.{time.time_ns()}")
    try:
        probe(out, args.seconds)
        samples = read_samples(out)
    finally:
        out.unlink(missing_ok=True)
    stalls = find_stalls(samples)
    median = statistics.median(d for _, d in samples) if samples else 0.0
    print(f"{len(samples)} runs of the probe over {args.seconds:.0f} s, median {median:.0f} us")
    print(
        f"{len(stalls)} stalls (a run >= {FACTOR:.0f}x the median and >= {MIN_US / 1e3:.0f} ms), "
        f"{stalled_ms(stalls):.0f} ms in all"
    )
    first = samples[0][0] if samples else 0.0
    for stall in stalls:
        print(f"  at {stall.start - first:7.3f} s: {stall.ms:6.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
