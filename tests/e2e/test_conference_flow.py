"""Issue 4, end to end scenarios 1 and 2: the header form and the command form, through
real Kamailio, the real vidim-daemon (allocator + built-in focus), pjsua2 and baresip.
"""

from __future__ import annotations

import re

import pytest
from e2e_peers import DOMAIN, SERVICE, Site, conference_of, header

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def media_lines(sdp: str) -> dict[str, str]:
    """kind -> the m-line, plus kind+'/dir' -> its direction attribute (sendrecv default)."""
    out: dict[str, str] = {}
    kind = ""
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            kind = line[2:].split()[0]
            out[kind] = line
            out[kind + "/dir"] = "sendrecv"
        elif kind and line in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"):
            out[kind + "/dir"] = line[2:]
    return out


def port_of(m_line: str) -> int:
    return int(m_line.split()[1])


def test_header_form_video_and_audio_invitees(site: Site) -> None:
    """alice (pjsua2) -> bob (baresip, video) + carol (pjsua2, audio), through Kamailio."""
    site.start()
    alice = site.phone("alice")
    carol = site.phone("carol")
    bob = site.baresip("bob")  # baresip: the peer that really offers (VP8) video

    # 1. The header form: alice gets 202.
    status = alice.message(
        f"sip:bob@{DOMAIN}", "video call?",
        {"X-Vidim-Mode": "video", "X-Vidim-Invite": f"<sip:carol@{DOMAIN}>;mode=audio"},
    )  # fmt: skip
    assert status["code"] == 202, status

    # 2. alice's ready IM carries her own join URI; bob and carol one invitation each.
    ready = alice.wait_im(lambda e: header(e["headers"], "X-Vidim-Conference") is not None)
    mine = conference_of(header(ready["headers"], "X-Vidim-Conference") or "")
    invitation = carol.wait("invitation")
    assert invitation["mode"] == "audio"
    assert invitation["id"] == mine["id"]
    assert invitation["conference_uri"].startswith("sip:conf-")
    bob_invite = bob.wait_sip(
        lambda m: m.direction == "recv" and m.method == "MESSAGE"
        and m.header("X-Vidim-Conference") is not None,
        "invitation MESSAGE",
    )  # fmt: skip
    bob_conf = conference_of(bob_invite.header("X-Vidim-Conference") or "")
    assert bob_conf["mode"] == "video"
    assert bob_conf["id"] == mine["id"]
    assert bob_invite.header("X-Vidim-Mode") is None, "an invitation never carries X-Vidim-Mode"
    assert len({bob_conf["uri"], invitation["conference_uri"], mine["uri"]}) == 3, "own keys"

    # 3. Both dial the conference URI through Kamailio.
    bob.command("dial", bob_conf["uri"])
    carol.send(cmd="call", uri=invitation["conference_uri"])
    carol.wait("call_state", lambda e: e["state"] == "CONFIRMED")
    bob.wait_event("CALL_ESTABLISHED")

    # 4. The focus's answers: bob's keeps video (port != 0, sendrecv); carol's offers no
    # video (pjsua2 has none) and her answer has no active video stream.
    bob_ok = bob.wait_sip(
        lambda m: m.direction == "recv" and m.status == 200
        and (m.header("CSeq") or "").endswith("INVITE"),
        "200 to the conference INVITE",
    )  # fmt: skip
    bob_media = media_lines(bob_ok.body)
    assert port_of(bob_media["audio"]) != 0
    assert "video" in bob_media, bob_ok.body
    assert port_of(bob_media["video"]) != 0, bob_ok.body
    assert bob_media["video/dir"] == "sendrecv", bob_ok.body
    assert "isfocus" in (bob_ok.header("Contact") or "")
    carol_answer = carol.wait("call_sdp", lambda e: e["kind"] == "remote_answer")
    carol_media = media_lines(carol_answer["sdp"])
    assert port_of(carol_media["audio"]) != 0
    assert "video" not in carol_media or port_of(carol_media["video"]) == 0

    # 5. RTP flows: carol (pjsua2) receives bob's audio forwarded by the focus.
    assert carol.rx_packets() > 0

    # 6. alice gets roster IMs for both.
    alice.wait_im(lambda e: "bob" in e["body"] and "joined" in e["body"])
    alice.wait_im(lambda e: "carol" in e["body"] and "joined" in e["body"])

    # 7. alice ends it; both calls get BYE.
    end = alice.message(SERVICE, "/end")
    assert end["code"] == 202, end
    carol.wait("bye_received")
    carol.wait("call_state", lambda e: e["state"] == "DISCONNECTED")
    bob.wait_event("CALL_CLOSED")
    bob.wait_sip(lambda m: m.direction == "recv" and m.method == "BYE", "BYE")
    alice.wait_im(lambda e: "ended" in e["body"])

    # Exactly one invitation each.
    assert len(carol.events("invitation")) == 1
    invitations = [m for m in bob.traced()
                   if m.direction == "recv" and m.method == "MESSAGE"
                   and m.header("X-Vidim-Conference")]  # fmt: skip
    assert len({m.header("Call-ID") for m in invitations}) == 1


def test_command_form_from_baresip(site: Site) -> None:
    """alice on baresip sends the command form ``/audio bob``; bob on pjsua2 joins."""
    site.start()
    bob = site.phone("bob")
    alice = site.baresip("alice")

    response = alice.command("message", "/audio bob")
    assert response.get("ok"), response
    accepted = alice.wait_sip(
        lambda m: m.direction == "recv" and m.status is not None
        and (m.header("CSeq") or "").endswith("MESSAGE"),
        "final response to the command MESSAGE",
    )  # fmt: skip
    assert accepted.status == 202, accepted

    invitation = bob.wait("invitation")
    assert invitation["mode"] == "audio"
    ready = alice.wait_sip(
        lambda m: m.direction == "recv" and m.method == "MESSAGE"
        and m.header("X-Vidim-Conference") is not None,
        "ready IM",
    )  # fmt: skip
    mine = conference_of(ready.header("X-Vidim-Conference") or "")
    assert mine["id"] == invitation["id"]

    bob.send(cmd="call", uri=invitation["conference_uri"])
    bob.wait("call_state", lambda e: e["state"] == "CONFIRMED")
    # alice (baresip, offers audio + VP8 video) dials in with her own credential: in an
    # audio conference the focus rejects her video m-line with port 0.
    alice.command("dial", mine["uri"])
    alice.wait_event("CALL_ESTABLISHED")
    ok = alice.wait_sip(
        lambda m: m.direction == "recv" and m.status == 200
        and (m.header("CSeq") or "").endswith("INVITE"),
        "200 to alice's INVITE",
    )  # fmt: skip
    media = media_lines(ok.body)
    assert port_of(media["audio"]) != 0
    assert "video" in media, ok.body
    assert port_of(media["video"]) == 0, ok.body

    assert bob.rx_packets() > 0, "bob receives alice's audio through the focus"
    alice.wait_sip(
        lambda m: m.direction == "recv" and m.method == "MESSAGE"
        and re.search(r"bob.*joined", m.body) is not None,
        "roster IM",
    )  # fmt: skip

    alice.command("message", "/end")
    bob.wait("bye_received")
    alice.wait_event("CALL_CLOSED")
