"""The daemon's ``[tls]`` table and ``--tls-*`` options, and a real daemon answering over TLS."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from daemon_peers import HOST, DaemonProcess, free_port
from vidim_daemon.cli import _overrides, allocator_config, main
from vidim_daemon.config import ConfigError, load

from tls_peer import Ca, client_context, make_ca
from vidim.aio import TlsSettings
from vidim.sip import Response, StreamFramer, new_branch, new_tag


@pytest.fixture
def ca(tmp_path: Path) -> Ca:
    return make_ca(tmp_path / "ca")


def tls_toml(ca: Ca, listen: str = "127.0.0.1:5071", **extra: str) -> str:
    leaf = ca.issue("vidim", ips=("127.0.0.1",))
    lines = [
        "[tls]",
        f'listen = "{listen}"',
        f'certificate = "{leaf.certificate}"',
        f'key = "{leaf.key}"',
        f'ca_file = "{ca.certificate}"',
        *(f"{key} = {value}" for key, value in extra.items()),
    ]
    return "\n".join(lines) + "\n"


def test_tls_is_off_by_default_and_sips_stays_refused() -> None:
    config = load()
    assert config.tls is None
    assert allocator_config(config).tls_port is None


def test_the_tls_table_makes_the_server_settings_with_peers_verified(
    ca: Ca, tmp_path: Path
) -> None:
    path = tmp_path / "vidim.toml"
    path.write_text(tls_toml(ca))
    config = load(path)
    assert isinstance(config.tls, TlsSettings)
    assert config.tls.port == 5071
    assert config.tls.verify_peer
    assert config.tls.ca_file == str(ca.certificate)
    assert allocator_config(config).tls_port == 5071
    # sip:vidim@127.0.0.1:5071 is the service too (as sip:vidim@127.0.0.1:5070 is).
    assert ("127.0.0.1", 5071) in allocator_config(config).requests.local_addresses
    path.write_text(tls_toml(ca, verify_peer="false"))
    assert load(path).tls == TlsSettings(
        port=5071,
        certificate=config.tls.certificate,
        key=config.tls.key,
        ca_file=str(ca.certificate),
        verify_peer=False,
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"listen": "127.0.0.2:5071"}, "tls.listen: must be on listen's host 127.0.0.1"),
        ({"listen": "127.0.0.1:5070"}, "tls.listen: must differ from listen's port"),
        ({"certificate": ""}, "tls.certificate: needed with tls.listen"),
        ({"key": "/nonexistent/vidim.key"}, "tls.key: cannot read /nonexistent/vidim.key"),
        ({"ca_file": "NOT-PEM"}, "tls: the certificate, key or CA file is not usable"),
    ],
)
def test_tls_problems_are_named(
    ca: Ca, tmp_path: Path, change: dict[str, str], problem: str
) -> None:
    leaf = ca.issue("vidim", ips=("127.0.0.1",))
    values = {
        "tls.listen": "127.0.0.1:5071",
        "tls.certificate": str(leaf.certificate),
        "tls.key": str(leaf.key),
        "tls.ca_file": str(ca.certificate),
    }
    for key, value in change.items():
        if value == "NOT-PEM":
            (tmp_path / "bad.pem").write_text("not a certificate\n")
            value = str(tmp_path / "bad.pem")
        values[f"tls.{key}"] = value
    with pytest.raises(ConfigError) as raised:
        load(None, values)
    assert any(p.startswith(problem) for p in raised.value.problems), raised.value.problems


def test_the_tls_options_are_the_tls_table() -> None:
    assert _overrides(
        tls_listen="127.0.0.1:5071",
        tls_certificate="c.pem",
        tls_key="k.pem",
        tls_ca_file=None,
        no_tls_verify=True,
    ) == {
        "tls.listen": "127.0.0.1:5071",
        "tls.certificate": "c.pem",
        "tls.key": "k.pem",
        "tls.verify_peer": False,
    }
    result = CliRunner().invoke(main, ["run", "--help"])
    for option in ("--tls-listen", "--tls-certificate", "--tls-key", "--tls-ca-file"):
        assert option in result.output
    assert "--no-tls-verify" in result.output


def options_over_tls(port: int, ca: Ca) -> Response:
    """An OPTIONS over a TLS connection that verifies the daemon's certificate."""
    with (
        socket.create_connection((HOST, port), timeout=10) as raw,
        client_context(ca).wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        local = tls.getsockname()[1]
        lines = [
            f"OPTIONS sip:vidim@{HOST}:{port};transport=tls SIP/2.0",
            f"Via: SIP/2.0/TLS {HOST}:{local};branch={new_branch()};rport",
            "Max-Forwards: 70",
            f"From: <sip:alice@{HOST}>;tag={new_tag()}",
            f"To: <sip:vidim@{HOST}>",
            f"Call-ID: tls-{new_tag()}",
            "CSeq: 1 OPTIONS",
            "Content-Length: 0",
            "",
            "",
        ]
        tls.sendall("\r\n".join(lines).encode())
        framer = StreamFramer()
        while (message := framer.next_message()) is None:
            data = tls.recv(65536)
            assert data, "the daemon closed the TLS connection"
            framer.receive_data(data)
    assert isinstance(message, Response)
    return message


def test_the_daemon_listens_on_tls_with_its_certificate(ca: Ca, tmp_path: Path) -> None:
    tls_port = free_port()
    leaf = ca.issue("vidim", ips=(HOST,))
    daemon = DaemonProcess(
        tmp_path,
        ["--store", "memory:", "--tls-listen", f"{HOST}:{tls_port}",
         "--tls-certificate", str(leaf.certificate), "--tls-key", str(leaf.key),
         "--tls-ca-file", str(ca.certificate)],
    )  # fmt: skip
    try:
        daemon.wait_log(f"listening on {HOST}:{tls_port} (TLS)")
        answer = options_over_tls(tls_port, ca)
        assert answer.status == 200
        assert answer.top_via.transport == "TLS"
    finally:
        assert daemon.stop() == 0, daemon.dump()
