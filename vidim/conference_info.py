"""Conference state (RFC 4575 conference-info documents) and its version rules.

The built-in focus sends these in NOTIFYs of the conference event package
(full state first, then partial updates); the allocator reads them to tell
the requester who joined or left, and in which mode.  The model is the part
of RFC 4575 vidim uses: the conference entity and state, and per user a
display text, one endpoint (its status and media types) and the user's
vidim mode, an attribute in :data:`VIDIM_NS` (the schema allows
``anyAttribute namespace="##other"`` on ``<user>``).  Unknown elements are
ignored, as RFC 4575 asks of readers.

Partial updates (RFC 4575 section 4.6) merge by user entity: a user with
``state="deleted"`` goes, one with ``state="full"`` replaces, one with
``state="partial"`` changes only the fields it states.  So that "not stated"
is expressible, ``status``, ``display_name`` and ``mode`` are ``None`` when
absent and ``media`` empty; to clear a user's media, send that user in full.
"""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Literal

from .sip.errors import LocalProtocolError
from .vocabulary import Mode
from .xmlbody import (
    DEFAULT_MAX_XML_SIZE,
    VIDIM_NS,
    FormatError,
    check_xml_text,
    checked_uri,
    parse_xml,
    read_mode,
    read_name,
    read_uri,
    serialize,
)

__all__ = [
    "CONFERENCE_INFO_NS",
    "CONFERENCE_INFO_TYPE",
    "CONTENT_TYPE",
    "ENDPOINT_STATUSES",
    "VIDIM_NS",
    "ConferenceInfo",
    "ElementState",
    "FormatError",
    "UserInfo",
    "apply_update",
    "build_conference_info",
    "parse_conference_info",
]

CONFERENCE_INFO_TYPE = "application/conference-info+xml"
CONTENT_TYPE = CONFERENCE_INFO_TYPE
CONFERENCE_INFO_NS = "urn:ietf:params:xml:ns:conference-info"

ElementState = Literal["full", "partial", "deleted"]
_STATES: dict[str, ElementState] = {"full": "full", "partial": "partial", "deleted": "deleted"}
#: RFC 4575 section 5.6.2 endpoint statuses (others are accepted when read).
ENDPOINT_STATUSES = frozenset(
    {
        "pending",
        "dialing-out",
        "dialing-in",
        "alerting",
        "on-hold",
        "connected",
        "muted-via-focus",
        "disconnecting",
        "disconnected",
    }
)
_MAX_VERSION = 2**32 - 1  # xs:unsignedInt
_TOKEN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_CI = f"{{{CONFERENCE_INFO_NS}}}"
_MODE = f"{{{VIDIM_NS}}}mode"


@dataclass(frozen=True, slots=True)
class UserInfo:
    """One user of the conference as the focus reports it."""

    entity: str
    display_name: str | None = None
    state: ElementState = "full"
    #: Endpoint status (``connected``, ``disconnected``, ``pending``...); None: not stated.
    status: str | None = None
    mode: Mode | None = None
    #: Media types of the endpoint, e.g. ``("audio", "video")``.
    media: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ConferenceInfo:
    """A conference-info document: full state, or a partial update of it."""

    entity: str
    version: int
    state: ElementState = "full"
    users: tuple[UserInfo, ...] = ()
    active: bool | None = None
    user_count: int | None = None


# --- building ------------------------------------------------------------------------


def _checked_token(value: str, what: str) -> str:
    if not _TOKEN_RE.fullmatch(value):
        raise LocalProtocolError(f"{what} must be a token, not {value!r}")
    return value


def build_conference_info(info: ConferenceInfo) -> bytes:
    """Serialize ``info``; text is escaped, values that cannot be sent are refused."""
    if not 0 <= info.version <= _MAX_VERSION:
        raise LocalProtocolError(f"version {info.version} out of range")
    root = ET.Element(
        "conference-info",
        {
            "xmlns": CONFERENCE_INFO_NS,
            "xmlns:vidim": VIDIM_NS,
            "entity": checked_uri(info.entity, "conference entity"),
            "state": info.state,
            "version": str(info.version),
        },
    )
    if info.user_count is not None or info.active is not None:
        state = ET.SubElement(root, "conference-state")
        if info.user_count is not None:
            if info.user_count < 0:
                raise LocalProtocolError("user count must be non-negative")
            ET.SubElement(state, "user-count").text = str(info.user_count)
        if info.active is not None:
            ET.SubElement(state, "active").text = "true" if info.active else "false"
    if info.users:
        users = ET.SubElement(root, "users")
        for user in info.users:
            _build_user(users, user)
    return serialize(root)


def _build_user(parent: ET.Element, user: UserInfo) -> None:
    attrs = {"entity": checked_uri(user.entity, "user entity"), "state": user.state}
    if user.mode is not None:
        attrs["vidim:mode"] = str(user.mode)
    element = ET.SubElement(parent, "user", attrs)
    if user.display_name is not None:
        text = check_xml_text(user.display_name, "display name")
        ET.SubElement(element, "display-text").text = text
    if user.status is None and not user.media:
        return
    # One endpoint per user, named after the user: vidim does not track devices.
    endpoint = ET.SubElement(element, "endpoint", {"entity": user.entity})
    if user.status is not None:
        ET.SubElement(endpoint, "status").text = _checked_token(user.status, "endpoint status")
    for index, kind in enumerate(user.media, start=1):
        media = ET.SubElement(endpoint, "media", {"id": str(index)})
        ET.SubElement(media, "type").text = _checked_token(kind, "media type")


# --- parsing -------------------------------------------------------------------------


def parse_conference_info(body: bytes, *, max_size: int = DEFAULT_MAX_XML_SIZE) -> ConferenceInfo:
    """Read a conference-info document; :class:`FormatError` (400) when it is not one."""
    root = parse_xml(body, max_size=max_size)
    if root.tag != _CI + "conference-info":
        raise FormatError(f"expected <conference-info> in {CONFERENCE_INFO_NS}, got {root.tag}")
    entity = _read_entity(root.get("entity"), "conference-info entity")
    version_text = root.get("version")
    if version_text is None:
        raise FormatError("<conference-info> without a version attribute")
    version = _unsigned(version_text, "version")
    if version > _MAX_VERSION:
        raise FormatError(f"version {version_text} out of range")
    state = _state(root.get("state"), "conference-info")
    active: bool | None = None
    user_count: int | None = None
    conference_state = root.find(_CI + "conference-state")
    if conference_state is not None:
        count = conference_state.find(_CI + "user-count")
        if count is not None:
            user_count = _unsigned(count.text or "", "user-count")
        flag = conference_state.find(_CI + "active")
        if flag is not None:
            active = _boolean(flag.text or "", "active")
    users: list[UserInfo] = []
    seen: set[str] = set()
    users_element = root.find(_CI + "users")
    if users_element is not None:
        for element in users_element.findall(_CI + "user"):
            user = _parse_user(element)
            if user.entity in seen:
                raise FormatError(f"user {user.entity} listed twice")
            seen.add(user.entity)
            users.append(user)
    return ConferenceInfo(
        entity=entity,
        version=version,
        state=state,
        users=tuple(users),
        active=active,
        user_count=user_count,
    )


def _parse_user(element: ET.Element) -> UserInfo:
    entity = _read_entity(element.get("entity"), "user entity")
    mode_text = element.get(_MODE)
    mode = read_mode(mode_text, f"user {entity}") if mode_text is not None else None
    display = element.find(_CI + "display-text")
    display_name = read_name(display.text or "", "display-text") if display is not None else None
    status: str | None = None
    media: list[str] = []
    endpoint = element.find(_CI + "endpoint")
    if endpoint is not None:
        status_element = endpoint.find(_CI + "status")
        if status_element is not None:
            status = _read_token(status_element.text, "endpoint status")
        for media_element in endpoint.findall(_CI + "media"):
            type_element = media_element.find(_CI + "type")
            if type_element is not None:
                media.append(_read_token(type_element.text, "media type"))
    return UserInfo(
        entity=entity,
        display_name=display_name,
        state=_state(element.get("state"), f"user {entity}"),
        status=status,
        mode=mode,
        media=tuple(media),
    )


def _read_entity(value: str | None, what: str) -> str:
    if not value:
        raise FormatError(f"{what} missing")
    read_name(value, what)
    return read_uri(value, what)


def _read_token(value: str | None, what: str) -> str:
    text = (value or "").strip()
    if not _TOKEN_RE.fullmatch(text):
        raise FormatError(f"bad {what} {text[:40]!r}")
    return text


def _unsigned(text: str, what: str) -> int:
    value = text.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        raise FormatError(f"{what} must be an unsigned integer, not {text[:20]!r}")
    return int(value)


def _boolean(text: str, what: str) -> bool:
    value = text.strip()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise FormatError(f"{what} must be a boolean, not {text[:20]!r}")


def _state(value: str | None, what: str) -> ElementState:
    if value is None:
        return "full"  # the schema's default
    state = _STATES.get(value)
    if state is None:
        raise FormatError(f"bad state {value[:20]!r} on {what}")
    return state


# --- version rules -------------------------------------------------------------------


def apply_update(current: ConferenceInfo | None, update: ConferenceInfo) -> ConferenceInfo:
    """Fold one received document into the subscriber's view (RFC 4575 section 4.6).

    The result is always a ``full`` view.  A ``full`` document replaces the
    view unless it is not newer.  A ``partial`` one must be exactly one
    version ahead: it then merges user by user (see the module docstring).
    A document that is not newer than the view is stale (a late or repeated
    NOTIFY) and the view is returned unchanged, as RFC 4575 says to discard
    it.  A partial update with no view yet, or one that skips versions,
    raises :class:`FormatError`: a notification was missed and the
    subscriber must re-SUBSCRIBE for full state (start a new subscription's
    view from ``None``).  ``deleted`` means the conference is gone: the view
    keeps no users.
    """
    if current is not None:
        if update.entity != current.entity:
            raise FormatError(f"update for {update.entity}, not for {current.entity}")
        if update.version <= current.version:
            return current
    if update.state == "full":
        return dataclasses.replace(update, users=tuple(_as_full(u) for u in update.users))
    if current is None:
        raise FormatError(
            f"{update.state} conference-info version {update.version} without full state"
        )
    if update.version != current.version + 1:
        raise FormatError(
            f"conference-info version {update.version} after {current.version}: "
            "a notification was missed, re-subscribe for full state"
        )
    if update.state == "deleted":
        return ConferenceInfo(
            entity=current.entity, version=update.version, state="full", active=False, user_count=0
        )
    users = {user.entity: user for user in current.users}
    for change in update.users:
        if change.state == "deleted":
            users.pop(change.entity, None)
        elif change.state == "full" or change.entity not in users:
            users[change.entity] = _as_full(change)
        else:
            users[change.entity] = _merge_user(users[change.entity], change)
    return ConferenceInfo(
        entity=current.entity,
        version=update.version,
        state="full",
        users=tuple(users.values()),
        active=update.active if update.active is not None else current.active,
        user_count=update.user_count if update.user_count is not None else current.user_count,
    )


def _as_full(user: UserInfo) -> UserInfo:
    return user if user.state == "full" else dataclasses.replace(user, state="full")


def _merge_user(old: UserInfo, change: UserInfo) -> UserInfo:
    return UserInfo(
        entity=old.entity,
        display_name=change.display_name if change.display_name is not None else old.display_name,
        state="full",
        status=change.status if change.status is not None else old.status,
        mode=change.mode if change.mode is not None else old.mode,
        media=change.media or old.media,
    )
