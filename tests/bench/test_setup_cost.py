"""bench/setup_cost.py: its callgrind reader and layers on hand-written inputs, and a quick run.

The quick run starts the real daemon under valgrind, then under cProfile, beside
real SIPp peers; it asserts that the setups complete and that the work was
counted and profiled, never a count or a time.
"""

from __future__ import annotations

import cProfile
import pstats
import shutil
from types import ModuleType

import pytest
from bench_scripts import load_script

from vidim.sip import parse_message

# Callgrind's format (valgrind's docs, "Callgrind Format Specification"): compressed
# names, a call's inclusive cost on the line after calls=, relative positions.
SAMPLE = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
events: Ir
summary: 950

ob=(1) /usr/lib/libpython3.11.so.1.0
fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
10 100
+2 50

ob=(2) /venv/site-packages/uvloop/loop.cpython-311-x86_64-linux-gnu.so
fl=(2) loop.c
fn=(2) __pyx_f_6uvloop_4loop_UDPTransport__on_receive
5 200
cob=(1)
cfi=(1)
cfn=(1)
calls=3 10
* 150
fi=(3) object.h
+1 30

fn=(3) __pyx_f_6uvloop_4loop_Loop__run
7 20
cfn=(2)
calls=1 5
* 380
cob=(3) /usr/lib/libc.so.6
cfn=(4) memcpy
calls=2 0
* 70
ob=(3)
fl=(4)
fn=(4)
0 70
ob=(1)
fn=(1)
+5 480
"""

PYTHON_LIB = "/usr/lib/python3.11"
VIDIM = "/work/vidim"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("setup_cost")


def test_the_reader_gives_each_object_its_own_instructions(bench: ModuleType) -> None:
    profile = bench.read_callgrind(SAMPLE.splitlines())
    assert profile.total == 950
    assert profile.by_object == {
        "/usr/lib/libpython3.11.so.1.0": 630,
        # own 200 + 20, and 30 in an inlined header (fi= does not change the object);
        # the calls' inclusive costs (150, 380, 70) are their callees', not its
        "/venv/site-packages/uvloop/loop.cpython-311-x86_64-linux-gnu.so": 250,
        "/usr/lib/libc.so.6": 70,  # named first as a callee's object (cob=)
    }


@pytest.mark.parametrize(
    ("filename", "module", "layer"),
    [
        (f"{VIDIM}/vidim/sip/parser.py", "vidim.sip.parser", "SIP messages"),
        (f"{VIDIM}/vidim/sip/transaction.py", "vidim.sip.transaction", "SIP transactions"),
        (f"{VIDIM}/vidim/sip/__init__.py", "vidim.sip", "SIP messages"),
        (f"{VIDIM}/vidim/aio/server.py", "vidim.aio.server", "the daemon's sockets"),
        (f"{VIDIM}/vidim/allocator/requests.py", "vidim.allocator.requests", "the allocator"),
        (f"{VIDIM}/vidim/timers.py", "vidim.timers", "the allocator"),
        (f"{VIDIM}/vidim/conference_info.py", "vidim.conference_info", "the rest of vidim"),
        (f"{VIDIM}/daemon/vidim_daemon/logs.py", "vidim_daemon.logs", "the daemon's event"),
        (f"{PYTHON_LIB}/logging/__init__.py", "logging", "logging"),
        (f"{PYTHON_LIB}/asyncio/events.py", "asyncio.events", "the event loop"),
        ("/venv/lib/python3.11/site-packages/sdp_transform/grammar.py", "sdp_transform.grammar",
         "SDP"),
        (f"{PYTHON_LIB}/secrets.py", "secrets", "the rest of the standard library"),
        (f"{PYTHON_LIB}/vidimish.py", "vidimish", "the rest of the standard library"),
    ],
)  # fmt: skip
def test_a_file_belongs_to_the_layer_of_its_module(
    bench: ModuleType, filename: str, module: str, layer: str
) -> None:
    assert bench.module_name(filename) == module
    assert bench.layer_of_module(module).startswith(layer)


def _key(filename: str, name: str) -> tuple[str, int, str]:
    return (filename, 1, name)


def test_a_builtins_time_goes_to_its_callers_layers(bench: ModuleType) -> None:
    parse = _key(f"{VIDIM}/vidim/sip/parser.py", "parse_message")
    emit = _key(f"{PYTHON_LIB}/logging/__init__.py", "emit")
    split = _key("~", "<method 'split' of 'str' objects>")
    join = _key("~", "<method 'join' of 'str' objects>")
    run = _key("~", "<method 'run' of '_contextvars.Context' objects>")
    # (primitive calls, calls, own seconds, cumulative seconds, callers), as pstats has them
    stats = {
        parse: (1, 1, 3.0, 9.0, {}),
        emit: (1, 1, 1.0, 2.0, {}),
        split: (4, 4, 4.0, 4.0, {parse: (3, 3, 3.0, 3.0), emit: (1, 1, 1.0, 1.0)}),
        join: (1, 1, 2.0, 2.0, {split: (1, 1, 2.0, 2.0)}),  # a built-in called by a built-in
        run: (1, 1, 0.5, 0.5, {}),  # called from C: the event loop's
    }
    times = bench.layer_times(stats)
    assert times == pytest.approx(
        {
            bench.layer_of_module("vidim.sip.parser"): 3.0 + 3.0 + 1.5,
            bench.layer_of_module("logging"): 1.0 + 1.0 + 0.5,
            bench.CALLED_FROM_C: 0.5,
        }
    )
    assert sum(times.values()) == pytest.approx(sum(entry[2] for entry in stats.values()))


def test_a_profiled_parse_is_the_sip_messages_layer(bench: ModuleType) -> None:
    datagram = (
        b"MESSAGE sip:vidim@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a\r\n"
        b"To: <sip:vidim@example.com>\r\nCall-ID: c1\r\nCSeq: 1 MESSAGE\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
    )
    profiler = cProfile.Profile()
    profiler.runcall(lambda: [parse_message(datagram) for _ in range(200)])
    times = bench.layer_times(pstats.Stats(profiler).stats)  # type: ignore[attr-defined]
    assert max(times, key=times.__getitem__) == bench.layer_of_module("vidim.sip.parser")


def test_the_report_shows_instructions_cpu_and_layers(bench: ModuleType) -> None:
    run = bench.CostRun(log_level="info", count=2, rate=10, done=2, timed=2, profiled=2)
    run.profile = bench.read_callgrind(SAMPLE.splitlines())
    run.user, run.kernel = 0.003, 0.001
    run.layers = {bench.layer_of_module("vidim.sip"): 3.0, bench.CALLED_FROM_C: 1.0}
    report = bench.format_report([run], "python bench/setup_cost.py --quick")
    assert "| **instructions in user space (callgrind)** | **0 k** |" in report  # 475 each
    assert "| CPU time, user + kernel (one at a time, no valgrind) | 2.00 ms |" in report
    assert "of which in the kernel | 25% |" in report
    assert f"| {bench.layer_of_module('vidim.sip')} | 75% |" in report
    assert f"| {bench.CALLED_FROM_C} | 25% |" in report
    assert "| CPython (interpreter, objects, strings, dicts) | 66% |" in report
    assert "| uvloop | 26% |" in report
    assert "| libc | 7% |" in report


@pytest.mark.integration
@pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("valgrind", "callgrind_control", "sipp")),
    reason="valgrind and sipp are installed by scripts/setup",
)
def test_quick_run_counts_and_profiles_every_setup(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--quick"]) == 0  # 0: every setup was seen through, twice
    out = capsys.readouterr().out
    assert (
        "Setups: INFO 20 of 20 counted at 10/s (0 retransmissions), 100 timed one at a time, "
        "20 of 20 profiled at 10/s"
    ) in out
    assert _figure(out, "| **instructions in user space (callgrind)** | **") > 100  # k
    shares = {layer: _figure(out, f"| {layer} | ") for layer, _ in bench.LAYERS}
    assert shares[bench.layer_of_module("vidim.sip.parser")] > 0  # the parser was profiled
    assert shares[bench.layer_of_module("vidim.allocator")] > 0
    assert sum(shares.values()) <= 100 + len(shares)  # shares of one whole (each rounded)


def _figure(report: str, prefix: str) -> int:
    """The whole number ("1,208 k", "14%") right after ``prefix`` in the report."""
    start = report.index(prefix) + len(prefix)
    digits = report[start:].split(" ", 1)[0].split("%", 1)[0]
    return int(digits.replace(",", ""))
