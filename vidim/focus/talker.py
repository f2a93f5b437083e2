"""Who is talking: the active speaker of a conference, from audio levels and the time.

The video switch (:mod:`.video`) shows every receiver the active speaker,
and the speaker the previous one.  This module decides who that is, and
nothing else: levels (RFC 6464, -dBov, as the mixer's
:class:`~vidim.focus.mixer.AudioLevelMeasured` events carry them) and the
time in; the speaking order out.

Only participants that may send video (mode ``video``) are candidates; a
level from anybody else is ignored, so an ``audio`` or ``watch`` participant
never becomes the video source however loud it is.

The candidates are kept in a *recency order*: the speaker first, the
previous speaker second, then the others by when they last spoke (a
newcomer goes last).  A candidate becomes the speaker (moves to the front)
once it has been the loudest talker, above ``speech_level``, for
``hysteresis`` seconds without a break: a cough or a word of assent does not
move the picture.  When the speaker leaves, the previous one takes its
place at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..vocabulary import Mode

__all__ = ["ActiveSpeaker", "SpeakerConfig"]


@dataclass(frozen=True, kw_only=True, slots=True)
class SpeakerConfig:
    """How the speaker is chosen; the defaults are what the focus uses."""

    hysteresis: float = 1.5
    """Seconds a candidate must stay the loudest talker before it becomes the speaker."""
    speech_level: int = 50
    """The faintest level (-dBov) that counts as talking; fainter is background noise."""
    level_timeout: float = 0.5
    """A level older than this counts as silence (a phone that stopped sending)."""


@dataclass(slots=True)
class _Level:
    level: int
    at: float


class ActiveSpeaker:
    """The speaking order of one conference's video candidates (see the module docstring)."""

    def __init__(self, config: SpeakerConfig | None = None) -> None:
        self.config = config or SpeakerConfig()
        self._order: list[str] = []
        self._levels: dict[str, _Level] = {}
        self._challenger: str | None = None
        self._challenger_since = 0.0

    @property
    def order(self) -> tuple[str, ...]:
        """The candidates, the speaker first, then the previous speaker, and so on."""
        return tuple(self._order)

    @property
    def speaker(self) -> str | None:
        return self._order[0] if self._order else None

    def shown_to(self, receiver: str, can_see: Callable[[str], bool] | None = None) -> str | None:
        """Whose video ``receiver`` sees: the speaker, or the previous one if it is the speaker.

        ``can_see`` narrows the choice (a receiver can only decode some sources):
        the first in speaking order that it accepts.
        """
        others = (key for key in self._order if key != receiver)
        return next((key for key in others if can_see is None or can_see(key)), None)

    def set_mode(self, key: str, mode: Mode, *, video_stream: bool = True) -> None:
        """A participant joined or changed mode (or its SDP gained or lost a video stream):
        a candidate if its mode is ``video`` and it has a video stream."""
        if mode is Mode.VIDEO and video_stream:
            if key not in self._order:
                self._order.append(key)
        else:
            self.remove(key)

    def remove(self, key: str) -> None:
        if key in self._order:
            self._order.remove(key)
        self._levels.pop(key, None)
        if self._challenger == key:
            self._challenger = None

    def level(self, key: str, level: int, now: float) -> bool:
        """A participant's level; True when that made a new speaker."""
        if key not in self._order:
            return False
        self._levels[key] = _Level(level, now)
        return self.decide(now)

    def get_timer(self) -> float | None:
        """When a challenger becomes the speaker if it keeps talking (None: no challenger)."""
        if self._challenger is None:
            return None
        return self._challenger_since + self.config.hysteresis

    def decide(self, now: float) -> bool:
        """Apply the rule at ``now``; True when the speaker changed."""
        loudest = self._loudest(now)
        if loudest is None or loudest == self.speaker:
            self._challenger = None
            return False
        if loudest != self._challenger:
            self._challenger, self._challenger_since = loudest, now
        if now < self._challenger_since + self.config.hysteresis:  # as get_timer says
            return False
        self._order.remove(loudest)
        self._order.insert(0, loudest)
        self._challenger = None
        return True

    def _loudest(self, now: float) -> str | None:
        """The candidate with the highest level that counts as talking, if any."""
        best: tuple[int, int] | None = None
        loudest = None
        for rank, key in enumerate(self._order):
            heard = self._levels.get(key)
            if heard is None or now - heard.at > self.config.level_timeout:
                continue
            if heard.level > self.config.speech_level:
                continue
            # Lower level is louder; on a tie the one who spoke more recently keeps it.
            if best is None or (heard.level, rank) < best:
                best, loudest = (heard.level, rank), key
        return loudest
