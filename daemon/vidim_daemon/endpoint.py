"""The daemon's HTTP endpoint on ``--metrics-listen``: Prometheus metrics and health checks.

Three paths, GET (or HEAD) only, one request per connection:

* ``/metrics``: every metric of :class:`vidim.metrics.Metrics` (docs/metrics.md);
* ``/healthz``: 200 while the process runs its event loop (a liveness probe);
* ``/readyz``: 200 when it should get traffic: every SIP server listening and
  not shutting down, the state store reachable, not overloaded; else 503 with
  one line per reason (a readiness probe, or a load balancer's health check).

Served on the daemon's own event loop (``asyncio.start_server``), not in
``prometheus_client``'s thread: the metrics read the cores' live state, which
only the loop's thread may touch.  Deliberately tiny: no keep-alive, no
chunking, a request head of at most 8 KB read within 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, Final

from vidim.aio import SipServer
from vidim.metrics import CONTENT_TYPE, Metrics

__all__ = ["HealthEndpoint"]

#: The longest request head read, and how long a client has to send it.
MAX_HEAD: Final = 8192
READ_TIMEOUT: Final = 5.0


class HealthEndpoint:
    """``/metrics``, ``/healthz`` and ``/readyz`` over HTTP/1.1 on ``host:port``."""

    def __init__(
        self,
        metrics: Metrics,
        servers: Sequence[SipServer[Any]],
        *,
        host: str,
        port: int,
        logger: logging.Logger | None = None,
    ) -> None:
        self.metrics = metrics
        self.servers = servers
        self.host = host
        #: The bound port once :meth:`start` returned (port 0: the one the OS chose).
        self.port = port
        self.logger = logger if logger is not None else logging.getLogger("vidim.daemon")
        self._server: asyncio.Server | None = None

    def not_ready(self) -> list[str]:
        """Why new traffic should go elsewhere now; empty when ready."""
        problems = [
            f"SIP {server.host}:{server.port} not listening"
            for server in self.servers
            if not server.started or server.closing
        ]
        return problems + self.metrics.not_ready()

    async def start(self) -> None:
        """Listen (OSError when the address cannot be bound)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=MAX_HEAD)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.logger.info("metrics and health checks on http://%s/metrics", self._shown())

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _shown(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            method, path = _request_line(head)
            status, content_type, body = self._answer(method, path)
            writer.write(_response(status, content_type, b"" if method == "HEAD" else body))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client that sent no complete head in time, or too much: hang up
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _answer(self, method: str, path: str) -> tuple[HTTPStatus, str, bytes]:
        if method not in ("GET", "HEAD"):
            return HTTPStatus.METHOD_NOT_ALLOWED, "text/plain", b"GET or HEAD only\n"
        if path == "/metrics":
            return HTTPStatus.OK, CONTENT_TYPE, self.metrics.exposition()
        if path == "/healthz":
            return HTTPStatus.OK, "text/plain", b"alive\n"
        if path == "/readyz":
            problems = self.not_ready()
            if problems:
                text = "".join(f"{problem}\n" for problem in problems)
                return HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", text.encode()
            return HTTPStatus.OK, "text/plain", b"ready\n"
        return HTTPStatus.NOT_FOUND, "text/plain", b"/metrics, /healthz or /readyz\n"


def _request_line(head: bytes) -> tuple[str, str]:
    """Method and path (query left out) of a request head; ("", "") when malformed."""
    parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return "", ""
    return parts[0], parts[1].split("?", 1)[0]


def _response(status: HTTPStatus, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body
