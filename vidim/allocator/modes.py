"""Communication modes, and how a mode is lowered to what an invitee can do."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = ["Capabilities", "Mode", "effective_mode"]


class Mode(StrEnum):
    """What media an invitee gets (DESIGN.md, "Communication modes")."""

    #: audio and video, send and receive
    VIDEO = "video"
    #: audio only, send and receive
    AUDIO = "audio"
    #: audio and video, receive only
    WATCH = "watch"
    #: no media: the invitation and roster updates by IM only
    CHAT = "chat"

    @property
    def has_audio(self) -> bool:
        return self is not Mode.CHAT

    @property
    def has_video(self) -> bool:
        return self in (Mode.VIDEO, Mode.WATCH)

    @property
    def sends_media(self) -> bool:
        return self in (Mode.VIDEO, Mode.AUDIO)


#: Each mode's text, looked up in C (``mode.value`` is a Python-level property of every Enum).
MODE_TEXT: Final[dict[Mode, str]] = {mode: mode.value for mode in Mode}


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an invitee's device can do, as probing found out."""

    audio: bool
    video: bool

    @classmethod
    def unreachable(cls) -> Capabilities:
        """Nothing answered: reachable by IM only."""
        return cls(audio=False, video=False)


def effective_mode(requested: Mode, capabilities: Capabilities | None) -> Mode:
    """Lower ``requested`` to what the device can do (video -> audio -> chat).

    ``None`` means nothing is known (probing is off): the request stands.  A
    mode is never raised, and ``watch`` never becomes a mode that sends: a
    watcher without video still only receives (its audio), and one without
    audio is reached by IM only.
    """
    if capabilities is None or requested is Mode.CHAT:
        return requested
    if not capabilities.audio:
        return Mode.CHAT
    if requested is Mode.VIDEO and not capabilities.video:
        return Mode.AUDIO
    return requested
