"""The real Allocator behind SipServer on UDP: refusals with a Warning, OPTIONS."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aio_helpers import request_bytes, udp_client

from vidim.aio import SipServer
from vidim.allocator.allocator import Allocator
from vidim.allocator.events import AllocatorEvent, RequestRefused
from vidim.sip import Request


def test_unknown_mode_gets_400_with_warning_and_options_gets_200(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[AllocatorEvent] = []

    async def main() -> None:
        allocator = Allocator()
        server = SipServer(allocator, port=0, on_event=events.append)
        await server.start()
        client = await udp_client()
        try:
            client.send(
                request_bytes(
                    "MESSAGE",
                    uri="sip:bob@example.com",
                    call_id="hologram",
                    via_port=client.port,
                    headers=(("X-Vidim-Mode", "hologram"),),
                ),
                server.port,
            )
            refusal = await client.response_to("hologram")
            assert refusal.status == 400
            warning = refusal.headers.get("Warning")
            assert warning is not None
            assert warning.startswith("399 ")
            assert 'unknown mode \\"hologram\\"' in warning
            # The explanatory IM goes where the request came from (a requester
            # with no Contact and no registration, as pjsua2 sends them).
            notice = await client.next()
            assert isinstance(notice, Request)
            assert notice.method == "MESSAGE"

            client.send(
                request_bytes("OPTIONS", call_id="options", via_port=client.port), server.port
            )
            options = await client.response_to("options")
            assert options.status == 200
            assert options.headers.get("Allow") is not None
        finally:
            client.close()
            await server.close(drain=0.5)

    with caplog.at_level(logging.DEBUG, logger="vidim.aio"):
        asyncio.run(main())
    refused = [e for e in events if isinstance(e, RequestRefused)]
    assert [(e.call_id, e.status) for e in refused] == [("hologram", 400)]
    received = [r for r in caplog.records if r.getMessage().startswith("recv ")]
    assert [getattr(r, "call_id", None) for r in received][:2] == ["hologram", "options"]


def test_default_on_event_logs_allocator_events_with_call_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        server = SipServer(Allocator(), port=0)
        await server.start()
        client = await udp_client()
        try:
            client.send(
                request_bytes(
                    "MESSAGE",
                    uri="sip:bob@example.com",
                    call_id="logged-refusal",
                    via_port=client.port,
                    headers=(("X-Vidim-Mode", "hologram"),),
                ),
                server.port,
            )
            assert (await client.response_to("logged-refusal")).status == 400
        finally:
            client.close()
            await server.close(drain=0.5)

    with caplog.at_level(logging.INFO, logger="vidim.aio"):
        asyncio.run(main())
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "RequestRefused"]
    assert record.levelno == logging.INFO
    assert record.call_id == "logged-refusal"  # type: ignore[attr-defined]
    assert "RequestRefused(" in record.getMessage()
