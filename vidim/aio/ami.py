"""Asterisk's Manager Interface on asyncio: the ``asterisk`` profile's control channel.

:class:`AsteriskAmi` keeps one TCP connection to AMI for an allocator behind
a :class:`SipServer`, and lets :class:`vidim.ami.AsteriskControl` (sans-IO)
decide everything: the allocator's events become ``DBPut``,
``ConfbridgeKick`` and ``DBDelTree`` actions; ``ConfbridgeJoin`` and
``ConfbridgeLeave`` become :meth:`Allocator.report_presence` calls::

    allocator = Allocator(AllocatorConfig(profile=FocusProfile.ASTERISK,
                                          presence_reported=True, ...))
    ami = AsteriskAmi(allocator, "127.0.0.1", 5038, "vidim", secret)
    server = SipServer(allocator, ..., on_event=ami.on_event)
    ami.attach(server)
    await server.start(); await ami.start()
    ...
    await ami.close()

A lost connection is made again every ``retry`` seconds; actions asked while
it is down wait for the login (and are lost if the daemon stops first: the
anchor's BYE still ends the bridge, the dialplan still deletes the keys).
Joins and leaves while it is down are not seen: the requester misses those
IMs, and the idle end was already disarmed by the first join, or never armed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

from ..allocator import Allocator
from ..allocator.events import AllocatorEvent
from ..ami import AmiProtocolError, AmiTrouble, AsteriskControl, LoggedIn, Presence
from .server import SipServer

__all__ = ["AsteriskAmi"]

_log = logging.getLogger("vidim.ami")


class AsteriskAmi:
    """One allocator's AMI connection to Asterisk, kept up until :meth:`close`."""

    def __init__(
        self,
        allocator: Allocator,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        retry: float = 2.0,
        logger: logging.Logger | None = None,
    ) -> None:
        self._allocator = allocator
        self.host, self.port = host, port
        self._retry = retry
        self._log = logger if logger is not None else _log
        self.control = AsteriskControl(username, secret)
        self._server: SipServer[Any] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        #: Set while logged in (tests and the health check wait on it).
        self.ready = asyncio.Event()

    def attach(self, server: SipServer[Any]) -> None:
        """The server that runs the allocator: it sends what a reported presence queued."""
        self._server = server

    def on_event(self, event: AllocatorEvent) -> None:
        """The allocator's events (chain it into the server's ``on_event``)."""
        conference_id = getattr(event, "conference_id", None)
        conference = self._allocator.conferences.get(conference_id) if conference_id else None
        self.control.on_allocator_event(event, conference)
        self._flush()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._keep_connected(), name="vidim-ami")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _keep_connected(self) -> None:
        while True:
            try:
                await self._session()
            except (OSError, AmiProtocolError) as error:
                self._log.warning("AMI %s:%d: %s", self.host, self.port, error)
            self.ready.clear()
            self._writer = None
            self.control.connection_lost()
            await asyncio.sleep(self._retry)

    async def _session(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.control.connection_made()
        self._writer = writer
        try:
            while data := await reader.read(65536):
                self._log.debug("AMI recv %s", data.decode("utf-8", "replace"))
                for result in self.control.receive_data(data):
                    self._act(result)
                self._flush()
            raise OSError("Asterisk closed the connection")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _act(self, result: Presence | LoggedIn | AmiTrouble) -> None:
        if isinstance(result, LoggedIn):
            self._log.info("AMI %s:%d: logged in (%s)", self.host, self.port, result.version)
            self.ready.set()
        elif isinstance(result, AmiTrouble):
            level = logging.ERROR if result.fatal else logging.WARNING
            self._log.log(level, "AMI %s refused: %s", result.action, result.message)
        else:
            known = self._allocator.report_presence(
                result.conference_id,
                result.credential,
                present=result.present,
                now=self._now(),
            )
            if not known:
                # A leave after the conference ended, or another daemon's conference.
                self._log.debug("AMI: a caller of %s not known here", result.conference_id)
            if self._server is not None:
                self._server.transmit()

    def _now(self) -> float:
        return self._server.now() if self._server is not None else asyncio.get_running_loop().time()

    def _flush(self) -> None:
        data = self.control.data_to_send() if self._writer is not None else b""
        if data and self._writer is not None:
            self._log.debug("AMI send %s", _without_secret(data.decode("utf-8", "replace")))
            self._writer.write(data)


def _without_secret(text: str) -> str:
    """An action as logged: a Login's secret is never written to a log."""
    return re.sub(r"(?im)^(Secret: )[^\r\n]*", r"\1***", text)
