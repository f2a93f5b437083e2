"""What vidim asks of Asterisk over AMI, and what it learns from it; sans-IO.

With the ``asterisk`` profile, SIP carries the conference (the anchor call and
the invitees' calls) but not everything around it:

* a re-INVITE after ``/add`` does not run the dialplan again, so the new
  invitees' keys are written to AstDB here (``DBPut vidim/<id> <key> <mode>``);
* a conference that ends has its bridge emptied (``ConfbridgeKick <id> all``,
  a second guarantee beside the anchor's BYE) and its keys deleted
  (``DBDelTree vidim/<id>``);
* ``ConfbridgeJoin`` and ``ConfbridgeLeave`` say who came and went: each caller's
  key is the ``VIDIM_KEY`` channel variable the dialplan sets (manager.conf's
  ``channelvars = VIDIM_KEY`` puts it in the events), reported to the
  allocator as :class:`Presence`.

:class:`AsteriskControl` takes the allocator's events and the AMI bytes, and
gives bytes to write and presences to report; the asyncio glue is
:mod:`vidim.aio.ami`.  The AstDB layout is the one ``examples/asterisk/``
reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..allocator import Conference
from ..allocator.events import (
    AllocatorEvent,
    ConferenceEnded,
    ConferenceFailed,
    InvitationSent,
)
from .protocol import AmiConnection, AmiEvent, AmiGreeting, AmiResponse

__all__ = [
    "ANCHOR_KEY",
    "AmiTrouble",
    "AsteriskControl",
    "LoggedIn",
    "Presence",
    "astdb_family",
    "presence_of",
]

#: ``VIDIM_KEY`` of the anchor's own channel in the dialplan: not a participant.
ANCHOR_KEY = "anchor"


def astdb_family(conference_id: str) -> str:
    """The AstDB family holding a conference's keys (``examples/asterisk/extensions.conf``)."""
    return f"vidim/{conference_id}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Presence:
    """A caller with a conference key joined (``present``) or left the bridge."""

    conference_id: str
    credential: str
    present: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class LoggedIn:
    """Asterisk accepted the login: actions go through from now on."""

    version: str


@dataclass(frozen=True, kw_only=True, slots=True)
class AmiTrouble:
    """An action Asterisk refused (or a login it refused: ``fatal``), for the log."""

    action: str
    message: str
    fatal: bool = False


@dataclass(slots=True)
class AsteriskControl:
    """One AMI session's worth of vidim's dealings with Asterisk."""

    username: str
    secret: str
    connection: AmiConnection = field(default_factory=AmiConnection)
    logged_in: bool = False
    _version: str = ""
    _login_id: str | None = None
    #: Actions asked before the login was accepted, in order.
    _waiting: list[tuple[str, tuple[tuple[str, str], ...]]] = field(default_factory=list)
    _out: bytearray = field(default_factory=bytearray)

    def connection_lost(self) -> None:
        """The socket is gone: actions asked from now on wait for the next login."""
        self.logged_in = False
        self._out.clear()

    def connection_made(self) -> None:
        """A new socket: a new greeting and login come; waiting actions follow them."""
        self.connection_lost()
        self.connection = AmiConnection()
        self._login_id = None

    def data_to_send(self) -> bytes:
        """What to write to the AMI socket now (and forget)."""
        data = bytes(self._out)
        self._out.clear()
        return data

    # -- from Asterisk ---------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[Presence | LoggedIn | AmiTrouble]:
        """AMI bytes in; what the application should act on or log out.

        Raises :class:`AmiProtocolError` for bytes that are not AMI.
        """
        results: list[Presence | LoggedIn | AmiTrouble] = []
        for message in self.connection.receive_data(data):
            if isinstance(message, AmiGreeting):
                self._version = message.version
                self._login_id = self._write(
                    "Login",
                    (("Username", self.username), ("Secret", self.secret), ("Events", "call")),
                )
            elif isinstance(message, AmiResponse):
                results.extend(self._on_response(message))
            else:
                presence = presence_of(message)
                if presence is not None:
                    results.append(presence)
        return results

    def _on_response(self, response: AmiResponse) -> list[LoggedIn | AmiTrouble]:
        if response.action_id == self._login_id:
            if not response.success:
                return [AmiTrouble(action="Login", message=response.message, fatal=True)]
            self.logged_in = True
            for name, fields in self._waiting:
                self._write(name, fields)
            self._waiting.clear()
            return [LoggedIn(version=self._version)]
        if response.success or _harmless(response):
            return []
        return [AmiTrouble(action=response.action or "?", message=response.message)]

    # -- from the allocator -----------------------------------------------------------
    def on_allocator_event(self, event: AllocatorEvent, conference: Conference | None) -> None:
        """React to one allocator event; ``conference`` is its live record, if any."""
        if isinstance(event, InvitationSent) and conference is not None:
            # The anchor INVITE's dialplan stored the first keys already; after
            # /add it does not run again (a re-INVITE), so each invitee's key is
            # written as its invitation goes out.
            self.store_keys(conference.id, ((p.credential, p.mode.value)
                                            for p in conference.participants
                                            if p.uri == event.invitee))  # fmt: skip
        elif isinstance(event, ConferenceEnded | ConferenceFailed):
            self.end(event.conference_id)

    def store_keys(self, conference_id: str, keys: Iterable[tuple[str, str]]) -> None:
        """``DBPut`` each (key, mode) of a conference."""
        family = astdb_family(conference_id)
        for key, mode in keys:
            self._ask("DBPut", (("Family", family), ("Key", key), ("Val", mode)))

    def end(self, conference_id: str) -> None:
        """Empty the bridge and delete the conference's keys."""
        self._ask("ConfbridgeKick", (("Conference", conference_id), ("Channel", "all")))
        self._ask("DBDelTree", (("Family", astdb_family(conference_id)),))

    def _ask(self, name: str, fields: tuple[tuple[str, str], ...]) -> None:
        if self.logged_in:
            self._write(name, fields)
        else:
            self._waiting.append((name, fields))

    def _write(self, name: str, fields: tuple[tuple[str, str], ...]) -> str:
        action_id, data = self.connection.action(name, *fields)
        self._out += data
        return action_id


def presence_of(event: AmiEvent) -> Presence | None:
    """A participant's join or leave, from a ConfBridge event; None for anything else."""
    if event.name not in ("ConfbridgeJoin", "ConfbridgeLeave"):
        return None
    conference_id = event.get("Conference")
    key = event.variables.get("VIDIM_KEY")
    if not conference_id or not key or key == ANCHOR_KEY:
        return None
    return Presence(
        conference_id=conference_id, credential=key, present=event.name == "ConfbridgeJoin"
    )


def _harmless(response: AmiResponse) -> bool:
    """Refusals that mean "already done": the bridge or the keys were gone already."""
    if response.action == "ConfbridgeKick":
        return True  # the anchor's BYE ended the bridge first: nothing to kick
    return response.action == "DBDelTree" and "not found" in response.message.lower()
