"""SipServer.forward: a request with no hop left is answered 483 with a Warning, not sent on."""

from __future__ import annotations

import asyncio

from aio_helpers import EchoCore, request_bytes, udp_client

from vidim.aio import SipServer
from vidim.sip import Address, Request, Response, parse_message


def test_a_request_with_no_hop_left_gets_483_with_a_warning() -> None:
    async def main() -> None:
        server = SipServer(EchoCore(), port=0)
        await server.start()
        client = await udp_client()
        nowhere = await udp_client()  # where it would have gone: must get nothing
        try:
            wire = request_bytes("MESSAGE", call_id="hops", via_port=client.port)
            request = parse_message(wire.replace(b"Max-Forwards: 70", b"Max-Forwards: 0"))
            assert isinstance(request, Request)
            source = Address("127.0.0.1", client.port)
            server.forward(request, source, Address("127.0.0.1", nowhere.port))
            answer = await client.response_to("hops")
            assert isinstance(answer, Response)
            assert answer.status == 483
            assert "too many hops" in (answer.headers.get("Warning") or "")
            assert nowhere.messages.empty()
        finally:
            client.close()
            nowhere.close()
            await server.close(drain=0.2)

    asyncio.run(main())
