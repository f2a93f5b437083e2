"""vidim-daemon as a user runs it: check-config, and a real process on loopback."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from vidim_daemon.cli import Running, _overrides, build_allocator, main, reload_config
from vidim_daemon.config import load

from vidim.sip import Request, Response, new_branch, new_tag, parse_message


def test_check_config_ok(tmp_path: Path) -> None:
    path = tmp_path / "vidim.toml"
    path.write_text('domain = "example.com"\nproxy = "sip:127.0.0.1:5060"\n')
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 0, result.output
    assert "OK: allocator on 127.0.0.1:5070, focus built-in on 127.0.0.1:5080" in result.output
    assert (
        "proxy sip:127.0.0.1:5060, domain example.com, service sip:vidim@example.com"
        in result.output
    )


def test_check_config_says_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('profile = "skype"\n[timers]\nfocus_timeout = "soon"\n')
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 2
    assert "profile: must be one of rfc4579, asterisk, freeswitch, got 'skype'" in result.output
    assert "timers.focus_timeout: must be int or float, got 'soon'" in result.output


def test_help_lists_every_option() -> None:
    result = CliRunner().invoke(main, ["run", "--help"])
    assert result.exit_code == 0
    for option in (
        "--listen", "--focus", "--focus-listen", "--profile", "--proxy", "--domain",
        "--service-uri", "--trusted", "--no-probe", "--log-level", "--log-json", "--config",
        "--event-loop", "--end-on-stop", "--no-end-on-stop",
    ):  # fmt: skip
        assert option in result.output


def test_end_on_stop_flag_is_kept_when_given_either_way() -> None:
    assert _overrides(end_on_stop=None) == {}
    assert _overrides(end_on_stop=True) == {"end_on_stop": True}
    assert _overrides(end_on_stop=False) == {"end_on_stop": False}


def test_asterisk_ami_flag_is_the_asterisk_table_s_ami() -> None:
    assert _overrides(asterisk_ami="127.0.0.1:5038") == {"asterisk": {"ami": "127.0.0.1:5038"}}
    assert _overrides(asterisk_ami=None) == {}


def test_reload_applies_what_it_can_and_names_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    config = load(None, {"focus": ["sip:f1@127.0.0.1:5090"]})
    allocator = build_allocator(config)
    files = iter(
        [
            {"focus": ["sip:f2@127.0.0.1:5090"], "limits": {"rate_limit": 9}},
            {"focus": [], "limits": {"rate_limit": 9}},  # to the built-in focus: a restart
        ]
    )
    running = Running(config, allocator, None, [], lambda: load(None, next(files)))
    with caplog.at_level("INFO", logger="vidim.daemon"):
        reload_config(running)
        assert allocator.config.focus_uris == ("sip:f2@127.0.0.1:5090",)
        assert allocator.config.rate_limit == 9
        assert caplog.messages[-1] == "config reloaded: changed focus, limits.rate_limit"
        reload_config(running)
    assert caplog.messages[-2:] == [
        "config reload: needs a restart, not applied: focus",
        "config reloaded: nothing changed",
    ]
    assert running.config.focus == ("sip:f2@127.0.0.1:5090",)


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def request(method: str, port: int, local: int, extra: list[tuple[str, str]], body: bytes) -> bytes:
    return Request(
        method,
        "sip:vidim@localhost" if method == "MESSAGE" else f"sip:127.0.0.1:{port}",
        [
            ("Via", f"SIP/2.0/UDP 127.0.0.1:{local};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:alice@localhost>;tag={new_tag()}"),
            ("To", "<sip:vidim@localhost>"),
            ("Call-ID", new_tag()),
            ("CSeq", f"1 {method}"),
            *extra,
        ],
        body,
    ).to_bytes()


HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


@pytest.fixture(
    params=[
        "asyncio",
        pytest.param(
            "uvloop", marks=pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed")
        ),
    ]
)
def daemon(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """The daemon, on each event loop (``--event-loop``)."""
    port, focus_port = free_port(), free_port()
    log = (tmp_path / "daemon.log").open("w")
    listen = ["--listen", f"127.0.0.1:{port}", "--focus-listen", f"127.0.0.1:{focus_port}"]
    loop = ["--event-loop", request.param, "--state-dir", str(tmp_path / "state")]
    process = subprocess.Popen(
        [sys.executable, "-m", "vidim_daemon", "run", *listen, *loop, "--log-json"],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield process, port
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


def ask(port: int, wire_of: object, *, deadline: float) -> Response:
    """Send until the daemon answers (it may still be binding), then return the answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        local = sock.getsockname()[1]
        wire = wire_of(local)  # type: ignore[operator]
        sock.settimeout(0.2)
        while time.monotonic() < deadline:
            sock.sendto(wire, ("127.0.0.1", port))
            try:
                while True:
                    data, _ = sock.recvfrom(65535)
                    answer = parse_message(data)
                    if isinstance(answer, Response) and answer.status >= 200:
                        return answer
            except TimeoutError:
                continue
    raise AssertionError("the daemon did not answer in time")


def test_daemon_serves_and_stops_cleanly(
    daemon: tuple[subprocess.Popen[str], int], tmp_path: Path
) -> None:
    process, port = daemon
    deadline = time.monotonic() + 20
    options = ask(port, lambda local: request("OPTIONS", port, local, [], b""), deadline=deadline)
    assert options.status == 200
    refused = ask(
        port,
        lambda local: request(
            "MESSAGE", port, local, [("Content-Type", "text/plain")], b"/hologram bob"
        ),
        deadline=deadline,
    )
    assert refused.status == 400
    assert (
        refused.headers.get("Warning")
        == '399 localhost "unknown command \\"/hologram\\"; send /help"'
    )
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
    # The start-up line says which event loop runs (and every line was written at exit).
    args = list(process.args)  # type: ignore[arg-type]
    wanted = args[args.index("--event-loop") + 1]
    records = [json.loads(line) for line in (tmp_path / "daemon.log").read_text().splitlines()]
    (start,) = [r for r in records if "event_loop" in r]
    assert start["event_loop"].split()[0] == wanted
    assert f"event loop {wanted}" in start["message"]
    assert records[-1]["message"] == "stopped"
    assert any(r["message"].startswith("recv OPTIONS") for r in records)
