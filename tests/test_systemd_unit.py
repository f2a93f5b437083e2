"""examples/systemd/vidim.service: hardened, and in step with the daemon's options.

The unit is read as systemd reads it (a key may repeat), checked for the settings
docs/operations.md promises, and verified by systemd-analyze itself when it is
installed (scripts/test-packages.txt lists systemd).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from vidim_daemon.cli import run
from vidim_daemon.config import SETTINGS

UNIT = Path(__file__).resolve().parent.parent / "examples" / "systemd" / "vidim.service"


def read_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values in order (systemd's syntax: no continuation lines used)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"a setting outside any section: {line}"
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return read_unit(UNIT.read_text())["Service"]


def one(service: dict[str, list[str]], key: str) -> str:
    assert key in service, f"{key}= is not set"
    (value,) = service[key]
    return value


def seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "min": 60.0}
    for suffix, factor in units.items():
        if value.endswith(suffix) and value[: -len(suffix)].isdigit():
            return int(value[: -len(suffix)]) * factor
    return float(value)


def test_runs_as_a_dynamic_user_with_its_state_directory(service: dict[str, list[str]]) -> None:
    assert one(service, "DynamicUser") == "yes"
    assert one(service, "StateDirectory") == "vidim"
    argv = shlex.split(one(service, "ExecStart"))
    assert argv[1] == "run"
    # The SQLite store in the directory systemd keeps for the service.
    assert argv[argv.index("--state-dir") + 1] == "/var/lib/vidim"


def test_exec_start_uses_only_options_the_daemon_has(service: dict[str, list[str]]) -> None:
    known = {name for param in run.params if isinstance(param, click.Option) for name in param.opts}
    options = [word for word in shlex.split(one(service, "ExecStart")) if word.startswith("--")]
    assert options
    assert set(options) <= known


def test_is_hardened(service: dict[str, list[str]]) -> None:
    assert one(service, "ProtectSystem") == "strict"
    assert one(service, "NoNewPrivileges") == "yes"
    assert one(service, "ProtectHome") == "yes"
    assert one(service, "CapabilityBoundingSet") == ""
    families = one(service, "RestrictAddressFamilies").split()
    assert {"AF_INET", "AF_INET6"} <= set(families)
    assert "AF_PACKET" not in families
    assert "AF_NETLINK" not in families


def test_restarts_reloads_and_stops_as_the_daemon_expects(
    service: dict[str, list[str]],
) -> None:
    assert one(service, "Restart") == "always"
    assert shlex.split(one(service, "ExecReload"))[1:] == ["-HUP", "$MAINPID"]
    assert one(service, "KillSignal") == "SIGTERM"
    # systemd must not SIGKILL the daemon while it still drains (stop_timeout).
    assert seconds(one(service, "TimeoutStopSec")) > 2 * SETTINGS["stop_timeout"].default


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not installed")
def test_systemd_analyze_verifies_it_without_a_warning(tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: point it at this venv's.
    daemon = Path(sys.executable).parent / "vidim-daemon"
    program = daemon if daemon.exists() else Path(sys.executable)
    unit = tmp_path / "vidim.service"
    unit.write_text(UNIT.read_text().replace("/opt/vidim/.venv/bin/vidim-daemon", str(program)))
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stdout + verify.stderr == ""  # an unknown key is only a warning
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Overall exposure level for vidim.service:" in security.stdout, security.stderr
    exposure = float(security.stdout.split("exposure level for vidim.service:")[1].split()[0])
    assert exposure <= 2.0  # "OK" is below 2.0 on systemd's scale of 0 to 10
