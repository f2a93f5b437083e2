"""Issue 15: follow-the-talker video on the built-in focus, with three real baresip phones.

Real Kamailio, the real vidim-daemon and three baresip 1.0 processes with
``fakevideo`` cameras (VP8), each at its own picture size so that a receiver's
decoded picture tells whose video it is (baresip's ``snapshot_recv`` writes the
last decoded frame as PNG).  alice and bob are ``video`` participants, carol
``watch``; every phone plays a tone (``ausine``), and a muted phone sends
silence, so muting moves the talker.

alice talks first: carol decodes alice's picture.  Then alice mutes and bob
speaks: the daemon asks bob for a keyframe (RTCP PLI) before
it switches carol to bob; carol and alice then decode bob's picture, bob
decodes alice's (the speaker sees the previous speaker), and no phone's VP8
decoder reports an error.  baresip offers ``a=rtcp-fb:* nack pli`` and ignores
SIP INFO, so the keyframe request is an RTCP PLI.
"""

from __future__ import annotations

import re
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from baresip_peer import Baresip
from e2e_peers import DOMAIN, Site, conference_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

PNG_END = b"IEND\xaeB`\x82"  # the last chunk of every PNG, with its CRC
SIZES = {"alice": (176, 144), "bob": (352, 288), "carol": (320, 240)}


def uri(user: str) -> str:
    return f"sip:{user}@{DOMAIN}"


def picture_size(phone: Baresip, folder: Path, name: str, timeout: float = 10.0) -> tuple[int, int]:
    """The size of the next picture ``phone`` decodes (PNG IHDR), via ``snapshot_recv``."""
    path = folder / f"{name}.png"
    phone.command("snapshot_recv", str(path))
    phone.wait_output(f"png: wrote {path}", timeout)  # printed just before fclose()
    deadline = time.monotonic() + timeout
    while not (data := path.read_bytes()).endswith(PNG_END):  # closed: the IEND chunk is out
        if time.monotonic() > deadline:
            raise AssertionError(f"{phone.user}: {path.name} not complete in {timeout}s")
        time.sleep(0.01)
    header = data[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", header
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def wait_picture(
    phone: Baresip, size: tuple[int, int], folder: Path, name: str, timeout: float = 5.0
) -> None:
    """Decoded pictures of ``phone`` until one has ``size``, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    seen = []
    for attempt in range(1000):
        seen.append(picture_size(phone, folder, f"{name}-{attempt}"))
        if seen[-1] == size:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{phone.user} decoded {seen}, never {size}, in {timeout}s")


def media_event(record: dict[str, Any], kind: str, **fields: str) -> bool:
    message = str(record.get("message", ""))
    if not message.startswith(f"{kind}("):
        return False
    return all(f"{name}='{value}'" in message for name, value in fields.items())


def test_the_picture_follows_the_talker(site: Site) -> None:
    site.start()
    phones = {user: site.baresip(user, video_size="{}x{}".format(*size))
              for user, size in SIZES.items()}  # fmt: skip
    alice, bob, carol = phones["alice"], phones["bob"], phones["carol"]
    assert alice.command("message", "/video bob carol;mode=watch").get("ok")
    conferences = {user: conference_of(phone.invitation().header("X-Vidim-Conference") or "")
                   for user, phone in phones.items()}  # fmt: skip
    assert conferences["carol"]["mode"] == "watch"

    for user in ("alice", "bob", "carol"):  # alice first: the first video participant
        phones[user].command("dial", conferences[user]["uri"])
        phones[user].wait_event("CALL_ESTABLISHED")
        if user == "bob":
            assert bob.command("mute").get("ok")  # bob listens: silence, not his tone
    # alice talks: carol (watch) and bob see alice's picture, alice sees bob's.
    carol.wait_output("receiving with resolution 176 x 144", timeout=15)
    folder = Path(tempfile.mkdtemp(prefix="vidim-ftt-"))  # snapshot paths are short
    assert picture_size(carol, folder, "carol-1") == SIZES["alice"]
    assert picture_size(alice, folder, "alice-1") == SIZES["bob"]

    # alice stops, bob speaks: after the hysteresis (1.5 s) the picture follows bob.
    assert alice.command("mute").get("ok")
    assert bob.command("mute").get("ok")  # un-mute
    daemon = site.daemon
    assert daemon is not None
    daemon.wait_record(lambda r: media_event(r, "TalkerChanged", participant=uri("bob")),
                       "bob as the talker", timeout=15)  # fmt: skip
    switched = daemon.wait_record(
        lambda r: media_event(r, "VideoSourceChanged", participant=uri("carol"), source=uri("bob")),
        "carol switched to bob",
    )
    # What was decoded before the switch drains from each phone's jitter buffer first.
    wait_picture(carol, SIZES["bob"], folder, "carol-2")
    wait_picture(alice, SIZES["bob"], folder, "alice-2")  # sees the speaker
    wait_picture(bob, SIZES["alice"], folder, "bob-2")  # sees the previous speaker

    # bob was asked for a keyframe with RTCP PLI (the focus's answer took his
    # a=rtcp-fb nack pli) before carol was switched to him.
    answer = bob.invite_answer()
    assert re.search(r"a=rtcp-fb:\d+ nack pli", answer.body), answer.body
    records = daemon.log_records()
    before = records[: records.index(switched)]
    assert any(media_event(r, "KeyframeRequested", participant=uri("bob")) for r in before)

    for user, phone in phones.items():  # VP8 decoded cleanly across the switch
        errors = re.findall(r".*decode error.*", phone.output())
        assert not errors, f"{user}: {errors[:3]}"

    alice.command("message", "/end")
    for phone in phones.values():
        phone.wait_event("CALL_CLOSED")
