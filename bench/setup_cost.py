"""What a conference setup costs vidim-daemon: instructions (callgrind), CPU, and where it goes.

Three figures per log level, each from its own daemon beside bench/setups.py's
SIPp peers (requester, focus and invitees, profile ``asterisk``, no probe):

* **instructions** (callgrind): the daemon runs under ``valgrind
  --tool=callgrind --instr-atstart=no``, takes warm-up setups uncounted, and
  counts every instruction of its process in user space while SIPp sends COUNT
  setups at RATE/s (``callgrind_control -i on`` / ``off``).  A count, not a
  time: it repeats to a fraction of a percent and the machine's load does not
  change it, so it is the figure to compare two versions by.  valgrind runs
  the daemon some 50 times slower, hence the low rate: a daemon that falls
  behind gets retransmissions, whose work is counted too (the report says how many),
  and fewer setups per wake-up of the event loop cost a few percent more each.
* **CPU time**, user and kernel (``/proc/PID/stat``): TIMED x COUNT setups one
  at a time from a Python probe, no valgrind, no profiler.  Kernel time is
  what callgrind leaves out.  Linux splits a process's CPU time into user and
  kernel by sampling at each clock tick (10 ms), hence the many setups: a
  time, it changes with the machine's load, and its split is to a few percent.
* **where the time goes** (cProfile in the daemon's process, enabled by a
  signal after the warm-up): COUNT more setups from SIPp, every function's own
  time added up by layer (``LAYERS``: the vidim module or library the function
  is in).  A built-in function's time (``str.split``, ``dict.get``...) goes to
  the layer of the Python function that called it: parsing calls ``split``,
  the parser pays.  cProfile adds a fixed cost to every call it sees, which
  weighs most on layers made of many short calls: read the shares as
  approximate, and the instructions as exact.

This runs at INFO (as deployed: four lines per setup) and at WARNING (none),
so the difference is what the log lines cost.

    .venv/bin/python bench/setup_cost.py                              # 400 setups at 5/s (minutes)
    .venv/bin/python bench/setup_cost.py --write docs/performance.md  # and record it
    .venv/bin/python bench/setup_cost.py --quick                      # smoke: 20 setups, INFO only
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import os
import pstats
import runpy
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "bench") not in sys.path:
    sys.path.insert(0, str(ROOT / "bench"))
import setups  # noqa: E402 - bench/setups.py, beside this script
from doc_section import replace_section  # noqa: E402 - bench/doc_section.py

RESULTS_BEGIN = "<!-- bench/setup_cost.py results: begin (rewritten by --write) -->"
RESULTS_END = "<!-- bench/setup_cost.py results: end -->"
#: valgrind starts the interpreter and imports vidim some 50 times slower.
START_TIMEOUT = 300.0
WARM_UP = 50
#: Call numbers of the probe's CPU-timed setups (the warm-up's start at PROBE_BASE + 500000).
TIMED_PROBE_BASE = setups.PROBE_BASE + 600_000
#: Setups timed per setup counted: enough clock ticks (10 ms) for the user/kernel split.
TIMED = 5
#: The profiled daemon: ``python bench/setup_cost.py PROFILED_DAEMON STATS python -m ...``.
PROFILED_DAEMON = "--profiled-daemon"

#: (layer, module prefixes): a function belongs to the first layer one of whose
#: prefixes names its module or a package above it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("SIP transactions (`vidim.sip.transaction`)", ("vidim.sip.transaction",)),
    ("SIP dialogs (`vidim.sip.dialog`)", ("vidim.sip.dialog",)),
    ("SIP messages: parsing, headers, URIs, serializing (the rest of `vidim.sip`)",
     ("vidim.sip",)),
    ("SDP (`vidim.sdp`, `sdp_transform`)", ("vidim.sdp", "sdp_transform")),
    ("the allocator (`vidim.allocator`, `vidim.core`, timers, overload guard)",
     ("vidim.allocator", "vidim.core", "vidim.timers", "vidim.overload", "vidim.vocabulary")),
    ("the daemon's sockets and log lines (`vidim.aio`, uvloop's `sendto` in it)", ("vidim.aio",)),
    ("the daemon's event lines and log handler (`vidim_daemon`)", ("vidim_daemon",)),
    ("the rest of vidim", ("vidim",)),
    ("logging (the standard library's)", ("logging",)),
    ("the event loop (`asyncio`, `uvloop`), and what it calls from C", ("asyncio", "uvloop")),
)  # fmt: skip
#: Where everything else goes (the trust check's ipaddress, enum, typing, random ids...).
OTHER = "the rest of the standard library (`ipaddress`, `enum`, `typing`...)"
#: Built-in functions nobody in Python called: the event loop's C code called them.
CALLED_FROM_C = LAYERS[-1][0]

#: Shared objects by what they are (the first pattern found in the path wins).
OBJECTS: tuple[tuple[str, str], ...] = (
    ("libpython", "CPython (interpreter, objects, strings, dicts)"),
    ("uvloop", "uvloop"),
    ("libc.so", "libc"),
)


# ------------------------------------------------------------ callgrind's file


@dataclass
class CallgrindProfile:
    """What a callgrind output file says: the total, and each object file's own instructions."""

    total: int = 0
    #: object file -> instructions of its functions' own code (not their callees').
    by_object: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def read_callgrind(lines: Iterable[str]) -> CallgrindProfile:
    """Parse callgrind's output format (valgrind's callgrind-format docs), event Ir only.

    Object names may be compressed (``(7) name`` once, ``(7)`` after); a cost
    line right after ``calls=`` is the cost of that call (callees included) and
    belongs to the caller's inclusive cost, so it is not counted here; any other
    cost line belongs to the current object.
    """
    profile = CallgrindProfile()
    objects: dict[str, str] = {}

    def object_name(value: str) -> str:
        number, _, name = value.strip().partition(" ")
        if not (number.startswith("(") and number.endswith(")")):
            return value.strip()
        if name:
            objects[number] = name
        return objects.get(number, number)

    obj = ""
    after_calls = False
    for raw in lines:
        line = raw.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        if line[0].isdigit() or line[0] in "+-*":
            if not after_calls:
                parts = line.split()
                profile.by_object[obj] += int(parts[1]) if len(parts) > 1 else 0
            after_calls = False
            continue
        key, _, value = line.partition("=")
        if key == "ob":
            obj = object_name(value)
        elif key == "cob":
            object_name(value)  # may define a compressed name used later
        elif key == "calls":
            after_calls = True
        elif line.startswith(("summary:", "totals:")):
            profile.total = max(profile.total, int(line.split()[1]))
    return profile


# ---------------------------------------------------------- cProfile's figures

#: pstats' key for a function: (file, line, name); the file of a built-in is ``~``.  Its
#: entry: (primitive calls, calls, own time, cumulative time, {caller's key: the same four}).
StatsKey = tuple[str, int, str]


def module_name(filename: str) -> str:
    """A module's dotted name from its file.

    ``.../vidim/sip/parser.py`` is ``vidim.sip.parser``, ``.../lib/python3.11/logging/__init__.py``
    is ``logging``; a file neither under vidim nor in a library directory is its stem.
    """
    parts = Path(filename).with_suffix("").parts
    start = next(
        (i for i in range(len(parts) - 1, -1, -1) if parts[i] in ("vidim", "vidim_daemon")), None
    )
    if start is None:
        roots = [i for i, p in enumerate(parts) if p == "site-packages" or p.startswith("python3")]
        start = roots[-1] + 1 if roots else len(parts) - 1
    names = [p for p in parts[start:] if p != "__init__"]
    return ".".join(names) or filename


def layer_of_module(module: str) -> str:
    for layer, prefixes in LAYERS:
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return layer
    return OTHER


def layer_times(stats: Mapping[StatsKey, tuple[Any, ...]]) -> dict[str, float]:
    """Own time by layer; a built-in's own time shared among its callers' layers.

    ``stats`` is ``pstats.Stats(...).stats``: for a built-in the file is ``~``
    and each caller's entry says how much of its own time that caller's calls took.
    """
    times: defaultdict[str, float] = defaultdict(float)
    resolving: set[StatsKey] = set()

    def share(key: StatsKey, seconds: float) -> None:
        filename, _line, _name = key
        if filename != "~":
            times[layer_of_module(module_name(filename))] += seconds
            return
        callers: Mapping[StatsKey, tuple[Any, ...]] = stats[key][4] if key in stats else {}
        by_caller = {k: v[2] for k, v in callers.items() if k != key}
        whole = sum(by_caller.values())
        if key in resolving or not by_caller or whole <= 0:
            times[CALLED_FROM_C] += seconds  # or a cycle of built-ins: no Python caller to blame
            return
        resolving.add(key)
        for caller, part in by_caller.items():
            share(caller, seconds * part / whole)
        resolving.discard(key)

    this_script = Path(__file__).resolve()
    for key, entry in stats.items():
        if Path(key[0]).resolve() != this_script:  # the profiler's own on/off switch
            share(key, entry[2])
    return dict(times)


def run_profiled_daemon(stats_path: Path, daemon_argv: Sequence[str]) -> None:
    """The daemon's ``__main__`` with cProfile on between SIGUSR1 and SIGUSR2.

    SIGUSR2 writes the statistics to ``stats_path``; SIGUSR1 touches
    ``stats_path.on`` once the profiler runs.  The profiler times the main
    thread's CPU (``time.thread_time``), so waiting in the event loop costs nothing.
    """
    profiler = cProfile.Profile(time.thread_time)

    def start(_signum: int, _frame: FrameType | None) -> None:
        profiler.enable()
        stats_path.with_suffix(".on").touch()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(stats_path)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    # The argv start_daemon gives a wrapper: [python, -m, vidim_daemon, run, ...].
    module_at = list(daemon_argv).index("-m") + 1
    sys.argv = [daemon_argv[module_at], *daemon_argv[module_at + 1 :]]
    runpy.run_module(daemon_argv[module_at], run_name="__main__", alter_sys=True)


# ------------------------------------------------------------------- the runs


@dataclass
class CostRun:
    log_level: str
    count: int
    rate: int
    #: The daemon's state store, ``memory`` or ``sqlite`` (a file in the run's own
    #: directory): memory by default, so that what is counted is the SIP work, as in
    #: the figures from before the store existed; ``--store sqlite`` adds write-ahead.
    store: str = "memory"
    #: Setups SIPp saw through while callgrind counted, and its retransmissions then.
    done: int = 0
    retrans: int = 0
    profile: CallgrindProfile | None = None
    version: str = ""
    #: The probe's setups, one at a time: utime and stime over them (seconds).
    timed: int = 0
    user: float = 0.0
    kernel: float = 0.0
    #: Setups SIPp saw through while cProfile ran, and its seconds by layer.
    profiled: int = 0
    layers: dict[str, float] = field(default_factory=dict)

    def per_setup(self, instructions: int) -> float:
        return instructions / self.done if self.done else float("nan")


@dataclass
class Peers:
    """SIPp's focus and invitees, a daemon between them, and SIPp's requester once it ran."""

    workdir: Path
    invitees: setups.Sipp | None = None
    focus: setups.Sipp | None = None
    requester: setups.Sipp | None = None
    daemon: setups.Daemon | None = None

    def start(
        self, log_level: str, wrapper: Sequence[str], start_timeout: float, store: str = "memory"
    ) -> setups.Daemon:
        """Start the peers and the daemon (on a ``store`` of its own), and warm it up."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.invitees = setups.start_sipp("invitees", "invitee.xml", self.workdir)
        self.focus = setups.start_sipp("focus", "focus.xml", self.workdir)
        self.daemon = setups.start_daemon(
            self.workdir, focus=self.focus.port, proxy=self.invitees.port,
            log_level=log_level, wrapper=wrapper, start_timeout=start_timeout,
            # Under valgrind a request can wait long enough in the queue to trip the
            # guard, whose 503s would leave setups out: what is counted is the work.
            limits=["overload = false"],
            store="memory:" if store == "memory" else f"sqlite:{self.workdir / 'state.sqlite3'}",
        )  # fmt: skip
        setups.warm_up(self.daemon.port, WARM_UP)
        return self.daemon

    def load(self, daemon: setups.Daemon, count: int, rate: int) -> None:
        """COUNT setups at RATE/s from SIPp's requester, until the daemon is idle again."""
        self.requester = setups.start_requester(
            self.workdir, daemon.port, rate, count, timeout=count / rate + 120
        )
        self.requester.wait(timeout=count / rate + 180)
        wait_idle(daemon.proc.pid)  # the last invitations and ACKs

    def stop(self, daemon_timeout: float) -> tuple[int, int]:
        """Stop everyone; the requester's setups SIPp saw through, and its retransmissions."""
        sipps = [s for s in (self.requester, self.focus, self.invitees) if s is not None]
        for sipp in sipps:
            setups.stop_sipp(sipp)
        if self.daemon is not None:
            setups.stop(self.daemon.proc, timeout=daemon_timeout)
        if len(sipps) < 3:
            return 0, 0
        *_, completed = setups.join_setups(*(s.log_lines() for s in sipps))
        return len(completed), sum(s.count("Retransmissions(C)") for s in sipps)


def run_counted(workdir: Path, run: CostRun) -> None:
    """One daemon under callgrind: ``run.count`` setups counted after the warm-up."""
    out = workdir / "callgrind.out"
    control = setups.require("callgrind_control")
    wrapper = [setups.require("valgrind"), "--tool=callgrind", "--instr-atstart=no",
               f"--callgrind-out-file={out}"]  # fmt: skip
    peers = Peers(workdir)
    try:
        daemon = peers.start(run.log_level, wrapper, START_TIMEOUT, run.store)
        pid = str(daemon.proc.pid)
        subprocess.run([control, "-i", "on", pid], check=True, capture_output=True)
        peers.load(daemon, run.count, run.rate)
        subprocess.run([control, "-i", "off", pid], check=True, capture_output=True)
    finally:
        run.done, run.retrans = peers.stop(daemon_timeout=120.0)  # callgrind writes on exit
    _say_missing(run.log_level, "counted", run.done, run.count, workdir)
    run.version = setups.daemon_versions(workdir)
    with open(out, errors="replace") as lines:
        run.profile = read_callgrind(lines)


def run_timed_and_profiled(workdir: Path, run: CostRun) -> None:
    """One daemon: ``run.count`` probe setups timed, then as many from SIPp under cProfile."""
    stats_path = workdir / "daemon.prof"
    wrapper = [sys.executable, str(Path(__file__).resolve()), PROFILED_DAEMON, str(stats_path)]
    peers = Peers(workdir)
    try:
        daemon = peers.start(run.log_level, wrapper, setups.START_TIMEOUT, run.store)
        pid = daemon.proc.pid
        user, kernel = user_kernel_seconds(pid)
        setups.warm_up(daemon.port, TIMED * run.count, first=TIMED_PROBE_BASE)
        wait_idle(pid, window=0.5)
        run.timed = TIMED * run.count
        run.user, run.kernel = user_kernel_seconds(pid)
        run.user, run.kernel = run.user - user, run.kernel - kernel
        signal_and_wait(daemon, signal.SIGUSR1, stats_path.with_suffix(".on"))
        peers.load(daemon, run.count, run.rate)
        signal_and_wait(daemon, signal.SIGUSR2, stats_path)
    finally:
        run.profiled, _ = peers.stop(daemon_timeout=15.0)
    _say_missing(run.log_level, "profiled", run.profiled, run.count, workdir)
    run.layers = layer_times(pstats.Stats(str(stats_path)).stats)  # type: ignore[attr-defined]


def signal_and_wait(daemon: setups.Daemon, number: int, appears: Path, limit: float = 10.0) -> None:
    """Signal the daemon, then wake its event loop until the handler has made ``appears``."""
    os.kill(daemon.proc.pid, number)
    deadline = time.monotonic() + limit
    while not appears.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the daemon did not answer signal {number}: no {appears}")
        setups.options_ping(daemon.port, 0.2)  # a Python handler runs with the next Python code


def user_kernel_seconds(pid: int) -> tuple[float, float]:
    """utime and stime of one process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / setups.CLK_TCK, int(fields[12]) / setups.CLK_TCK


def _say_missing(level: str, what: str, done: int, count: int, workdir: Path) -> None:
    if done < count:
        print(f"{level}: {count - done} of {count} {what} setups not seen through (logs in "
              f"{workdir})", file=sys.stderr)  # fmt: skip


def wait_idle(pid: int, *, window: float = 3.0, busy: float = 0.05, limit: float = 90.0) -> None:
    """Until the process used under ``busy`` of a CPU over ``window`` seconds (at most ``limit``).

    SIPp writes its logs when it exits, so they cannot say when the daemon is
    done; its CPU can: under valgrind the last setups take seconds to finish.
    The default window outlasts the first two retransmissions of a lost
    datagram (0.5 s and 1 s later, RFC 3261 Timer A/E), which leave the daemon
    idle in between.
    """
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = setups.cpu_seconds(pid)
        time.sleep(window)
        if setups.cpu_seconds(pid) - before < busy * window:
            return


# ----------------------------------------------------------------- the report


def _k(value: float) -> str:
    return "-" if value != value else f"{value / 1000:,.0f} k"  # NaN: nothing measured


def _share(part: float, whole: float) -> str:
    return f"{part / whole * 100:.0f}%" if whole else "-"


def _ms(seconds: float, count: int) -> str:
    return f"{seconds / count * 1000:.2f} ms" if count else "-"


def _row(what: str, cells: Iterable[str]) -> str:
    return f"| {what} |" + "".join(f" {cell} |" for cell in cells)


def format_report(runs: Sequence[CostRun], command: str) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    valgrind = subprocess.run(
        [setups.require("valgrind"), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    version = ", ".join(sorted({r.version for r in runs if r.version})) or "?"
    levels = [r.log_level.upper() for r in runs]
    rule = "|---|" + "---:|" * len(runs)
    totals = [r.profile.total if r.profile else 0 for r in runs]
    out = [
        f"- date: {now}",
        f"- machine: {setups.machine()}",
        f"- tools: {valgrind}, {setups.tool_versions()}",
        f"- vidim: {setups.git_describe()}, vidim-daemon {version} (pure Python)",
        f"- command: `{command}`",
        "",
        "Setups: " + "; ".join(
            f"{r.log_level.upper()} {r.done} of {r.count} counted at {r.rate}/s "
            f"({r.retrans} retransmissions), {r.timed} timed one at a time, "
            f"{r.profiled} of {r.count} profiled at {r.rate}/s"
            for r in runs
        ),
        "",
        _row("per setup", levels),
        rule,
        _row("**instructions in user space (callgrind)**",
             (f"**{_k(r.per_setup(t))}**" for r, t in zip(runs, totals, strict=True))),
        _row("CPU time, user + kernel (one at a time, no valgrind)",
             (_ms(r.user + r.kernel, r.timed) for r in runs)),
        _row("&nbsp;&nbsp;&nbsp;&nbsp;of which in the kernel",
             (_share(r.kernel, r.user + r.kernel) for r in runs)),
    ]  # fmt: skip
    if len(runs) == 2 and all(r.done for r in runs):
        info, warning = runs
        diff = info.per_setup(totals[0]) - warning.per_setup(totals[1])
        out += [
            "",
            f"The log lines of a setup at INFO: {_k(diff)} instructions "
            f"({_share(diff, info.per_setup(totals[0]))} of the daemon's at INFO).",
        ]
    out += [
        "",
        "Where the daemon's Python code spends its time (cProfile, the main thread's CPU; "
        "each function's own time goes to the layer it is in, a built-in's to its caller's):",
        "",
        _row("layer", levels),
        rule,
    ]
    for layer in [*(name for name, _ in LAYERS), OTHER]:
        out.append(
            _row(layer, (_share(r.layers.get(layer, 0.0), sum(r.layers.values())) for r in runs))
        )
    out += [
        "",
        "Own instructions by object file (callgrind; where the work is done, not who asked):",
        "",
        _row("object", levels),
        rule,
    ]
    for pattern, label in (*OBJECTS, ("", "everything else")):
        shares = (
            _share(_object_share(r.profile, pattern), t) if r.profile else "-"
            for r, t in zip(runs, totals, strict=True)
        )
        out.append(_row(label, shares))
    return "\n".join(out) + "\n"


def _object_share(profile: CallgrindProfile, pattern: str) -> int:
    """Own instructions of the objects ``pattern`` names; "": those no OBJECTS pattern names."""
    if pattern:
        return sum(n for obj, n in profile.by_object.items() if pattern in obj)
    known = [p for p, _ in OBJECTS]
    return sum(n for obj, n in profile.by_object.items() if not any(p in obj for p in known))


def write_results(doc: Path, text: str) -> None:
    replace_section(doc, RESULTS_BEGIN, RESULTS_END, text)


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == [PROFILED_DAEMON]:
        run_profiled_daemon(Path(args_in[1]), args_in[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=400, help="setups per measurement")
    parser.add_argument("--rate", type=int, default=5, help="setups per second")
    parser.add_argument("--quick", action="store_true", help="20 setups at 10/s, INFO only")
    parser.add_argument("--write", type=Path, help="rewrite the results section of this file")
    parser.add_argument("--workdir", type=Path, help="keep every log and profile here")
    parser.add_argument(
        "--store",
        choices=["memory", "sqlite"],
        default="memory",
        help="the daemon's state store [memory: the SIP work alone; sqlite: with write-ahead]",
    )
    args = parser.parse_args(args_in)
    levels = ["info"] if args.quick else ["info", "warning"]
    count, rate = (20, 10) if args.quick else (args.count, args.rate)
    command = "python bench/setup_cost.py " + shlex.join(args_in)
    with tempfile.TemporaryDirectory(prefix="vidim-setup-cost-") as tmp:
        base = (args.workdir or Path(tmp)).resolve()  # SIPp runs in it: no relative paths
        runs = [
            CostRun(log_level=level, count=count, rate=rate, store=args.store) for level in levels
        ]
        for run in runs:
            run_counted(base / run.log_level / "counted", run)
            run_timed_and_profiled(base / run.log_level / "profiled", run)
    text = format_report(runs, command.strip())
    print(text)
    if args.write:
        write_results(args.write, text)
    return 0 if all(r.done == r.count == r.profiled for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
