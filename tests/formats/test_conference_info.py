"""RFC 4575 conference-info documents and the subscriber's version rules."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vidim.conference_info import (
    CONFERENCE_INFO_NS,
    CONFERENCE_INFO_TYPE,
    VIDIM_NS,
    ConferenceInfo,
    FormatError,
    UserInfo,
    apply_update,
    build_conference_info,
    parse_conference_info,
)
from vidim.sip import LocalProtocolError
from vidim.vocabulary import Mode

CONF = "sip:conf-3f9a@focus.example.com"
BOB = UserInfo("sip:bob@example.com", "Bob", "full", "connected", Mode.VIDEO, ("audio", "video"))
CAROL = UserInfo("sip:carol@example.com", "Carol", "full", "dialing-out", Mode.AUDIO, ("audio",))
FULL = ConferenceInfo(CONF, 1, "full", (BOB, CAROL), active=True, user_count=2)

# RFC 4575 section 6.1 style, as another focus would write it: extra elements
# vidim does not model must be skipped.
RFC4575_BODY = b"""<?xml version="1.0" encoding="UTF-8"?>
<conference-info xmlns="urn:ietf:params:xml:ns:conference-info"
                 entity="sips:conf233@example.com" state="full" version="1">
  <conference-description>
    <subject>Agenda: This month's goals</subject>
    <conf-uris><entry><uri>sips:conf233@example.com</uri><purpose>participation</purpose></entry></conf-uris>
  </conference-description>
  <host-info><web-page>http://www.example.com/users/alice</web-page></host-info>
  <conference-state>
    <user-count>33</user-count>
    <active>true</active>
    <locked>false</locked>
  </conference-state>
  <users>
    <user entity="sip:bob@example.com" state="full">
      <display-text>Bob Hoskins</display-text>
      <endpoint entity="sip:bob@pc33.example.com">
        <display-text>Bob's Laptop</display-text>
        <status>disconnected</status>
        <disconnection-method>departed</disconnection-method>
        <joining-info><when>2005-03-04T20:00:00Z</when></joining-info>
        <media id="1">
          <type>video</type>
          <label>10235</label>
          <src-id>432424</src-id>
          <status>sendrecv</status>
        </media>
        <media id="2"><type>audio</type><status>sendrecv</status></media>
      </endpoint>
    </user>
    <user entity="sip:alice@example.com" state="full">
      <display-text>Alice</display-text>
      <endpoint entity="sip:alice@pc.example.com"><status>connected</status></endpoint>
    </user>
  </users>
</conference-info>
"""


def test_content_type() -> None:
    assert CONFERENCE_INFO_TYPE == "application/conference-info+xml"


def test_parse_rfc4575_example() -> None:
    info = parse_conference_info(RFC4575_BODY)
    assert (info.entity, info.version, info.state) == ("sips:conf233@example.com", 1, "full")
    assert (info.active, info.user_count) == (True, 33)
    bob, alice = info.users
    assert bob == UserInfo(
        "sip:bob@example.com", "Bob Hoskins", "full", "disconnected", None, ("video", "audio")
    )
    assert alice == UserInfo("sip:alice@example.com", "Alice", "full", "connected", None, ())


def test_round_trip_full() -> None:
    body = build_conference_info(FULL)
    assert parse_conference_info(body) == FULL
    text = body.decode()
    assert f'xmlns="{CONFERENCE_INFO_NS}"' in text
    assert f'xmlns:vidim="{VIDIM_NS}"' in text
    assert 'vidim:mode="video"' in text
    assert "<status>connected</status>" in text
    assert '<media id="2"><type>video</type></media>' in text


def test_round_trip_minimal_and_escaped() -> None:
    info = ConferenceInfo(
        CONF,
        7,
        "partial",
        (
            UserInfo("sip:x@example.com", display_name='<"Eve" & co>', state="partial"),
            UserInfo("sip:y@example.com", state="deleted"),
        ),
    )
    body = build_conference_info(info)
    assert b"conference-state" not in body
    assert b"endpoint" not in body
    assert parse_conference_info(body) == info


def test_no_users_element_when_empty() -> None:
    body = build_conference_info(ConferenceInfo(CONF, 0))
    assert b"<users" not in body
    assert parse_conference_info(body) == ConferenceInfo(CONF, 0)


@pytest.mark.parametrize(
    ("info", "match"),
    [
        (ConferenceInfo("not a uri", 1), "conference entity"),
        (ConferenceInfo(CONF, -1), "out of range"),
        (ConferenceInfo(CONF, 2**32), "out of range"),
        (ConferenceInfo(CONF, 1, user_count=-1), "non-negative"),
        (ConferenceInfo(CONF, 1, users=(UserInfo("sip:a@x", status="con nected"),)), "token"),
        (ConferenceInfo(CONF, 1, users=(UserInfo("sip:a@x", media=("audio\n",)),)), "token"),
        (ConferenceInfo(CONF, 1, users=(UserInfo("sip:a@x", display_name="a\rb"),)), "control"),
        (ConferenceInfo(CONF, 1, users=(UserInfo("sip:a@x\r\n"),)), "user entity"),
    ],
)
def test_build_refuses_what_cannot_be_sent(info: ConferenceInfo, match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        build_conference_info(info)


# --- hostile and broken input ----------------------------------------------------------

_OPEN = f'<conference-info xmlns="{CONFERENCE_INFO_NS}" xmlns:vidim="{VIDIM_NS}" entity="{CONF}"'


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (
            b'<!DOCTYPE c [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
            b'<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" entity="&b;" version="1"/>',
            "DTD",
        ),
        (b"", "malformed XML"),
        (b"<conference-info", "malformed XML"),
        (b'<conference-info entity="sip:c@x" version="1"/>', "expected <conference-info>"),
        (
            b'<conference-info xmlns="urn:ietf:params:xml:ns:resource-lists" entity="sip:c@x" version="1"/>',
            "expected <conference-info>",
        ),
        (f'<conference-info xmlns="{CONFERENCE_INFO_NS}" version="1"/>'.encode(), "entity missing"),
        ((_OPEN + "/>").encode(), "without a version"),
        ((_OPEN + ' version="-1"/>').encode(), "unsigned integer"),
        ((_OPEN + ' version="1e3"/>').encode(), "unsigned integer"),
        ((_OPEN + ' version="99999999999"/>').encode(), "unsigned integer"),
        ((_OPEN + ' version="4294967296"/>').encode(), "out of range"),
        ((_OPEN + ' version="1" state="gone"/>').encode(), "bad state"),
        (
            (
                _OPEN + ' version="1"><conference-state><user-count>many</user-count>'
                "</conference-state></conference-info>"
            ).encode(),
            "user-count",
        ),
        (
            (
                _OPEN + ' version="1"><conference-state><active>yes</active>'
                "</conference-state></conference-info>"
            ).encode(),
            "boolean",
        ),
        (
            (_OPEN + ' version="1"><users><user/></users></conference-info>').encode(),
            "user entity missing",
        ),
        (
            (
                _OPEN
                + ' version="1"><users><user entity="sip:a@x" state="gone"/></users></conference-info>'
            ).encode(),
            "bad state",
        ),
        (
            (
                _OPEN
                + ' version="1"><users><user entity="sip:a@x" vidim:mode="4k"/></users></conference-info>'
            ).encode(),
            "unknown mode",
        ),
        (
            (
                _OPEN
                + ' version="1"><users><user entity="sip:a@x"/><user entity="sip:a@x"/></users>'
                "</conference-info>"
            ).encode(),
            "listed twice",
        ),
        (
            (
                _OPEN + ' version="1"><users><user entity="sip:a@x"><endpoint><status>a b</status>'
                "</endpoint></user></users></conference-info>"
            ).encode(),
            "endpoint status",
        ),
        (
            (
                _OPEN
                + ' version="1"><users><user entity="sip:a@x"><display-text>&#127;</display-text>'
                "</user></users></conference-info>"
            ).encode(),
            "control",
        ),
    ],
)
def test_hostile_or_broken_bodies(body: bytes, match: str) -> None:
    with pytest.raises(FormatError, match=match) as info:
        parse_conference_info(body)
    assert info.value.status_hint == 400


def test_oversize_body() -> None:
    body = (
        _OPEN + ' version="1"><users>' + '<user entity="sip:u@x" state="deleted"/>' * 2000
    ).encode()
    with pytest.raises(FormatError, match="exceeds the limit"):
        parse_conference_info(body)


def test_mode_in_another_namespace_is_ignored() -> None:
    body = (
        f'<conference-info xmlns="{CONFERENCE_INFO_NS}" xmlns:o="urn:other" entity="{CONF}" '
        'version="1"><users><user entity="sip:a@x" o:mode="video"/></users></conference-info>'
    ).encode()
    assert parse_conference_info(body).users[0].mode is None


@given(st.binary(max_size=400))
def test_any_bytes_parse_or_raise_format_error(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        parse_conference_info(data)


# --- version rules (RFC 4575 section 4.6) ----------------------------------------------


def test_first_full_state_is_taken() -> None:
    assert apply_update(None, FULL) == FULL


def test_full_state_users_are_normalized_to_full() -> None:
    odd = ConferenceInfo(CONF, 1, users=(dataclasses.replace(BOB, state="partial"),))
    assert apply_update(None, odd).users == (BOB,)


def test_newer_full_state_replaces() -> None:
    newer = ConferenceInfo(CONF, 5, "full", (CAROL,), active=True, user_count=1)
    assert apply_update(FULL, newer) == newer


@pytest.mark.parametrize("version", [0, 1])
def test_stale_documents_are_ignored(version: int) -> None:
    stale_full = ConferenceInfo(CONF, version, "full", ())
    stale_partial = ConferenceInfo(
        CONF, version, "partial", (UserInfo(BOB.entity, state="deleted"),)
    )
    assert apply_update(FULL, stale_full) is FULL
    assert apply_update(FULL, stale_partial) is FULL


def test_partial_update_merges_users() -> None:
    update = ConferenceInfo(
        CONF,
        2,
        "partial",
        (
            UserInfo(CAROL.entity, state="partial", status="connected"),
            UserInfo(BOB.entity, state="deleted"),
            UserInfo("sip:dan@example.com", state="full", status="pending", mode=Mode.WATCH),
        ),
        user_count=2,
    )
    result = apply_update(FULL, parse_conference_info(build_conference_info(update)))
    assert result.version == 2
    assert result.state == "full"
    assert result.users == (
        dataclasses.replace(CAROL, status="connected"),
        UserInfo("sip:dan@example.com", status="pending", mode=Mode.WATCH),
    )
    assert (result.active, result.user_count) == (True, 2)


def test_partial_user_replaced_when_sent_in_full() -> None:
    update = ConferenceInfo(
        CONF, 2, "partial", (UserInfo(BOB.entity, state="full", status="on-hold"),)
    )
    assert apply_update(FULL, update).users[0] == UserInfo(BOB.entity, status="on-hold")


def test_partial_update_for_an_unknown_user_adds_it() -> None:
    update = ConferenceInfo(
        CONF, 2, "partial", (UserInfo("sip:new@x", state="partial", status="alerting"),)
    )
    assert apply_update(FULL, update).users[-1] == UserInfo("sip:new@x", status="alerting")


def test_deleting_an_unknown_user_is_harmless() -> None:
    update = ConferenceInfo(CONF, 2, "partial", (UserInfo("sip:ghost@x", state="deleted"),))
    assert apply_update(FULL, update).users == FULL.users


def test_gap_in_versions_asks_for_a_resubscribe() -> None:
    update = ConferenceInfo(CONF, 3, "partial", ())
    with pytest.raises(FormatError, match="re-subscribe"):
        apply_update(FULL, update)


def test_partial_without_full_state() -> None:
    with pytest.raises(FormatError, match="without full state"):
        apply_update(None, ConferenceInfo(CONF, 1, "partial", ()))


def test_update_for_another_conference() -> None:
    with pytest.raises(FormatError, match="not for"):
        apply_update(FULL, ConferenceInfo("sip:other@x", 2, "partial", ()))


def test_deleted_conference_drops_everyone() -> None:
    result = apply_update(FULL, ConferenceInfo(CONF, 2, "deleted"))
    assert (result.users, result.active, result.user_count, result.version) == ((), False, 0, 2)


# --- property: random partial updates against a model -------------------------------

_ENTITIES = [f"sip:user{i}@example.com" for i in range(6)]
_STATUS = st.sampled_from(["connected", "disconnected", "pending", "dialing-out", "on-hold"])
_MEDIA = st.sampled_from([(), ("audio",), ("audio", "video"), ("video",)])
_CHANGE = st.one_of(
    st.builds(lambda e: UserInfo(e, state="deleted"), st.sampled_from(_ENTITIES)),
    st.builds(
        UserInfo,
        entity=st.sampled_from(_ENTITIES),
        display_name=st.none() | st.sampled_from(["Ann", "Bo & Co", "<Cy>"]),
        state=st.sampled_from(["full", "partial"]),
        status=st.none() | _STATUS,
        mode=st.none() | st.sampled_from(list(Mode)),
        media=_MEDIA,
    ),
)
# One update: changes to distinct users (a document names each user once).
_UPDATE = st.lists(_CHANGE, max_size=5, unique_by=lambda u: u.entity)


def _model_apply(model: dict[str, UserInfo], change: UserInfo) -> None:
    """The merge rules written out independently of apply_update."""
    if change.state == "deleted":
        model.pop(change.entity, None)
        return
    old = model.get(change.entity)
    if change.state == "full" or old is None:
        model[change.entity] = dataclasses.replace(change, state="full")
        return
    model[change.entity] = UserInfo(
        change.entity,
        change.display_name if change.display_name is not None else old.display_name,
        "full",
        change.status if change.status is not None else old.status,
        change.mode if change.mode is not None else old.mode,
        change.media if change.media else old.media,
    )


@given(st.lists(_UPDATE, max_size=4), st.lists(_UPDATE, max_size=12))
def test_random_partial_updates_match_the_model(
    initial: list[list[UserInfo]], updates: list[list[UserInfo]]
) -> None:
    model: dict[str, UserInfo] = {}
    for batch in initial:
        for change in batch:
            if change.state != "deleted":
                model[change.entity] = dataclasses.replace(change, state="full")
    full = ConferenceInfo(CONF, 10, "full", tuple(model.values()), active=True)
    view = apply_update(None, parse_conference_info(build_conference_info(full)))
    for version, batch in enumerate(updates, start=11):
        update = ConferenceInfo(CONF, version, "partial", tuple(batch), user_count=len(batch))
        view = apply_update(view, parse_conference_info(build_conference_info(update)))
        for change in batch:
            _model_apply(model, change)
        assert {u.entity: u for u in view.users} == model
        assert view.version == version
        assert view.user_count == len(batch)
    # A repeated (stale) NOTIFY changes nothing.
    if updates:
        assert apply_update(view, update) is view
