"""A pjsua2 phone (PJSIP 2.15) that asks vidim for a conference over TLS, for test_tls_pjsua2.py.

Run as a child process (one pjsua2 Endpoint per process)::

    python pjsua2_tls_phone.py --ca CA.pem --to sip:vidim@127.0.0.1:PORT;transport=tls --text TEXT

It makes a TLS transport that verifies the server against ``--ca``, sends one
MESSAGE with ``--text`` to ``--to``, and prints one JSON line per event on
stdout: ``{"event": "status", "code": N, "reason": R}`` for its MESSAGE, and
``{"event": "im", "body": B, "transport": T}`` for each MESSAGE it receives
(answered 200 by pjsua).  It exits after ``--timeout`` seconds, or at once
when an IM holding ``--until`` has arrived.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import pjsua2 as pj


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class Account(pj.Account):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[str] = []

    def onInstantMessage(self, prm: Any) -> None:  # noqa: N802 - pjsua2's name
        self.bodies.append(prm.msgBody)
        emit("im", body=prm.msgBody, transport=_transport(prm), source=prm.rdata.srcAddress)

    def onInstantMessageStatus(self, prm: Any) -> None:  # noqa: N802 - pjsua2's name
        emit("status", code=int(prm.code), reason=prm.reason)


def _transport(prm: Any) -> str:
    """The transport of a received message, from its top Via (``SIP/2.0/TLS ...``)."""
    for line in prm.rdata.wholeMsg.splitlines():
        if line.lower().startswith(("via:", "v:")):
            return line.split(":", 1)[1].strip().split()[0].rsplit("/", 1)[-1].upper()
    return ""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ca", required=True)
    parser.add_argument("--to", required=True)
    parser.add_argument("--text", required=True)
    parser.add_argument("--until", default="is ready")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()

    ep = pj.Endpoint()
    saved = os.dup(1)
    os.dup2(2, 1)  # pjlib's start-up lines: to stderr, stdout is for our JSON
    try:
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.logConfig.level = 0
        cfg.logConfig.consoleLevel = 0
        ep.libInit(cfg)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    ep.audDevManager().setNullDev()
    tcfg = pj.TransportConfig()
    tcfg.port = 0
    tcfg.boundAddress = "127.0.0.1"
    tcfg.tlsConfig.CaListFile = args.ca
    tcfg.tlsConfig.verifyServer = True
    tcfg.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
    ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tcfg)
    ep.libStart()

    account = Account()
    acfg = pj.AccountConfig()
    acfg.idUri = "sip:alice@127.0.0.1;transport=tls"
    account.create(acfg)
    buddy = pj.Buddy()
    bcfg = pj.BuddyConfig()
    bcfg.uri = args.to
    bcfg.subscribe = False
    buddy.create(account, bcfg)
    prm = pj.SendInstantMessageParam()
    prm.content = args.text
    buddy.sendInstantMessage(prm)

    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and not any(args.until in b for b in account.bodies):
        ep.libHandleEvents(50)
    for _ in range(10):  # let pjsua send its 200 for the last IM
        ep.libHandleEvents(20)
    buddy = None
    account.shutdown()
    ep.libDestroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
