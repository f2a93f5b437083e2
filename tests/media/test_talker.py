"""The active speaker on a virtual clock: hysteresis, who may be chosen, who sees whom."""

from __future__ import annotations

import pytest

from vidim.focus.talker import ActiveSpeaker, SpeakerConfig
from vidim.vocabulary import Mode

LOUD, SOFT, SILENT = 20, 35, 127


def speakers(*keys: str, config: SpeakerConfig | None = None) -> ActiveSpeaker:
    talker = ActiveSpeaker(config)
    for key in keys:
        talker.set_mode(key, Mode.VIDEO)
    return talker


def talk(talker: ActiveSpeaker, levels: dict[str, int], start: float, end: float) -> float | None:
    """Levels every 100 ms from ``start`` to ``end``; the time the speaker changed, if it did."""
    changed = None
    for step in range(round((end - start) * 10)):
        now = start + step / 10
        for key, level in levels.items():
            if talker.level(key, level, now) and changed is None:
                changed = now
    return changed


def test_first_to_join_is_shown_until_someone_talks() -> None:
    talker = speakers("alice", "bob", "carol")
    assert talker.order == ("alice", "bob", "carol")
    assert talker.shown_to("bob") == "alice"
    assert talker.shown_to("alice") == "bob"  # the speaker sees the previous one


def test_the_loudest_becomes_speaker_after_the_hysteresis_not_before() -> None:
    talker = speakers("alice", "bob", "carol")
    changed = talk(talker, {"carol": LOUD, "alice": SOFT}, 0.0, 3.0)
    assert changed == pytest.approx(1.5)
    assert talker.order == ("carol", "alice", "bob")
    assert talker.shown_to("carol") == "alice"
    assert talker.shown_to("bob") == "carol"


def test_the_timer_makes_the_speaker_when_the_hysteresis_ends_between_levels() -> None:
    talker = speakers("alice", "bob", config=SpeakerConfig(hysteresis=1.25))
    talk(talker, {"bob": LOUD}, 0.0, 1.2)
    assert talker.speaker == "alice"
    timer = talker.get_timer()
    assert timer == pytest.approx(1.25)
    assert not talker.decide(1.24)
    assert talker.decide(timer)
    assert talker.speaker == "bob"
    assert talker.get_timer() is None


def test_a_break_starts_the_hysteresis_over() -> None:
    talker = speakers("alice", "bob")
    talk(talker, {"bob": LOUD}, 0.0, 1.0)
    talk(talker, {"bob": SILENT}, 1.0, 1.1)
    assert talk(talker, {"bob": LOUD}, 1.1, 2.5) is None
    assert talker.speaker == "alice"
    assert talk(talker, {"bob": LOUD}, 2.5, 3.0) == pytest.approx(2.6)


def test_a_louder_challenger_restarts_the_hysteresis() -> None:
    talker = speakers("alice", "bob", "carol")
    talk(talker, {"bob": SOFT}, 0.0, 1.0)
    assert talk(talker, {"bob": SOFT, "carol": LOUD}, 1.0, 2.4) is None
    assert talk(talker, {"bob": SOFT, "carol": LOUD}, 2.4, 3.0) == pytest.approx(2.5)
    assert talker.speaker == "carol"


def test_background_noise_and_stale_levels_do_not_count() -> None:
    talker = speakers("alice", "bob")
    assert talk(talker, {"bob": 60}, 0.0, 3.0) is None  # below speech_level (50)
    talker.level("bob", LOUD, 3.0)  # then nothing: the phone stopped sending
    assert not talker.decide(4.6)
    assert talker.speaker == "alice"


@pytest.mark.parametrize("mode", [Mode.AUDIO, Mode.WATCH, Mode.CHAT])
def test_only_video_participants_become_the_speaker(mode: Mode) -> None:
    talker = speakers("alice", "bob")
    talker.set_mode("walt", mode)
    assert talk(talker, {"walt": 0, "bob": SOFT}, 0.0, 3.0) == pytest.approx(1.5)
    assert talker.speaker == "bob"
    assert "walt" not in talker.order


def test_when_the_speaker_leaves_the_previous_one_takes_its_place() -> None:
    talker = speakers("alice", "bob", "carol")
    talk(talker, {"carol": LOUD}, 0.0, 2.0)
    talker.remove("carol")
    assert talker.order == ("alice", "bob")
    assert talker.shown_to("bob") == "alice"


def test_a_mode_lowered_to_audio_leaves_the_candidates() -> None:
    talker = speakers("alice", "bob")
    talker.set_mode("alice", Mode.AUDIO)
    assert talker.order == ("bob",)
    assert talker.shown_to("bob") is None
    assert talker.shown_to("alice") == "bob"
