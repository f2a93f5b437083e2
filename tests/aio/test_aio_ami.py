"""vidim.aio.ami against a fake Asterisk Manager Interface on loopback.

The fake speaks recorded AMI (greeting, login answer, a ConfbridgeJoin) and
closes the connection when told: the client logs in again and sends what
was asked meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest

from vidim.aio.ami import AsteriskAmi
from vidim.allocator.events import ConferenceEnded

GREETING = b"Asterisk Call Manager/9.0.0\r\n"
JOIN = (
    b"Event: ConfbridgeJoin\r\nPrivilege: call,all\r\nConference: c1\r\n"
    b"Channel: PJSIP/loopback-00000001\r\nChanVariable: VIDIM_KEY=k-1\r\n\r\n"
)
WAIT = 5.0


@dataclass
class FakeAllocator:
    """What AsteriskAmi uses of an Allocator."""

    conferences: dict[str, Any] = field(default_factory=dict)
    reported: list[tuple[str, str, bool]] = field(default_factory=list)

    def report_presence(self, conference_id: str, credential: str, *, present: bool,
                        now: float) -> bool:  # fmt: skip
        self.reported.append((conference_id, credential, present))
        return True


class FakeAmi:
    """An AMI server: answers every action with Success and records it."""

    def __init__(self) -> None:
        self.actions: list[dict[str, str]] = []
        self.logins = 0
        self.changed = asyncio.Condition()
        self.writers: list[asyncio.StreamWriter] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        writer.write(GREETING)
        while block := await reader.readuntil(b"\r\n\r\n"):
            action = dict(line.split(": ", 1) for line in block.decode().strip().split("\r\n"))
            writer.write(f"Response: Success\r\nActionID: {action['ActionID']}\r\n\r\n".encode())
            async with self.changed:
                self.actions.append(action)
                self.logins += action["Action"] == "Login"
                self.changed.notify_all()

    async def wait_for(self, check: Any) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(check), WAIT)


def test_login_presence_kick_and_reconnect(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="vidim.ami")

    async def main() -> None:
        fake = FakeAmi()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                await fake.serve(reader, writer)

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        allocator = FakeAllocator()
        ami = AsteriskAmi(allocator, "127.0.0.1", port, "vidim", "s3cret", retry=0.05)  # type: ignore[arg-type]
        try:
            await ami.start()
            await asyncio.wait_for(ami.ready.wait(), WAIT)
            assert fake.actions[0]["Username"] == "vidim"
            # A ConfbridgeJoin with the dialplan's VIDIM_KEY: a presence for the allocator.
            fake.writers[-1].write(JOIN)
            for _ in range(100):
                if allocator.reported:
                    break
                await asyncio.sleep(0.01)
            assert allocator.reported == [("c1", "k-1", True)]
            # Asterisk goes away; the end asked meanwhile goes after the next login.
            fake.writers[-1].close()
            for _ in range(100):
                if not ami.ready.is_set():
                    break
                await asyncio.sleep(0.01)
            assert not ami.ready.is_set()
            ami.on_event(ConferenceEnded(conference_id="c1", reason="ended"))
            await fake.wait_for(lambda: len(fake.actions) >= 4)
            assert [a["Action"] for a in fake.actions] == [
                "Login", "Login", "ConfbridgeKick", "DBDelTree",
            ]  # fmt: skip
            assert fake.actions[2]["Conference"] == "c1"
        finally:
            await ami.close()
            server.close()
            await server.wait_closed()

    asyncio.run(main())
    assert "Secret: ***" in caplog.text
    assert "s3cret" not in caplog.text  # the AMI debug log never shows the secret
