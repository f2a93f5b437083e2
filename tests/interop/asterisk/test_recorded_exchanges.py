"""The asterisk profile's unit half: AMI and SIP exchanges recorded from Asterisk 20.20.1.

Runs everywhere (no Asterisk needed).  The AMI blocks below are what Asterisk
20.20.1 sent to vidim in the hand run of test_asterisk_live.py (the daemon logs
them at debug: ``AMI recv ...``), with the conference id and keys replaced;
the dialplan and ConfBridge files are checked for what that run showed they
must do.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vidim.allocator import Conference, Participant
from vidim.allocator.events import ConferenceEnded, ConferenceReady, InvitationSent
from vidim.allocator.profiles import FocusProfile, conference_uri, focus_request, join_uri
from vidim.ami import (
    AmiConnection,
    AmiEvent,
    AmiGreeting,
    AmiProtocolError,
    AmiResponse,
    AmiTrouble,
    AsteriskControl,
    LoggedIn,
    Presence,
)
from vidim.sip import parse_message
from vidim.vocabulary import Mode

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "asterisk"
CID = "Qx-9_abc"

GREETING = b"Asterisk Call Manager/9.0.0\r\n"
LOGIN_OK = (
    b"Response: Success\r\nActionID: 1\r\nMessage: Authentication accepted\r\n\r\n"
    b"Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 3\r\nLastReload: 3\r\n"
    b"Status: Fully Booted\r\n\r\n"
)
#: bob's ConfbridgeJoin as Asterisk 20.20.1 sent it (conference id and key replaced).
JOIN = (
    "Event: ConfbridgeJoin\r\nPrivilege: call,all\r\nConference: {cid}\r\n"
    "BridgeUniqueid: 50521dae-d6b4-42db-8b8a-3007870cc0e6\r\nBridgeType: base\r\n"
    "BridgeTechnology: softmix\r\nBridgeCreator: ConfBridge\r\nBridgeName: {cid}\r\n"
    "BridgeNumChannels: 3\r\nBridgeVideoSourceMode: talker\r\n"
    "Channel: PJSIP/loopback-00000001\r\nChannelState: 6\r\nChannelStateDesc: Up\r\n"
    "CallerIDNum: bob\r\nCallerIDName: <unknown>\r\nConnectedLineNum: <unknown>\r\n"
    "ConnectedLineName: <unknown>\r\nLanguage: en\r\nAccountCode: \r\nContext: vidim\r\n"
    "Exten: conf-{cid}\r\nPriority: 27\r\nUniqueid: 1796457938.3\r\n"
    "Linkedid: 1796457938.3\r\nChanVariable: VIDIM_KEY={key}\r\nAdmin: No\r\nMuted: No\r\n\r\n"
)


def recorded(event: str, key: str) -> bytes:
    return JOIN.format(cid=CID, key=key).replace("ConfbridgeJoin", event).encode()


def person(name: str, mode: Mode, key: str, *, requester: bool = False) -> Participant:
    return Participant(uri=f"sip:{name}@vidim.test", requested_mode=mode, mode=mode,
                       credential=key, requester=requester)  # fmt: skip


def conference() -> Conference:
    people = [person("alice", Mode.VIDEO, "Ka", requester=True), person("bob", Mode.AUDIO, "Kb-_1")]
    return Conference(id=CID, requester="sip:alice@vidim.test", mode=Mode.VIDEO,
                      requester_address="127.0.0.1|5062|UDP", participants=people,
                      created_at=0.0)  # fmt: skip


def logged_in() -> AsteriskControl:
    control = AsteriskControl("vidim", "s3cret")
    control.receive_data(GREETING)
    control.data_to_send()
    assert control.receive_data(LOGIN_OK) == [LoggedIn(version="9.0.0")]
    return control


def actions(data: bytes) -> list[dict[str, str]]:
    out = []
    for block in data.decode().split("\r\n\r\n"):
        if block:
            out.append(dict(line.split(": ", 1) for line in block.split("\r\n")))
    return out


# -- the wire ---------------------------------------------------------------------------
def test_greeting_response_and_event_in_pieces() -> None:
    connection = AmiConnection()
    action_id, data = connection.action("DBPut", ("Family", "vidim/x"), ("Key", "k"))
    assert data == b"Action: DBPut\r\nActionID: 1\r\nFamily: vidim/x\r\nKey: k\r\n\r\n"
    wire = (
        GREETING
        + b"Response: Success\r\nActionID: 1\r\nMessage: Updated database successfully\r\n\r\n"
    )
    wire += recorded("ConfbridgeJoin", "Kb-_1")
    got = [m for i in range(0, len(wire), 7) for m in connection.receive_data(wire[i : i + 7])]
    greeting, response, event = got
    assert greeting == AmiGreeting(version="9.0.0")
    assert isinstance(response, AmiResponse)
    assert (response.action_id, response.success, response.action) == (action_id, True, "DBPut")
    assert isinstance(event, AmiEvent)
    assert event.name == "ConfbridgeJoin"
    assert event.get("conference") == CID
    assert event.variables == {"VIDIM_KEY": "Kb-_1"}


@pytest.mark.parametrize("value", ["a\r\nAction: Logoff", "x\n", "y\r"])
def test_an_action_field_cannot_forge_another(value: str) -> None:
    with pytest.raises(AmiProtocolError):
        AmiConnection().action("DBPut", ("Val", value))


def test_a_peer_that_is_not_asterisk_is_refused() -> None:
    with pytest.raises(AmiProtocolError, match="not an AMI greeting"):
        AmiConnection().receive_data(b"SSH-2.0-OpenSSH_9.2\r\n")


def test_an_endless_block_is_refused() -> None:
    connection = AmiConnection()
    connection.receive_data(GREETING)
    with pytest.raises(AmiProtocolError, match="longer than"):
        connection.receive_data(b"Event: X\r\nData: " + b"a" * 70000)


# -- what vidim asks of Asterisk -----------------------------------------------------------
def test_login_first_then_what_was_asked_meanwhile() -> None:
    control = AsteriskControl("vidim", "s3cret")
    control.end("early")  # before the connection is up: waits for the login
    assert control.data_to_send() == b""
    control.receive_data(GREETING)
    assert actions(control.data_to_send()) == [
        {"Action": "Login", "ActionID": "1", "Username": "vidim", "Secret": "s3cret",
         "Events": "call"},
    ]  # fmt: skip
    assert control.receive_data(LOGIN_OK) == [LoggedIn(version="9.0.0")]
    assert [a["Action"] for a in actions(control.data_to_send())] == [
        "ConfbridgeKick",
        "DBDelTree",
    ]


def test_a_refused_login_is_fatal() -> None:
    control = AsteriskControl("vidim", "wrong")
    control.receive_data(GREETING)
    refused = b"Response: Error\r\nActionID: 1\r\nMessage: Authentication failed\r\n\r\n"
    assert control.receive_data(refused) == [
        AmiTrouble(action="Login", message="Authentication failed", fatal=True)
    ]
    assert not control.logged_in


def test_each_invitation_stores_its_key_after_add_too() -> None:
    control = logged_in()
    record = conference()
    # The anchor INVITE's dialplan stored the first keys: nothing to do at ready.
    control.on_allocator_event(ConferenceReady(conference_id=CID, conference_uri="u"), record)
    assert control.data_to_send() == b""
    sent = InvitationSent(conference_id=CID, invitee="sip:bob@vidim.test", mode=Mode.AUDIO)
    control.on_allocator_event(sent, record)
    assert [(a["Action"], a["Family"], a["Key"], a["Val"]) for a in actions(control.data_to_send())] == [
        ("DBPut", f"vidim/{CID}", "Kb-_1", "audio"),
    ]  # fmt: skip
    # /add erin: the re-INVITE does not run the dialplan (issue 17, item 3).
    record.participants.append(person("erin", Mode.WATCH, "Ke"))
    sent = InvitationSent(conference_id=CID, invitee="sip:erin@vidim.test", mode=Mode.WATCH)
    control.on_allocator_event(sent, record)
    assert actions(control.data_to_send()) == [
        {"Action": "DBPut", "ActionID": "3", "Family": f"vidim/{CID}", "Key": "Ke",
         "Val": "watch"},
    ]  # fmt: skip


def test_the_end_empties_the_bridge_and_deletes_the_keys() -> None:
    control = logged_in()
    control.on_allocator_event(ConferenceEnded(conference_id=CID, reason="ended by alice"), None)
    assert actions(control.data_to_send()) == [
        {"Action": "ConfbridgeKick", "ActionID": "2", "Conference": CID, "Channel": "all"},
        {"Action": "DBDelTree", "ActionID": "3", "Family": f"vidim/{CID}"},
    ]
    # Recorded: the anchor's BYE had ended the bridge and run the dialplan's cleanup.
    answers = (
        b"Response: Error\r\nActionID: 2\r\nMessage: No active conferences.\r\n\r\n"
        b"Response: Error\r\nActionID: 3\r\nMessage: Database entry not found\r\n\r\n"
    )
    assert control.receive_data(answers) == []  # already done: nothing to log


def test_confbridge_join_and_leave_are_presence_of_a_key() -> None:
    control = logged_in()
    assert control.receive_data(recorded("ConfbridgeJoin", "Kb-_1")) == [
        Presence(conference_id=CID, credential="Kb-_1", present=True)
    ]
    assert control.receive_data(recorded("ConfbridgeLeave", "Kb-_1")) == [
        Presence(conference_id=CID, credential="Kb-_1", present=False)
    ]
    assert control.receive_data(recorded("ConfbridgeJoin", "anchor")) == []  # vidim's own leg
    assert control.receive_data(recorded("ConfbridgeTalking", "Kb-_1")) == []


def test_a_refused_action_is_reported() -> None:
    control = logged_in()
    control.store_keys(CID, [("k", "video")])
    control.data_to_send()
    refused = b"Response: Error\r\nActionID: 2\r\nMessage: Permission denied\r\n\r\n"
    assert control.receive_data(refused) == [
        AmiTrouble(action="DBPut", message="Permission denied")
    ]


# -- the SIP side the dialplan reads -------------------------------------------------------
def test_the_anchor_invite_carries_what_the_dialplan_cuts() -> None:
    """``CUT(CUT(ENTRY,;,2),=,2)`` and ``CUT(CUT(ENTRY,;,3),=,2)`` on each entry."""
    request = focus_request(FocusProfile.ASTERISK, conference(), address="127.0.0.1", session_id=1)
    headers = dict(request.headers)
    assert headers["X-Vidim-Conference"] == CID
    entries = headers["X-Vidim-Participants"].split(",")
    cut = [(e.split(";")[1].split("=")[1], e.split(";")[2].split("=")[1]) for e in entries]
    assert cut == [("video", "Ka"), ("audio", "Kb-_1")]


def test_the_key_is_in_the_request_uri_pjsua2_dials() -> None:
    """Recorded from pjsua2: To without angle brackets makes ;key a To parameter."""
    invite = parse_message(
        b"INVITE sip:conf-Qx-9_abc@127.0.0.1:5090;key=Kb-_1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:40112;rport;branch=z9hG4bKPj1\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:bob@vidim.test>;tag=a1\r\n"
        b"To: sip:conf-Qx-9_abc@127.0.0.1:5090;key=Kb-_1\r\n"
        b"Call-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@127.0.0.1:40112>\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert invite.headers.get("To").endswith(";key=Kb-_1")  # a To parameter, not the URI's
    uri = str(invite.uri)
    user = uri.split("@")[0].removeprefix("sip:")
    params = dict(p.split("=", 1) for p in uri.split(";")[1:])
    assert (user[5:], params["key"]) == (CID, "Kb-_1")  # ${EXTEN:5} and the key loop
    record = conference()
    conf = conference_uri(FocusProfile.ASTERISK, None, focus_uri="sip:vidim-conference@127.0.0.1:5090",
                          conference=record)  # type: ignore[arg-type]  # fmt: skip
    assert join_uri(conf or "", "Kb-_1") == "sip:conf-Qx-9_abc@127.0.0.1:5090;key=Kb-_1"


# -- the dialplan and ConfBridge files ----------------------------------------------------
def _extension(name: str) -> list[str]:
    """The priorities of one extension of extensions.conf, comments dropped."""
    lines, inside = [], False
    for raw in (EXAMPLES / "extensions.conf").read_text().splitlines():
        line = raw.split(";", 1)[0].strip() if not raw.lstrip().startswith("same") else raw.strip()
        if line.startswith("exten =>"):
            inside = line.split("=>", 1)[1].split(",", 1)[0].strip() == name
        if inside and (line.startswith(("exten =>", "same =>"))):
            lines.append(line)
    assert lines, name
    return lines


def asterisk_pattern_matches(pattern: str, exten: str) -> bool:
    """Asterisk's extension patterns: N, X, Z (any case), [set], '.' and '!'."""
    regex = ""
    body = pattern[1:]
    i = 0
    while i < len(body):
        char = body[i]
        if char == "[":
            end = body.index("]", i)
            regex += "[" + re.escape(body[i + 1 : end]) + "]"
            i = end + 1
            continue
        regex += {"n": "[2-9]", "x": "[0-9]", "z": "[1-9]", ".": ".+", "!": ".*"}.get(
            char.lower(), re.escape(char)
        )
        i += 1
    return re.fullmatch(regex, exten) is not None


def test_the_participant_pattern_matches_conference_ids() -> None:
    (pattern,) = {line.split("=>", 1)[1].split(",", 1)[0].strip()
                  for line in _extension("_co[n]f-.")[:1]}  # fmt: skip
    assert asterisk_pattern_matches(pattern, f"conf-{CID}")
    assert not asterisk_pattern_matches("_conf-.", f"conf-{CID}")  # issue 17, item 1
    assert asterisk_pattern_matches("_conf-.", f"co2f-{CID}")


def test_refusals_come_before_answer_and_read_the_request_uri() -> None:
    lines = _extension("_co[n]f-.")
    text = "\n".join(lines)
    answer = next(i for i, line in enumerate(lines) if "Answer()" in line)
    refusals = [i for i, line in enumerate(lines) if "PJSIPHangup(" in line]
    assert len(refusals) == 4  # bad key, not invited, chat, full
    assert all(i < answer for i in refusals)
    assert "CHANNEL(pjsip,request_uri)" in text
    assert "PJSIP_HEADER(read,To)" not in text
    assert "FILTER(" not in (EXAMPLES / "extensions.conf").read_text()  # it dropped '-'
    assert "${DBdeltree(" not in (EXAMPLES / "extensions.conf").read_text()
    assert "exten => h," not in (EXAMPLES / "extensions.conf").read_text()


def test_the_anchor_is_marked_and_every_participant_end_marked() -> None:
    sections: dict[str, dict[str, str]] = {}
    current = ""
    for raw in (EXAMPLES / "confbridge.conf").read_text().splitlines():
        line = raw.split(";", 1)[0].strip()
        if line.startswith("["):
            current = line[1 : line.index("]")]
            sections[current] = {}
        elif "=" in line:
            key, _, value = line.partition("=")
            sections[current][key.strip()] = value.strip()
    assert sections["vidim_anchor"]["marked"] == "yes"
    for mode in ("video", "audio", "watch"):
        assert sections[f"vidim_{mode}"]["end_marked"] == "yes"
    assert sections["vidim_watch"]["startmuted"] == "yes"
    # 16 invitees + the requester + the anchor, which ConfBridge counts.
    assert int(sections["vidim_bridge"]["max_members"]) == 16 + 1 + 1
    assert "VIDIM_MAX_PEOPLE=17" in (EXAMPLES / "extensions.conf").read_text()
