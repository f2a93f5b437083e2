"""Throwaway certificates for the TLS tests, made with the ``openssl`` command line.

:func:`make_ca` makes a CA; :meth:`Ca.issue` a leaf certificate signed by it
for the names and addresses given (subjectAltName: ``DNS:`` and ``IP:``).
Everything lives in the test's ``tmp_path``; keys are EC P-256 (fast).
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = shutil.which("openssl")


def _openssl(*args: str | Path) -> None:
    # Installed by scripts/setup (scripts/test-packages.txt): missing is a failure, not a skip.
    assert OPENSSL is not None, "openssl is not installed (scripts/test-packages.txt lists it)"
    subprocess.run([OPENSSL, *map(str, args)], check=True, capture_output=True, timeout=30)


@dataclass(frozen=True)
class Leaf:
    """A certificate (PEM) and its key (PEM)."""

    certificate: Path
    key: Path


@dataclass(frozen=True)
class Ca:
    """A self-signed CA: ``certificate`` is what peers trust (a ``ca_file``)."""

    directory: Path
    name: str
    certificate: Path
    key: Path

    def issue(self, name: str, *, dns: tuple[str, ...] = (), ips: tuple[str, ...] = ()) -> Leaf:
        """A server (and client) certificate for ``dns`` names and ``ips`` addresses."""
        key = self.directory / f"{name}.key"
        request = self.directory / f"{name}.csr"
        certificate = self.directory / f"{name}.pem"
        extensions = self.directory / f"{name}.ext"
        names = [f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips]
        extensions.write_text(
            f"subjectAltName={','.join(names)}\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
        )
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
        _openssl("req", "-new", "-key", key, "-subj", f"/CN={name}", "-out", request)
        _openssl(
            "x509", "-req", "-in", request, "-CA", self.certificate, "-CAkey", self.key,
            "-CAcreateserial", "-days", "2", "-sha256", "-extfile", extensions,
            "-out", certificate,
        )  # fmt: skip
        return Leaf(certificate, key)


def make_ca(directory: Path, name: str = "test-ca") -> Ca:
    """A new CA in ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / f"{name}.key"
    certificate = directory / f"{name}.pem"
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    _openssl(
        "req", "-x509", "-new", "-key", key, "-subj", f"/CN={name}", "-days", "2", "-sha256",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-out", certificate,
    )  # fmt: skip
    return Ca(directory, name, certificate, key)


def server_context(leaf: Leaf) -> ssl.SSLContext:
    """A TLS listener's context for a test peer (no client certificate asked)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(leaf.certificate, leaf.key)
    return context


def client_context(ca: Ca) -> ssl.SSLContext:
    """A test peer's client context: trusts ``ca`` only, checks the host name."""
    return ssl.create_default_context(cafile=str(ca.certificate))
