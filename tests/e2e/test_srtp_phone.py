"""Issue 18: a pjsua2 phone that insists on SRTP (srtp_use=mandatory, SDES) joins the
built-in focus through Kamailio beside a plain phone; each hears the other.
"""

from __future__ import annotations

import pytest
from e2e_peers import DOMAIN, Site, conference_of, header

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def audio_line(sdp: str) -> tuple[str, list[str]]:
    """The audio m-line and its a=crypto lines."""
    m_line, crypto, in_audio = "", [], False
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            in_audio = line.startswith("m=audio")
            m_line = line if in_audio else m_line
        elif in_audio and line.startswith("a=crypto:"):
            crypto.append(line)
    return m_line, crypto


def test_a_mandatory_srtp_phone_and_a_plain_phone_talk(site: Site) -> None:
    site.start()
    alice = site.phone("alice")
    bob = site.phone("bob", "--srtp", "mandatory")
    carol = site.phone("carol")
    status = alice.message(
        f"sip:bob@{DOMAIN}", "audio call?",
        {"X-Vidim-Mode": "audio", "X-Vidim-Invite": f"<sip:carol@{DOMAIN}>;mode=audio"},
    )  # fmt: skip
    assert status["code"] == 202, status
    ready = alice.wait_im(lambda e: header(e["headers"], "X-Vidim-Conference") is not None)
    assert conference_of(header(ready["headers"], "X-Vidim-Conference") or "")["id"]
    for phone in (bob, carol):
        invitation = phone.wait("invitation")
        phone.send(cmd="call", uri=invitation["conference_uri"])
        phone.wait("call_state", lambda e: e["state"] == "CONFIRMED")

    # bob offered RTP/SAVP with SDES keys and got SRTP back with the focus's own key.
    bob_offer = audio_line(bob.wait("call_sdp", lambda e: e["kind"] == "local")["sdp"])
    bob_answer = audio_line(bob.wait("call_sdp", lambda e: e["kind"] == "remote_answer")["sdp"])
    assert " RTP/SAVP " in bob_offer[0], bob_offer
    assert " RTP/SAVP " in bob_answer[0], bob_answer
    (answered,) = bob_answer[1]
    assert answered not in bob_offer[1], "the focus answers with a key of its own"
    carol_answer = audio_line(carol.wait("call_sdp", lambda e: e["kind"] == "remote_answer")["sdp"])
    assert " RTP/AVP " in carol_answer[0]
    assert carol_answer[1] == []

    # Media both ways: pjsua counts only packets that its SRTP transport opened.
    assert bob.rx_packets() > 0, "bob (SRTP) receives carol's audio through the focus"
    assert carol.rx_packets() > 0, "carol (plain) receives bob's audio through the focus"
