"""Overload control over real UDP sockets, with a fake core that is slow on purpose."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from aio_helpers import TIMEOUT, EchoCore, request_bytes, udp_client

from vidim.aio import SipServer
from vidim.overload import OverloadPolicy
from vidim.sip import Request, Response

POLICY = OverloadPolicy(max_lag=0.1, clear_lag=0.01, hold=0.3, retry_after=3)
#: What the slow core spends on each message it is given (busy, as real work is).
COST = 0.02


class SlowCore(EchoCore):
    def __init__(self) -> None:
        super().__init__()
        self.slow = True

    def receive_datagram(self, data: bytes, source: object, now: float) -> None:  # type: ignore[override]
        if self.slow:
            until = time.perf_counter() + COST
            while time.perf_counter() < until:
                pass
        super().receive_datagram(data, source, now)  # type: ignore[arg-type]


def test_excess_new_requests_get_503_and_the_server_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="vidim.aio")

    async def main() -> None:
        core = SlowCore()
        server = SipServer(core, port=0, overload=POLICY)
        await server.start()
        client = await udp_client()
        guard = server.overload
        assert guard is not None
        try:
            # A burst of 30 new requests: 0.6 s of work offered at once.
            burst = [f"burst-{i}" for i in range(30)]
            for call_id in burst:
                client.send(request_bytes(call_id=call_id, via_port=client.port), server.port)
            answers: dict[str, Response] = {}
            while len(answers) < len(burst):
                message = await asyncio.wait_for(client.next(), TIMEOUT)
                assert isinstance(message, Response)
                answers[message.call_id] = message
            refused = [a for a in answers.values() if a.status == 503]
            served = [a for a in answers.values() if a.status == 200]
            assert refused, "the burst should have overloaded the server"
            assert served, "the first requests are served before the guard closes"
            for answer in refused:
                assert answer.headers.get("Retry-After") == "3"
                warning = answer.headers.get("Warning") or ""
                assert warning.startswith("399 ")
                assert "overloaded" in warning
                assert answer.to_addr.tag  # a final response to a request without a To tag
            reached = {m.call_id for m, _, _ in core.received}
            assert reached == {a.call_id for a in served}  # refused ones never reached the core
            assert guard.refused == len(refused)
            assert guard.overloaded_now
            # Each served request has its INFO line; a refused one only a DEBUG line
            # (the log must not grow with the load it refuses).
            lines = [(r.levelno, r.getMessage()) for r in caplog.records]
            for answer in served:
                assert any(
                    level == logging.INFO and m.startswith("recv ") and answer.call_id in m
                    for level, m in lines
                )
            for answer in refused:
                mine = [(level, m) for level, m in lines if answer.call_id in m]
                assert not [m for level, m in mine if level >= logging.INFO]
                assert any(m.startswith("refused ") and " from " in m for _, m in mine)
            # One warning for the episode, saying what started it.
            episodes = [r.getMessage() for r in caplog.records if "overloaded (" in r.getMessage()]
            assert len(episodes) == guard.episodes == 1
            assert f"({guard.reason})" in episodes[0]
            assert "episode 1" in episodes[0]

            # While overloaded, in-dialog requests are still processed.
            core.slow = False
            client.send(
                request_bytes("INFO", call_id="in-dialog", to_tag="t1", via_port=client.port),
                server.port,
            )
            answer = await asyncio.wait_for(client.response_to("in-dialog"), TIMEOUT)
            assert answer.status == 200

            # The load is gone: new requests are served again once the hold time is
            # over and the server's sentinel finds the queue short.
            deadline = time.monotonic() + TIMEOUT
            status = 503
            n = 0
            while status == 503:
                assert time.monotonic() < deadline, "the server never recovered"
                n += 1
                client.send(request_bytes(call_id=f"probe-{n}", via_port=client.port), server.port)
                reply = await asyncio.wait_for(client.response_to(f"probe-{n}"), TIMEOUT)
                status = reply.status
                if status == 503:
                    await asyncio.sleep(POLICY.beat)  # let time pass: the hold is in time
            assert status == 200
            assert not guard.overloaded_now
        finally:
            client.close()
            await server.close(drain=1.0)

    asyncio.run(main())


def test_responses_are_processed_while_overloaded() -> None:
    async def main() -> None:
        core = EchoCore()
        # A long hold: the short queue the sentinel finds cannot end the episode mid-test.
        server = SipServer(core, port=0, overload=OverloadPolicy(max_lag=0.1, hold=60.0))
        await server.start()
        client = await udp_client()
        guard = server.overload
        assert guard is not None
        try:
            guard.lag(5.0, time.perf_counter())  # as if the loop had been blocked
            assert guard.overloaded_now
            response = (
                "SIP/2.0 200 OK\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{server.port};branch=z9hG4bKresp1\r\n"
                "From: <sip:vidim@127.0.0.1>;tag=v1\r\nTo: <sip:bob@127.0.0.1>;tag=b1\r\n"
                "Call-ID: resp-1@test\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            got = asyncio.get_running_loop().create_future()
            core.on_receive = lambda m, s, n: got.done() or got.set_result(m)
            client.send(response, server.port)
            message = await asyncio.wait_for(got, TIMEOUT)
            assert isinstance(message, Response)
            client.send(request_bytes(call_id="new-1", via_port=client.port), server.port)
            refused = await asyncio.wait_for(client.response_to("new-1"), TIMEOUT)
            assert refused.status == 503
            assert not any(isinstance(m, Request) for m, _, _ in core.received)
        finally:
            client.close()
            await server.close(drain=1.0)

    asyncio.run(main())
