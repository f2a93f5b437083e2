"""Fixtures that run the real Kamailio 5.6 and SIPp 3.6 on 127.0.0.1 (helpers: sip_peers.py).

Both programs are installed by ``scripts/setup test`` from ``scripts/test-packages.txt``;
a missing binary is a failure, not a skip.  Every process is started in its own
session (process group) and always stopped by its process group in a finalizer, also
when the test fails.  Every wait is bounded; readiness is probed, never slept on.
Logs go to the test's tmp dir and are printed at teardown, so a failing test shows them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from sip_peers import (
    HOST,
    SIPP_BIND_ERROR,
    Kamailio,
    Sipp,
    free_port,
    kamailio_module_dir,
    require_binary,
    start_example_kamailio_ready,
    start_kamailio,
    stop_process_group,
    wait_kamailio_ready,
)


@pytest.fixture
def kamailio_factory(tmp_path: Path) -> Iterator[Callable[..., Kamailio]]:
    """Start Kamailio (``relay_to=(host, port)`` adds the t_relay route); stopped at teardown."""
    binary = require_binary("kamailio")
    module_dir = kamailio_module_dir()
    started: list[Kamailio] = []

    def start(relay_to: tuple[str, int] | None = None) -> Kamailio:
        for _attempt in range(3):
            kamailio = start_kamailio(binary, module_dir, tmp_path, relay_to)
            started.append(kamailio)
            if wait_kamailio_ready(kamailio):
                return kamailio
            # It exited during start-up; retry on a new port only if the port was taken.
            stop_process_group(kamailio.proc)
            if "Address already in use" not in kamailio.log():
                break
        raise AssertionError(
            f"Kamailio exited with {kamailio.proc.returncode} during start-up:\n" + kamailio.log()
        )

    try:
        yield start
    finally:
        for kamailio in started:
            code = stop_process_group(kamailio.proc)
            print(f"--- Kamailio on port {kamailio.port} exited with {code}; log:")
            print(kamailio.log())


@pytest.fixture
def kamailio(kamailio_factory: Callable[..., Kamailio]) -> Kamailio:
    """A stateless Kamailio answering MESSAGE and OPTIONS with 200 (UDP and TCP)."""
    return kamailio_factory()


@pytest.fixture
def sipp_factory(tmp_path: Path) -> Iterator[Callable[..., Sipp]]:
    """Run ``sipp ARGS`` on a free local port with message and error traces in tmp_path.

    ``wait_ready`` (UAS scenarios) returns once SIPp listens.  SIPp quits on its own after
    ``-m`` calls; ``-timeout ... -timeout_error`` bounds it; teardown kills what is left.
    """
    binary = require_binary("sipp")
    started: list[Sipp] = []

    def start(args: Sequence[str], *, wait_ready: bool = False, timeout: int = 20) -> Sipp:
        for attempt in range(3):
            port = free_port()
            workdir = tmp_path / f"sipp-{port}"
            workdir.mkdir()
            argv = [binary, *args, "-i", HOST, "-p", str(port), "-t", "u1", "-nostdin",
                    "-timeout", f"{timeout}s", "-timeout_error",
                    "-trace_msg", "-message_file", str(workdir / "messages.log"),
                    "-trace_err", "-error_file", str(workdir / "errors.log")]  # fmt: skip
            with open(workdir / "sipp.stdout", "wb") as out:
                proc = subprocess.Popen(
                    argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            sipp = Sipp(proc=proc, port=port, argv=argv, workdir=workdir)
            started.append(sipp)
            if not wait_ready:
                return sipp
            try:
                sipp.wait_bound()
            except AssertionError:
                if proc.poll() == SIPP_BIND_ERROR and attempt < 2:
                    continue  # the port was taken between the probe and SIPp's bind
                raise
            return sipp
        raise AssertionError("unreachable")

    try:
        yield start
    finally:
        for sipp in started:
            code = stop_process_group(sipp.proc)
            print(f"--- SIPp on port {sipp.port} exited with {code}")
            print(sipp.report())


@pytest.fixture
def example_kamailio_factory(tmp_path: Path) -> Iterator[Callable[..., Kamailio]]:
    """Start Kamailio on examples/kamailio/kamailio.cfg (``daemon=``, ``focus=``, ``domain=``)."""
    started: list[Kamailio] = []

    def start(*, daemon: tuple[str, int], focus: tuple[str, int], domain: str) -> Kamailio:
        return start_example_kamailio_ready(
            tmp_path, daemon=daemon, focus=focus, domain=domain, started=started
        )

    try:
        yield start
    finally:
        for kamailio in started:
            code = stop_process_group(kamailio.proc)
            print(f"--- Kamailio (example config) on port {kamailio.port} exited with {code}; log:")
            print(kamailio.log())
