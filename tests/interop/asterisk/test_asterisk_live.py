"""Issue 17 against a real Asterisk 20 (run by hand: CI has no Asterisk, these skip there).

Kamailio (examples/kamailio/), the real vidim-daemon with ``--profile asterisk``
and ``--asterisk-ami``, Asterisk 20 with examples/asterisk/ unchanged, and
pjsua2 phones (examples/softphone.py --json) on 127.0.0.1.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from asterisk_peer import AMI_SECRET, AMI_USER, Asterisk
from e2e_peers import DOMAIN, SERVICE, Phone, Site, conference_of, header
from sip_peers import HOST

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def start(site: Site, asterisk: Asterisk, *, ami: bool = True, toml: str = "") -> None:
    args = ["--focus", asterisk.focus_uri, "--profile", "asterisk"]
    config = toml
    if ami:
        args += ["--asterisk-ami", f"{HOST}:{asterisk.ami_port}"]
        config += f'[asterisk]\nami_user = "{AMI_USER}"\nami_secret = "{AMI_SECRET}"\n'
    site.start(daemon_args=args, config=config, focus=(HOST, asterisk.sip_port))
    if ami:
        daemon = site.daemon
        assert daemon is not None
        until(lambda: any("logged in" in str(r.get("message")) for r in daemon.log_records()),
              "the daemon's AMI login")  # fmt: skip


def until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """A bounded poll, for what tells nobody when it is done (a log file, Asterisk's CLI)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout}s")
        time.sleep(0.2)


def ready_conference(alice: Phone, text: str) -> str:
    """alice asks with the command form; returns the conference id from her ready IM."""
    start = alice.mark()
    status = alice.message(SERVICE, text)
    assert status["code"] == 202, status
    ready = alice.wait_im(lambda e: header(e["headers"], "X-Vidim-Conference") is not None,
                          start=start)  # fmt: skip
    return conference_of(header(ready["headers"], "X-Vidim-Conference") or "")["id"]


def join(phone: Phone, uri: str) -> dict[str, object]:
    """Dial ``uri``; the final answer's call_response (200 and CONFIRMED, or the refusal)."""
    start = phone.mark()
    phone.send(cmd="call", uri=uri)
    response = phone.wait("call_response", start=start, timeout=15)
    if response["status"] == 200:
        phone.wait("call_state", lambda e: e["state"] == "CONFIRMED", start=start)
    return response


def refused_before_answer(phone: Phone, uri: str) -> int:
    """The status of a refused call, checked to come with no 200 before it."""
    start = phone.mark()
    response = join(phone, uri)
    assert response["status"] != 200, response
    phone.wait("call_state", lambda e: e["state"] == "DISCONNECTED", start=start)
    with phone.cond:
        since = [json.loads(line) for line in phone.lines[start:] if line.startswith("{")]
    # No 200 then BYE: the call never got to CONFIRMED, no BYE came.
    assert not [e for e in since if e.get("state") == "CONFIRMED"], since
    assert not [e for e in since if e.get("event") == "bye_received"], since
    return int(str(response["status"]))


def test_the_whole_lifecycle(site: Site, asterisk: Asterisk) -> None:
    start(site, asterisk)
    alice, bob, carol = site.phone("alice"), site.phone("bob"), site.phone("carol")
    erin, mallory = site.phone("erin"), site.phone("mallory")
    cid = ready_conference(alice, "/video bob carol;mode=audio")
    family = f"vidim/{cid}"

    # Create: the anchor is in the bridge, every key in AstDB (ids keep their '-' and '_').
    asterisk.wait_until(lambda: len(asterisk.members(cid)) == 1, "anchor in the bridge")
    assert sorted(asterisk.astdb(family).values()) == ["audio", "video", "video"]

    # Join per mode: each with its own key from the Request-URI (pjsua2 writes To bare).
    bob_uri = bob.wait("invitation")["conference_uri"]
    carol_invitation = carol.wait("invitation")
    assert carol_invitation["mode"] == "audio"
    assert join(bob, bob_uri)["status"] == 200
    assert join(carol, carol_invitation["conference_uri"])["status"] == 200
    carol_answer = carol.wait("call_sdp", lambda e: e["kind"] == "remote_answer")
    assert "m=video" not in carol_answer["sdp"] or "m=video 0 " in carol_answer["sdp"]
    asterisk.wait_until(lambda: len(asterisk.members(cid)) == 3, "bob and carol in the bridge")

    # Roster IMs and /status, from ConfbridgeJoin over AMI.
    alice.wait_im(lambda e: "bob" in e["body"] and "joined" in e["body"])
    alice.wait_im(lambda e: "carol" in e["body"] and "joined (audio)" in e["body"])
    mark = alice.mark()
    alice.message(SERVICE, "/status")
    status = alice.wait_im(lambda e: "bob" in e["body"] and "carol" in e["body"], start=mark)
    assert "bob@vidim.test: video, connected" in status["body"], status
    assert "carol@vidim.test: audio, connected" in status["body"], status

    # Wrong and missing keys: 403 before any answer.
    conf = bob_uri.split(";")[0]
    assert refused_before_answer(mallory, f"{conf};key=not-a-key") == 403
    assert refused_before_answer(mallory, conf) == 403

    # /add erin: her key reaches AstDB over AMI (the re-INVITE runs no dialplan).
    assert alice.message(SERVICE, "/add erin;mode=audio")["code"] == 202
    erin_uri = erin.wait("invitation")["conference_uri"]
    assert join(erin, erin_uri)["status"] == 200
    alice.wait_im(lambda e: "erin" in e["body"] and "joined" in e["body"])

    # carol leaves: alice is told.
    carol.send(cmd="hangup")
    alice.wait_im(lambda e: "carol" in e["body"] and "left" in e["body"])

    # /end: everyone is out of the bridge, AstDB is clean, an old key no longer works.
    assert alice.message(SERVICE, "/end")["code"] == 202
    bob.wait("bye_received")
    erin.wait("bye_received")
    alice.wait_im(lambda e: "has ended" in e["body"])
    asterisk.wait_until(lambda: asterisk.members(cid) == [], "an empty bridge")
    asterisk.wait_until(lambda: asterisk.astdb(family) == {}, "AstDB clean")
    assert refused_before_answer(mallory, bob_uri) == 403
    assert "DBdeltree not registered" not in asterisk.log()


def test_without_ami_create_join_end_still_work(site: Site, asterisk: Asterisk) -> None:
    start(site, asterisk, ami=False)
    alice, bob = site.phone("alice"), site.phone("bob")
    cid = ready_conference(alice, "/video bob")
    assert join(bob, bob.wait("invitation")["conference_uri"])["status"] == 200
    asterisk.wait_until(lambda: len(asterisk.members(cid)) == 2, "bob in the bridge")
    assert alice.message(SERVICE, "/end")["code"] == 202
    bob.wait("bye_received")  # the anchor was marked, bob end_marked
    asterisk.wait_until(lambda: asterisk.astdb(f"vidim/{cid}") == {}, "AstDB clean")


def test_idle_end_only_when_nobody_came(site: Site, asterisk: Asterisk) -> None:
    start(site, asterisk, toml="[timers]\nidle_timeout = 4.0\n")
    alice, bob = site.phone("alice"), site.phone("bob")
    lively = ready_conference(alice, "/video bob")
    assert join(bob, bob.wait("invitation")["conference_uri"])["status"] == 200
    alice.wait_im(lambda e: "bob" in e["body"] and "joined" in e["body"])
    mark = alice.mark()
    empty = ready_conference(alice, f"/audio sip:nobody@{DOMAIN}")
    ended = alice.wait_im(lambda e: "nobody joined" in e["body"], start=mark, timeout=15)
    assert "audio conference has ended" in ended["body"]
    asterisk.wait_until(lambda: asterisk.members(empty) == [], "the idle bridge gone")
    # The one bob is in outlived the idle timeout.
    assert len(asterisk.members(lively)) == 2
    assert not bob.events("bye_received")


def test_sixteen_invitees_and_the_requester_all_join(site: Site, asterisk: Asterisk) -> None:
    start(site, asterisk)
    alice = site.phone("alice")
    names = [f"p{i:02d}" for i in range(16)]
    phones = [site.phone(name) for name in names]
    cid = ready_conference(alice, "/audio " + " ".join(names))
    ready = [e for e in alice.events("im_received") if header(e["headers"], "X-Vidim-Conference")]
    mine = conference_of(header(ready[-1]["headers"], "X-Vidim-Conference") or "")["uri"]
    for phone in phones:
        assert join(phone, phone.wait("invitation")["conference_uri"])["status"] == 200
    assert join(alice, mine)["status"] == 200
    asterisk.wait_until(lambda: len(asterisk.members(cid)) == 18, "17 people and the anchor")
    assert "conf-locked" not in asterisk.log()


def media_of(sdp: str) -> dict[str, tuple[int, str]]:
    """kind -> (port, direction) of each m-line (sendrecv when none is written)."""
    out: dict[str, tuple[int, str]] = {}
    kind = ""
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            kind = line[2:].split()[0]
            out[kind] = (int(line.split()[1]), "sendrecv")
        elif kind and line in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"):
            out[kind] = (out[kind][0], line[2:])
    return out


@pytest.mark.parametrize(("mode", "video"), [("video", True), ("audio", False)])
def test_each_mode_answered_with_its_media(
    site: Site, asterisk: Asterisk, mode: str, video: bool
) -> None:
    """baresip offers audio and VP8 video: an audio invitee's answer declines the video."""
    start(site, asterisk)
    alice = site.phone("alice")
    bob = site.baresip("bob")
    ready_conference(alice, f"/video bob;mode={mode}")
    invitation = bob.wait_sip(
        lambda m: m.direction == "recv" and m.method == "MESSAGE"
        and m.header("X-Vidim-Conference") is not None,
        "invitation MESSAGE",
    )  # fmt: skip
    bob.command("dial", conference_of(invitation.header("X-Vidim-Conference") or "")["uri"])
    bob.wait_event("CALL_ESTABLISHED")
    ok = bob.wait_sip(
        lambda m: m.direction == "recv" and m.status == 200
        and (m.header("CSeq") or "").endswith("INVITE"),
        "200 to the conference INVITE",
    )  # fmt: skip
    media = media_of(ok.body)
    assert media["audio"][0] != 0, ok.body
    assert media["video"][0] != 0, ok.body  # the 200 is written before the dialplan runs
    if not video:
        # ... so the dialplan declines the video with a re-INVITE right after it.
        reinvite = bob.wait_sip(
            lambda m: m.direction == "recv" and m.method == "INVITE", "the re-INVITE"
        )
        media = media_of(reinvite.body)
        assert media["audio"][0] != 0, reinvite.body
        assert media["video"][0] == 0, reinvite.body


def test_asterisk_hanging_up_the_anchor_ends_it_for_everyone(
    site: Site, asterisk: Asterisk
) -> None:
    """The anchor is the marked user: its end is the bridge's, and the requester is told."""
    start(site, asterisk)
    alice, bob = site.phone("alice"), site.phone("bob")
    cid = ready_conference(alice, "/video bob")
    assert join(bob, bob.wait("invitation")["conference_uri"])["status"] == 200
    asterisk.wait_until(lambda: len(asterisk.members(cid)) == 2, "bob in the bridge")
    (anchor,) = [line.split("!")[0] for line in asterisk.cli("core show channels concise")
                 .splitlines() if "!vidim-conference!" in line]  # fmt: skip
    asterisk.cli(f"channel request hangup {anchor}")
    bob.wait("bye_received")
    ended = alice.wait_im(lambda e: "has ended" in e["body"])
    assert "the focus ended the conference" in ended["body"]
    asterisk.wait_until(lambda: asterisk.astdb(f"vidim/{cid}") == {}, "AstDB clean")
