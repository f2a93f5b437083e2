"""SIP over TLS (RFC 3261 section 26.2.1): the settings and the ``ssl`` contexts they make.

:class:`~vidim.aio.SipServer` listens with :func:`server_context` and
connects with :func:`client_context`.  Connecting verifies the peer by
default: its certificate must chain to ``ca_file`` (or, without one, to the
system's store) and name the host of the URI the request goes to (a host
name, or an IP address in a subjectAltName).  A peer that fails that is a
send failure like a refused connection; nothing falls back to plain text.

What is left out, on purpose: client certificates are not asked of the
peers that connect to vidim (a SIP proxy in front authenticates them, or
digest does, see docs/security.md), and SRTP is not here (the media path).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_TLS_PORT", "TlsSettings", "client_context", "server_context"]

#: RFC 3261 section 19.1.2: the default port of SIP over TLS.
DEFAULT_TLS_PORT: Final = 5061


@dataclass(frozen=True, kw_only=True, slots=True)
class TlsSettings:
    """How :class:`~vidim.aio.SipServer` speaks TLS: its listener and its connections."""

    #: The listener's port on the server's host (0: a free one, see ``SipServer.tls_port``).
    port: int = DEFAULT_TLS_PORT
    #: The server certificate (PEM, the chain after it), shown to peers; also
    #: offered as a client certificate when a peer asks for one.
    certificate: str
    #: Its private key (PEM).
    key: str
    #: The CA certificates (PEM) peers are verified against; None: the system's store.
    ca_file: str | None = None
    #: Verify the certificate and host name of every peer vidim connects to.
    #: False is for tests and closed labs only: anyone on the path can then
    #: read and change the messages.
    verify_peer: bool = True


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """The context of the TLS listener: vidim's certificate, TLS 1.2 at least.

    Raises:
        OSError: the certificate or key cannot be read.
        ssl.SSLError: they are not PEM, or do not match.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.certificate, settings.key)
    return context


def client_context(settings: TlsSettings) -> ssl.SSLContext:
    """The context of the connections vidim opens: peers verified unless told otherwise.

    Raises:
        OSError: a file cannot be read.
        ssl.SSLError: a file is not PEM, or the key does not match.
    """
    if settings.verify_peer:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.ca_file)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.certificate, settings.key)
    return context
