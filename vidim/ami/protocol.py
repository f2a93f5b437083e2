"""The Asterisk Manager Interface (AMI) on the wire, sans-IO.

AMI is a line protocol over TCP: after a one-line greeting
(``Asterisk Call Manager/<version>``), each message is a block of
``Key: Value`` lines ended by an empty line.  The client sends *actions*
(``Action: DBPut``), each with an ``ActionID`` that its *response* repeats;
Asterisk also sends *events* (``Event: ConfbridgeJoin``) at any time.

:class:`AmiConnection` turns actions into bytes and received bytes into
:class:`AmiGreeting`, :class:`AmiResponse` and :class:`AmiEvent`, in the
manner of h11: no sockets, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import count

__all__ = [
    "AmiConnection",
    "AmiEvent",
    "AmiGreeting",
    "AmiMessage",
    "AmiProtocolError",
    "AmiResponse",
]

#: A key or value that could end its line or its block and so forge another field.
_UNSAFE = re.compile(r"[\r\n]")
#: The empty line that ends a block (Asterisk writes CRLF; a bare LF is taken too).
_BLOCK_END = re.compile(rb"\r?\n\r?\n")
#: A block bigger than this is not AMI: the peer is not Asterisk, or broken.
MAX_BLOCK = 65536


class AmiProtocolError(Exception):
    """Bytes that are not AMI, or an action that cannot be written safely."""


@dataclass(frozen=True, kw_only=True, slots=True)
class AmiGreeting:
    """The first line Asterisk sends: who is there."""

    version: str


@dataclass(frozen=True, kw_only=True, slots=True)
class AmiMessage:
    """Fields of one block, in order (a key may repeat, e.g. ``ChanVariable``)."""

    fields: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str | None:
        """The first value of ``key`` (keys compare without case), or None."""
        wanted = key.lower()
        return next((v for k, v in self.fields if k.lower() == wanted), None)

    @property
    def variables(self) -> dict[str, str]:
        """The channel variables manager.conf's ``channelvars`` adds (``ChanVariable: K=V``)."""
        found = {}
        for key, value in self.fields:
            if key.lower() == "chanvariable" and "=" in value:
                name, _, text = value.partition("=")
                found[name] = text
        return found


@dataclass(frozen=True, kw_only=True, slots=True)
class AmiResponse(AmiMessage):
    """The answer to one action."""

    action_id: str
    success: bool
    message: str
    #: The action it answers (``DBPut``), when it was sent on this connection.
    action: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AmiEvent(AmiMessage):
    """Something Asterisk reports on its own (``ConfbridgeJoin``)."""

    name: str


@dataclass(slots=True)
class AmiConnection:
    """One AMI connection, client side."""

    _buffer: bytearray = field(default_factory=bytearray)
    _greeted: bool = False
    _ids: count[int] = field(default_factory=lambda: count(1))
    #: Action name of each ActionID not yet answered.
    pending: dict[str, str] = field(default_factory=dict)

    def action(self, name: str, *fields: tuple[str, str]) -> tuple[str, bytes]:
        """An action ready to write, and its ActionID (the response carries it)."""
        action_id = str(next(self._ids))
        lines = [("Action", name), ("ActionID", action_id), *fields]
        for key, value in lines:
            if _UNSAFE.search(key) or _UNSAFE.search(value) or ":" in key:
                raise AmiProtocolError(f"unsafe field in AMI action {name}: {key!r}")
        self.pending[action_id] = name
        text = "".join(f"{key}: {value}\r\n" for key, value in lines) + "\r\n"
        return action_id, text.encode("utf-8")

    def receive_data(self, data: bytes) -> list[AmiGreeting | AmiResponse | AmiEvent]:
        """Take received bytes; return every message they complete, in order."""
        self._buffer += data
        out: list[AmiGreeting | AmiResponse | AmiEvent] = []
        if not self._greeted:
            end = self._buffer.find(b"\n")
            if end < 0:
                self._check_size()
                return out
            line = bytes(self._buffer[:end]).decode("utf-8", "replace").strip()
            del self._buffer[: end + 1]
            if not line.startswith("Asterisk Call Manager/"):
                raise AmiProtocolError(f"not an AMI greeting: {line[:80]!r}")
            self._greeted = True
            out.append(AmiGreeting(version=line.partition("/")[2]))
        while (block := self._next_block()) is not None:
            message = self._message(block)
            if message is not None:
                out.append(message)
        self._check_size()
        return out

    def _check_size(self) -> None:
        if len(self._buffer) > MAX_BLOCK:
            raise AmiProtocolError(f"an AMI message longer than {MAX_BLOCK} octets")

    def _next_block(self) -> list[str] | None:
        end = _BLOCK_END.search(self._buffer)
        if end is None:
            return None
        block = bytes(self._buffer[: end.start()]).decode("utf-8", "replace")
        del self._buffer[: end.end()]
        return block.splitlines()

    def _message(self, lines: list[str]) -> AmiResponse | AmiEvent | None:
        fields = []
        for line in lines:
            key, colon, value = line.partition(":")
            if colon:
                fields.append((key.strip(), value.strip()))
            # A line without a colon (old ``Command`` output) carries no field.
        if not fields:
            return None
        kind, first = fields[0]
        if kind.lower() == "event":
            return AmiEvent(fields=tuple(fields), name=first)
        if kind.lower() == "response":
            plain = AmiMessage(fields=tuple(fields))
            action_id = plain.get("ActionID") or ""
            return AmiResponse(
                fields=tuple(fields),
                action_id=action_id,
                success=first.lower() in ("success", "follows", "goodbye"),
                message=plain.get("Message") or "",
                action=self.pending.pop(action_id, None),
            )
        raise AmiProtocolError(f"an AMI block that is neither a response nor an event: {kind!r}")
