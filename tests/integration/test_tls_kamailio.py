"""vidim over TLS through a real Kamailio's TLS module (issue 18).

Kamailio 5.6 runs tests/integration/kamailio-tls.cfg with ``tls.so`` (Debian's
kamailio-tls-modules): it listens on TLS with a certificate of the test CA and
relays MESSAGEs for bob over TLS to bob's TLS listener.  vidim-daemon (the
worktree's code, built-in focus) has a TLS listener and verifies Kamailio's
certificate against the test CA; alice asks it over UDP for a conference with
``sips:bob@<kamailio>``.  Certificates are made in the test with openssl.
Every process is in its own process group and stopped in a finalizer; every
wait is bounded.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
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

from tls_peer import Ca, Leaf, make_ca
from vidim.sip import Request, Response, StreamFramer, make_response, new_tag, parse_message

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

CONFIG = Path(__file__).with_name("kamailio-tls.cfg")
DOMAIN = "vidim.test"
WAIT = 10.0


def tls_module_dir() -> str:
    """Kamailio's module directory, failing clearly when tls.so is not installed."""
    directory = kamailio_module_dir()
    if not Path(directory, "tls.so").exists():
        pytest.fail(
            "Kamailio's tls.so is missing: scripts/setup test installs kamailio-tls-modules "
            "(scripts/test-packages.txt)",
            pytrace=False,
        )
    return directory


@dataclass
class TlsPhone:
    """Bob: a TLS listener (a thread) answering every request 200 on its connection."""

    leaf: Leaf
    received: list[Request] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.leaf.certificate, self.leaf.key)
        self.context = context
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(0.2)
        self.port: int = self.listener.getsockname()[1]
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                raw, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(WAIT)
        framer = StreamFramer()
        with contextlib.suppress(OSError), self.context.wrap_socket(raw, server_side=True) as tls:
            while not self._stopped and (data := tls.recv(65536)):
                framer.receive_data(data)
                while (message := framer.next_message()) is not None:
                    if isinstance(message, Request):
                        tls.sendall(make_response(message, 200, to_tag=new_tag()).to_bytes())
                        with self.arrived:
                            self.received.append(message)
                            self.arrived.notify_all()

    def wait_for(self, method: str, timeout: float = WAIT) -> Request:
        with self.arrived:
            found = self.arrived.wait_for(
                lambda: next((r for r in self.received if r.method == method), None), timeout
            )
        assert found is not None, f"bob got no {method} over TLS; got {self.received}"
        return found

    def close(self) -> None:
        self._stopped = True
        self.listener.close()
        self._thread.join(timeout=WAIT)


class Alice:
    """A UDP endpoint that asks vidim for a conference and answers its IMs 200."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.port: int = self.sock.getsockname()[1]
        self.texts: list[str] = []

    def ask(self, vidim_port: int, text: str) -> None:
        request = Request(
            "MESSAGE",
            f"sip:vidim@{DOMAIN}",
            [
                ("Via", f"SIP/2.0/UDP {HOST}:{self.port};branch={new_branch()};rport"),
                ("Max-Forwards", "70"),
                ("From", f"<sip:alice@{DOMAIN}>;tag={new_tag()}"),
                ("To", f"<sip:vidim@{DOMAIN}>"),
                ("Call-ID", f"{uuid.uuid4().hex}@{HOST}"),
                ("CSeq", "1 MESSAGE"),
                ("Content-Type", "text/plain"),
            ],
            text.encode(),
        )
        self.sock.sendto(request.to_bytes(), (HOST, vidim_port))

    def wait_for(self, words: str, timeout: float = WAIT) -> str:
        deadline = time.monotonic() + timeout
        while not any(words in text for text in self.texts):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"alice: no IM with {words!r}; got {self.texts}")
            self.sock.settimeout(remaining)
            try:
                raw, source = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            message = parse_message(raw)
            if isinstance(message, Request):
                self.sock.sendto(make_response(message, 200, to_tag=new_tag()).to_bytes(), source)
                self.texts.append(message.body.decode(errors="replace"))
            else:
                assert isinstance(message, Response)
                assert message.status == 202, message
        return next(text for text in self.texts if words in text)

    def close(self) -> None:
        self.sock.close()


def tls_config(rundir: Path, leaf: Leaf, ca: Ca) -> Path:
    """Kamailio's tls.cfg: its certificate as a server; bob verified against the CA as a client."""
    path = rundir / "tls.cfg"
    path.write_text(
        "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n"
        f"require_certificate = no\ncertificate = {leaf.certificate}\n"
        f"private_key = {leaf.key}\nca_list = {ca.certificate}\n\n"
        "[client:default]\nmethod = TLSv1.2+\nverify_certificate = yes\n"
        f"require_certificate = yes\nca_list = {ca.certificate}\n"
    )
    return path


def start_kamailio(
    workdir: Path, ca: Ca, bob_port: int, started: list[Kamailio]
) -> tuple[Kamailio, int]:
    """Kamailio with tls.so on a free UDP and a free TLS port (retried if one was taken)."""
    binary = require_binary("kamailio")
    module_dir = tls_module_dir()
    leaf = ca.issue("kamailio", ips=(HOST,))
    kamailio: Kamailio | None = None
    for _attempt in range(3):
        port, tls_port = free_port(), free_port()
        rundir = workdir / f"kamailio-{port}"
        rundir.mkdir(parents=True)
        defines = [f"UDP_PORT={port}", f"TLS_PORT={tls_port}", f"BOB_PORT={bob_port}",
                   f'TLS_CONFIG="{tls_config(rundir, leaf, ca)}"',
                   f'MODULE_DIR="{module_dir}/"']  # fmt: skip
        argv = [binary, "-f", str(CONFIG), "-DD", "-E", "-Y", str(rundir),
                "-P", str(rundir / "kamailio.pid"), "-w", str(rundir), "-m", "64", "-M", "8"]  # fmt: skip
        for define in defines:
            argv += ["-A", define]
        log_path = rundir / "kamailio.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        kamailio = Kamailio(proc=proc, port=port, rundir=rundir, log_path=log_path)
        started.append(kamailio)
        if wait_kamailio_ready(kamailio):
            return kamailio, tls_port
        stop_process_group(proc)
        if "Address already in use" not in kamailio.log():
            break
    assert kamailio is not None
    raise AssertionError("Kamailio did not start:\n" + kamailio.log())


@dataclass
class Site:
    ca: Ca
    bob: TlsPhone
    alice: Alice
    workdir: Path
    daemons: list[VidimProcess]
    kamailios: list[Kamailio]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    ca = make_ca(tmp_path / "ca")
    bob = TlsPhone(ca.issue("bob", ips=(HOST,)))
    world = Site(ca, bob, Alice(), tmp_path, [], [])
    try:
        yield world
    finally:
        for daemon in world.daemons:
            code = daemon.stop()
            print(f"--- vidim exited with {code}; log tail:\n{daemon.tail()}")
        for kamailio in world.kamailios:
            code = stop_process_group(kamailio.proc)
            print(f"--- Kamailio exited with {code}; log:\n{kamailio.log()[-8000:]}")
        bob.close()
        world.alice.close()


def start_vidim(site: Site, *, ca_file: Path) -> tuple[VidimProcess, int, int]:
    port, focus_port, tls_port = free_port(), free_port(), free_port()
    leaf = site.ca.issue("vidim", ips=(HOST,))
    daemon = VidimProcess(
        "vidim",
        ["run", "--listen", f"{HOST}:{port}", "--focus-listen", f"{HOST}:{focus_port}",
         "--store", "memory:", "--domain", DOMAIN, "--no-probe",
         "--tls-listen", f"{HOST}:{tls_port}", "--tls-certificate", str(leaf.certificate),
         "--tls-key", str(leaf.key), "--tls-ca-file", str(ca_file)],
        site.workdir,
    )  # fmt: skip
    site.daemons.append(daemon)
    daemon.wait_ready(port)
    return daemon, port, tls_port


def test_vidim_invites_over_tls_through_kamailio_s_tls_module(site: Site) -> None:
    kamailio, kamailio_tls = start_kamailio(site.workdir, site.ca, site.bob.port, site.kamailios)
    daemon, port, tls_port = start_vidim(site, ca_file=site.ca.certificate)
    site.alice.ask(port, f"/video sips:bob@{HOST}:{kamailio_tls}")
    invitation = site.bob.wait_for("MESSAGE")
    assert "invites you" in invitation.body.decode()
    vias = invitation.via
    assert vias[0].transport == "TLS"  # Kamailio's, to bob
    assert (vias[1].transport, vias[1].port) == ("TLS", tls_port)  # vidim's, to Kamailio
    site.alice.wait_for("is ready")
    relayed = [line for line in kamailio.log().splitlines() if "relaying MESSAGE" in line]
    assert any(" over tls to sips:bob@" in line for line in relayed), relayed
    # Bob's 200 came back through Kamailio over the TLS connection vidim opened.
    deadline = time.monotonic() + WAIT
    while not (answers := answered(daemon, invitation.call_id)):
        assert time.monotonic() < deadline, f"no 200 for the invitation\n{daemon.tail()}"
        time.sleep(0.05)  # polling its log file, bounded by the deadline
    assert [r.get("transport") for r in answers] == ["TLS"], answers


def answered(daemon: VidimProcess, call_id: str) -> list[dict[str, object]]:
    """vidim's log records of the 200s received for ``call_id``."""
    return [r for r in daemon.messages("recv 200 OK") if r.get("call_id") == call_id]


def test_kamailio_with_an_untrusted_certificate_is_a_failure_im_never_plain_text(
    site: Site,
) -> None:
    kamailio, kamailio_tls = start_kamailio(site.workdir, site.ca, site.bob.port, site.kamailios)
    other = make_ca(site.workdir / "other-ca")
    daemon, port, _ = start_vidim(site, ca_file=other.certificate)
    site.alice.ask(port, f"/video sips:bob@{HOST}:{kamailio_tls}")
    failure = site.alice.wait_for("was not delivered")
    assert f"sips:bob@{HOST}:{kamailio_tls}" in failure
    assert site.bob.received == []
    assert not [line for line in kamailio.log().splitlines() if "relaying MESSAGE" in line]
    warned = [
        record
        for record in daemon.records()
        if record.get("level") == "warning" and "TLS peer not verified" in str(record["message"])
    ]
    assert warned, daemon.tail()
