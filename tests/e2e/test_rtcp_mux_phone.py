"""Issue 15, RTCP multiplexing (RFC 5761) end to end: a baresip that muxes hears the mix.

Real Kamailio, the real vidim-daemon, a pjsua2 phone (alice, playing a tone) and baresip
with ``rtcp_mux yes`` (bob) in one ``audio`` conference on the built-in focus.  The focus
answers bob's ``a=rtcp-mux``; bob then sends RTP and RTCP to one focus port and takes
both from it.  What bob decodes is recorded by baresip's ``sndfile`` module: alice's tone
must be in it; and alice (no mux) hears bob's own tone (``ausine``, 440 Hz).
"""

from __future__ import annotations

import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from e2e_peers import DOMAIN, Site, header

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ALICE_TONE = 700.0
BOB_TONE = 440.0  # baresip's ausine,440
#: Amplitude (int16 units) above which a tone is present in a 100 ms window.
PRESENT = 1500.0
SECONDS = 4.0  # of audio each records

T = TypeVar("T")


def amplitude(samples: np.ndarray, rate: int, frequency: float) -> np.ndarray:
    """The tone's amplitude in each 100 ms window."""
    window = rate // 10
    count = len(samples) // window
    frames = samples[: count * window].reshape(count, window)
    hann = np.hanning(window)
    probe = hann * np.exp(-2j * np.pi * frequency * np.arange(window) / rate)
    return np.asarray(2 * np.abs(frames @ probe) / hann.sum())


def wav_samples(path: Path) -> tuple[np.ndarray, int]:
    """The first channel of a 16-bit WAV file, and its rate."""
    with wave.open(str(path)) as wav:
        rate, channels = wav.getframerate(), wav.getnchannels()
        assert wav.getsampwidth() == 2
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return data[::channels].astype(float), rate


def poll(what: str, found: Callable[[], T | None], timeout: float = 15.0) -> T:
    """Bounded: until ``found()`` gives something (a file another process writes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := found()) is not None:
            return value
        time.sleep(0.2)  # nothing to wait on but the file system; bounded by the deadline
    raise AssertionError(f"{what}: not within {timeout} s")


def dump_with(directory: Path, seconds: float) -> Path | None:
    """baresip's decoded-audio dump once it holds ``seconds`` of 8 kHz mono audio."""
    for path in directory.glob("*dec.wav"):
        if path.stat().st_size > 44 + int(seconds * 8000) * 2:
            return path
    return None


def closed_wav(path: Path) -> Path | None:
    """``path`` once sndfile closed it (the header then has the data size)."""
    try:
        with wave.open(str(path)) as wav:
            return path if wav.getnframes() > 0 else None
    except (wave.Error, EOFError):
        return None


def test_a_muxing_baresip_and_a_plain_pjsua2_hear_each_other(site: Site) -> None:
    site.start()
    alice_wav = site.workdir / "alice.wav"
    alice = site.phone("alice", "--tone", str(ALICE_TONE), "--record", str(alice_wav))
    bob = site.baresip("bob", rtcp_mux=True, record=True)

    status = alice.message(f"sip:bob@{DOMAIN}", "talk?", {"X-Vidim-Mode": "audio"})
    assert status["code"] == 202, status
    ready = alice.wait_im(lambda e: header(e["headers"], "X-Vidim-Conference") is not None)
    own = (header(ready["headers"], "X-Vidim-Conference") or "")[1:].partition(">")[0]
    alice.send(cmd="call", uri=own)
    ok = bob.join_invitation()
    alice.wait("call_state", lambda e: e["state"] == "CONFIRMED")

    # bob offered a=rtcp-mux and the focus answered it; alice's answer has none.
    offer = bob.wait_sip(
        lambda m: m.direction == "send" and m.method == "INVITE" and "m=audio" in m.body,
        "INVITE with SDP",
    )  # fmt: skip
    assert "a=rtcp-mux" in offer.body, offer.body
    assert "a=rtcp-mux" in ok.body, ok.body
    alice_answer = alice.wait("call_sdp", lambda e: e["kind"] == "remote_answer")
    assert "a=rtcp-mux" not in alice_answer["sdp"]

    # Both record SECONDS of what they receive; then bob hangs up, which closes his dump.
    alice.send(cmd="record")
    alice.wait("recording")
    dump = poll("bob's decoded audio", lambda: dump_with(bob.sound_dir, SECONDS + 1))
    start = alice.mark()
    alice.send(cmd="stop_recording")
    alice.wait("recording_stopped", start=start)
    bob.command("hangup")
    bob.wait_event("CALL_CLOSED")
    # bob (mux) hears alice's tone, and alice (no mux) bob's, in 90% of 100 ms windows
    # after the first second.
    for name, path, tone in (("bob", dump, ALICE_TONE), ("alice", alice_wav, BOB_TONE)):
        samples, rate = wav_samples(
            poll(f"{name}'s recording closed", lambda p=path: closed_wav(p))
        )
        heard = amplitude(samples[rate:], rate, tone)
        assert len(heard) >= 20, (name, len(samples) / rate)
        share = float(np.mean(heard > PRESENT))
        assert share >= 0.9, (name, share, np.round(heard))
