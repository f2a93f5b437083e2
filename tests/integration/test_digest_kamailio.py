"""vidim answers a real Kamailio's Digest challenges (issue 18): MD5 and SHA-256, and a wrong password.

Kamailio 5.6 runs tests/integration/kamailio-digest.cfg: it challenges (407) what
vidim sends to bob, checking the password given in its config with the auth module
(``pv_proxy_authenticate``, no database), and relays MESSAGEs.  vidim-daemon runs
the worktree's code with its built-in focus and ``[auth]`` credentials.  alice and
bob are UDP sockets: alice asks vidim for a conference with bob; bob must get his
invitation through Kamailio.  Every process is in its own process group and stopped
in a finalizer; every wait is bounded.
"""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sip_peers import (
    HOST,
    Kamailio,
    VidimProcess,
    free_port,
    kamailio_module_dir,
    new_branch,
    require_binary,
    stop_process_group,
    wait_kamailio_ready,
)

from vidim.sip import Request, Response, make_response, parse_message

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

DOMAIN = "vidim.test"
CONFIG = Path(__file__).with_name("kamailio-digest.cfg")
WAIT = 10.0


class Phone:
    """A UDP endpoint that sends one MESSAGE and answers every MESSAGE it gets with 200."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, free_port()))
        self.port: int = self.sock.getsockname()[1]
        self.received: list[Request] = []

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@{HOST}:{self.port}"

    def close(self) -> None:
        self.sock.close()

    def send_message(self, uri: str, text: str, dest: tuple[str, int]) -> None:
        request = Request(
            "MESSAGE",
            uri,
            [
                ("Via", f"SIP/2.0/UDP {HOST}:{self.port};branch={new_branch()};rport"),
                ("Max-Forwards", "70"),
                ("From", f"<sip:{self.user}@{DOMAIN}>;tag={uuid.uuid4().hex[:8]}"),
                ("To", f"<{uri}>"),
                ("Call-ID", f"{uuid.uuid4().hex}@{HOST}"),
                ("CSeq", "1 MESSAGE"),
                ("Content-Type", "text/plain"),
            ],
            text.encode(),
        )
        self.sock.sendto(request.to_bytes(), dest)

    def wait_for(self, words: str, timeout: float = WAIT) -> Request:
        """The first MESSAGE (answered 200) whose text holds ``words``; others are answered too."""
        deadline = time.monotonic() + timeout
        while True:
            for request in self.received:
                if words in request.body.decode(errors="replace"):
                    return request
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                texts = [r.body.decode(errors="replace") for r in self.received]
                raise AssertionError(f"{self.user}: no MESSAGE with {words!r}; got {texts}")
            self.sock.settimeout(remaining)
            try:
                raw, source = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            message = parse_message(raw)
            if isinstance(message, Request) and message.method == "MESSAGE":
                answer = make_response(message, 200, to_tag=uuid.uuid4().hex[:8])
                self.sock.sendto(answer.to_bytes(), source)
                if all(message.call_id != seen.call_id for seen in self.received):
                    self.received.append(message)
            elif isinstance(message, Response):
                assert message.status == 202, message  # alice's request to vidim


@dataclass
class Site:
    alice: Phone
    bob: Phone
    vidim_port: int
    focus_port: int
    workdir: Path
    started: list[Kamailio]
    daemons: list[VidimProcess]

    def kamailio(self, algorithm: str) -> Kamailio:
        """Kamailio on the test config, challenging with ``algorithm``; retried if its port was taken."""
        binary = require_binary("kamailio")
        module_dir = kamailio_module_dir()
        for _attempt in range(3):
            port = free_port()
            rundir = self.workdir / f"kamailio-{port}"
            rundir.mkdir(parents=True)
            log_path = rundir / "kamailio.log"
            defines = [
                f"PROXY_PORT={port}", f"VIDIM_PORT={self.vidim_port}",
                f"ALICE_PORT={self.alice.port}", 'PROTECTED_USER="bob"',
                'AUTH_PASSWORD="secret"', f'AUTH_ALGORITHM="{algorithm}"',
                f'MODULE_DIR="{module_dir}/"',
            ]  # fmt: skip
            argv = [binary, "-f", str(CONFIG), "-DD", "-E", "-Y", str(rundir),
                    "-P", str(rundir / "kamailio.pid"), "-w", str(rundir), "-m", "64", "-M", "8"]  # fmt: skip
            for define in defines:
                argv += ["-A", define]
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            kamailio = Kamailio(proc=proc, port=port, rundir=rundir, log_path=log_path)
            self.started.append(kamailio)
            if wait_kamailio_ready(kamailio):
                return kamailio
            stop_process_group(proc)
            if "Address already in use" not in kamailio.log():
                break
        raise AssertionError("Kamailio did not start:\n" + self.started[-1].log())

    def vidim(self, kamailio: Kamailio, password: str) -> VidimProcess:
        toml = self.workdir / "vidim.toml"
        toml.write_text(
            f'[auth]\nusername = "vidim"\npassword = "{password}"\nrealm = "{DOMAIN}"\n'
        )
        daemon = VidimProcess(
            "vidim",
            ["run", "--config", str(toml), "--listen", f"{HOST}:{self.vidim_port}",
             "--focus-listen", f"{HOST}:{self.focus_port}", "--store", "memory:",
             "--proxy", f"sip:{HOST}:{kamailio.port}", "--domain", DOMAIN],
            self.workdir,
        )  # fmt: skip
        self.daemons.append(daemon)
        daemon.wait_ready(self.vidim_port)
        return daemon

    def ask_for_a_conference(self) -> None:
        """alice asks vidim (directly, from a trusted address) for a video call with bob."""
        self.alice.send_message(
            f"sip:vidim@{DOMAIN}", f"/video {self.bob.uri}", (HOST, self.vidim_port)
        )


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    world = Site(Phone("alice"), Phone("bob"), free_port(), free_port(), tmp_path, [], [])
    try:
        yield world
    finally:
        for daemon in world.daemons:
            code = daemon.stop()
            print(f"--- vidim exited with {code}; log tail:\n{daemon.tail()}")
        for kamailio in world.started:
            code = stop_process_group(kamailio.proc)
            print(f"--- Kamailio exited with {code}; log:\n{kamailio.log()[-8000:]}")
        world.alice.close()
        world.bob.close()


def _kamailio_lines(kamailio: Kamailio, words: str) -> list[str]:
    return [line for line in kamailio.log().splitlines() if words in line]


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_vidim_answers_kamailio_s_challenge_and_the_invitation_arrives(
    site: Site, algorithm: str
) -> None:
    kamailio = site.kamailio(algorithm)
    daemon = site.vidim(kamailio, "secret")
    site.ask_for_a_conference()
    invitation = site.bob.wait_for("invites you")
    # Kamailio took the credentials off before relaying (consume_credentials).
    assert "Proxy-Authorization" not in invitation.headers
    site.alice.wait_for("is ready")
    assert _kamailio_lines(kamailio, f"authenticated vidim: MESSAGE to {site.bob.uri}")
    assert _kamailio_lines(kamailio, f"authenticated vidim: OPTIONS to {site.bob.uri}")
    challenged = _kamailio_lines(kamailio, f"challenging MESSAGE to {site.bob.uri}")
    assert len(challenged) == 1
    assert daemon.messages("AuthenticationFailed(") == []


def _eventually(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Until ``check()`` holds (a log line is written after the message it is about is sent)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)  # polling log files, bounded by the deadline


def test_a_wrong_password_is_a_warning_and_a_failure_im_and_no_loop(site: Site) -> None:
    kamailio = site.kamailio("SHA-256")
    daemon = site.vidim(kamailio, "wrong")
    site.ask_for_a_conference()
    failure = site.alice.wait_for("was not delivered")
    assert "407" in failure.body.decode()

    def warned() -> bool:
        return any(
            record.get("level") == "warning"
            and f"summary='MESSAGE {site.bob.uri}'" in str(record["message"])
            and "reason=\"credentials of 'vidim' refused\"" in str(record["message"])
            for record in daemon.messages("AuthenticationFailed(")
        )

    _eventually(warned, "a WARNING AuthenticationFailed for the MESSAGE to bob")
    # Sent twice (without, then with credentials), then given up: no loop.
    for method in ("OPTIONS", "MESSAGE"):
        lines = _kamailio_lines(kamailio, f"challenging {method} to {site.bob.uri}")
        assert len(lines) == 2, lines
    assert _kamailio_lines(kamailio, "authenticated vidim") == []
    assert site.bob.received == []
