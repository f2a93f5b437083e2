"""scripts/setup: ./scripts/run installs what running needs, ./scripts/test the test peers too.

The script runs for real in a copy of scripts/ whose apt-get, dpkg-query, id and
python are stand-ins on PATH that record what they were asked: what would be
installed on a fresh machine, and that a second run installs nothing.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: What running the daemon needs from Debian: an interpreter, venv, TLS roots.
RUN_PACKAGES = {"python3", "python3-venv", "ca-certificates"}
#: The test peers and benchmark tools that ./scripts/run must not install.
TEST_PEERS = {"kamailio", "sip-tester", "baresip-core", "redis-server", "tcpdump", "valgrind"}


def packages(name: str) -> list[str]:
    """The package names of a scripts/ list, as scripts/setup reads it."""
    names = []
    for line in (ROOT / "scripts" / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    return names


def test_running_needs_only_python_and_ca_certificates() -> None:
    assert set(packages("system-packages.txt")) == RUN_PACKAGES


def test_the_test_peers_are_listed_for_the_tests_only() -> None:
    test_list = set(packages("test-packages.txt"))
    assert test_list >= TEST_PEERS
    assert not test_list & RUN_PACKAGES


def test_the_daemon_dependencies_have_no_test_tool() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    required = config["options"]["install_requires"]
    test_extra = config["options.extras_require"]["test"]
    fast_extra = config["options.extras_require"]["fast"]  # what scripts/setup run adds
    for tool in ("pytest", "hypothesis", "mypy", "ruff", "pjsua2"):
        assert tool not in required
        assert tool not in fast_extra
        assert tool in test_extra


def test_run_and_test_call_setup_in_their_mode() -> None:
    assert "\nscripts/setup run\n" in (ROOT / "scripts" / "run").read_text()
    assert "\nscripts/setup test\n" in (ROOT / "scripts" / "test").read_text()


STAND_INS = {
    # Knows the packages listed in $FAKE/installed.
    "dpkg-query": """
        for pkg in "${@:3}"; do
            grep -qx "$pkg" "$FAKE/installed" && echo "$pkg install ok installed"
        done
        exit 0
    """,
    "apt-get": """
        echo "apt-get $*" >>"$FAKE/log"
        if [[ "$1" == install ]]; then
            for arg in "${@:2}"; do [[ "$arg" == -* ]] || echo "$arg" >>"$FAKE/installed"; done
        fi
    """,
    "id": "echo 0",
    # A Python >= 3.11 whose venv is a copy of itself and whose pip only logs.
    "python": """
        case "$1" in
        -c) exit 0 ;;
        -V) echo "Python 3.11.7" ;;
        -m)
            case "$2" in
            venv) mkdir -p "$3/bin" && cp "$0" "$3/bin/python" ;;
            pip) echo "pip ${*:3}" >>"$FAKE/log" ;;
            *) exit 1 ;;
            esac
            ;;
        *) exit 1 ;;
        esac
    """,
}


class Machine:
    """A copy of the project's scripts/ on a machine of stand-ins."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "vidim"
        shutil.copytree(ROOT / "scripts", self.root / "scripts")
        for name in ("setup.cfg", "pyproject.toml"):
            shutil.copy(ROOT / name, self.root / name)
        self.fake = tmp_path / "fake"
        bin_dir = self.fake / "bin"
        bin_dir.mkdir(parents=True)
        for name, body in STAND_INS.items():
            path = bin_dir / name
            path.write_text("#!/usr/bin/env bash\n" + textwrap.dedent(body))
            path.chmod(0o755)
        (self.fake / "installed").write_text("")
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "FAKE": str(self.fake),
            "PYTHON": str(bin_dir / "python"),
        }

    def setup(self, *args: str) -> list[str]:
        """Run scripts/setup; what it asked apt-get and pip to do."""
        log = self.fake / "log"
        log.write_text("")
        subprocess.run(
            ["bash", str(self.root / "scripts" / "setup"), *args],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        return log.read_text().splitlines()


def installed(calls: list[str]) -> set[str]:
    return {
        word
        for call in calls
        if call.startswith("apt-get") and " install " in call
        for word in call.split()[2:]
        if not word.startswith("-")
    }


def test_setup_run_installs_what_running_needs_and_then_nothing(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    calls = machine.setup("run")
    assert installed(calls) == RUN_PACKAGES
    assert calls[-1] == "pip install -q -e .[fast]"
    assert machine.setup("run") == []


def test_setup_test_adds_the_test_peers_and_tools(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    machine.setup("run")
    calls = machine.setup("test")
    assert installed(calls) == set(packages("test-packages.txt"))
    assert calls[-1] == "pip install -q -e .[test]"
    assert machine.setup("test") == []
    assert machine.setup("run") == []  # [test] covers what running needs
    assert machine.setup() == []  # test is the default


def test_new_metadata_reinstalls_the_python_packages_only(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    machine.setup("run")
    stamp = machine.root / ".venv" / ".vidim-stamp-run"
    os.utime(stamp, (stamp.stat().st_mtime - 10, stamp.stat().st_mtime - 10))
    assert machine.setup("run") == ["pip install -q -e .[fast]"]


def test_an_unknown_mode_is_refused(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    with pytest.raises(subprocess.CalledProcessError) as failure:
        machine.setup("bench")
    assert b"usage: scripts/setup [run|test]" in failure.value.stderr
