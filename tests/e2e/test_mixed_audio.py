"""Issue 15: phones in one conference on the built-in focus hear each other (the mixer).

Real Kamailio, the real vidim-daemon and one pjsua2 process per phone
(examples/softphone.py --json --tone HZ --record FILE), and for Opus (which the pjsua2
wheel lacks) one baresip offering Opus only, playing ``ausine`` and dumping what it
decodes with the ``sndfile`` filter.  Each phone plays its own tone and records what it
receives; the WAV files are analysed with numpy, in 100 ms windows from one second after
the recording started: every speaker's recording holds both other speakers' tones in at
least 90% of the windows, never its own, and never the tone of the ``watch`` participant
(whose audio the focus drops).
"""

from __future__ import annotations

import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from baresip_peer import Baresip
from e2e_peers import DOMAIN, Phone, Site, header

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

TONES = {"alice": 450.0, "bob": 750.0, "carol": 1250.0, "dave": 1650.0}
#: Amplitude (int16 units) above which a tone is present in a window; pjsua2's
#: ToneGenerator plays at about 12000, baresip's ausine at 16383, and nothing else
#: makes a pure tone.
PRESENT = 1500.0
#: At most this much of a tone that must be absent (the G.711 noise floor is far below).
ABSENT = 300.0
SECONDS = 4.0  # of audio received by each phone before the recordings stop
#: What the baresip peer offers: Opus alone (RFC 7587 names it so whatever it carries).
OPUS = "opus/48000/2"


def tone_amplitudes(path: Path, frequencies: dict[str, float]) -> dict[str, np.ndarray]:
    """Each frequency's amplitude in every 100 ms window after the first second.

    16-bit WAV at any rate; stereo (baresip's Opus dump) is averaged to mono.
    """
    with wave.open(str(path)) as wav:
        rate, channels = wav.getframerate(), wav.getnchannels()
        assert wav.getsampwidth() == 2, path.name
        interleaved = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    samples = interleaved.reshape(-1, channels).astype(float).mean(axis=1)
    window = rate // 10
    samples = samples[rate:]  # after the first second
    count = len(samples) // window
    assert count >= 20, f"{path.name}: only {len(samples) / rate:.1f} s after the first second"
    frames = samples[: count * window].reshape(count, window)
    hann = np.hanning(window)
    t = np.arange(window) / rate
    out = {}
    for name, frequency in frequencies.items():
        probe = hann * np.exp(-2j * np.pi * frequency * t)
        out[name] = 2 * np.abs(frames @ probe) / hann.sum()
    return out


def conference(
    site: Site, codecs: dict[str, str], watcher: bool, opus_user: str | None = None,
    **opus_options: Any,
) -> dict[str, Path]:  # fmt: skip
    """alice invites bob and carol (audio) and maybe dave (watch); all dial in and record.

    ``codecs``: the one codec a pjsua2 phone offers; ``opus_user`` (not alice) is a
    baresip offering Opus only (``opus_options``: more of its settings, baresip_peer.py),
    which joins last and hangs up once the others stopped recording (its dump is
    complete when its call is closed).
    """
    site.start()
    phones: dict[str, Phone] = {}
    wavs: dict[str, Path] = {}
    users = ["alice", "bob", "carol"] + (["dave"] if watcher else [])
    for user in users:
        if user == opus_user:
            continue
        wavs[user] = site.workdir / f"{user}.wav"
        extra = ["--tone", str(TONES[user]), "--record", str(wavs[user])]
        if user in codecs:
            extra += ["--codec", codecs[user]]
        phones[user] = site.phone(user, *extra)
    peer = None
    if opus_user is not None:
        peer = site.baresip(opus_user, audio_codecs=(OPUS,), tone=int(TONES[opus_user]),
                            record=True, **opus_options)  # fmt: skip
    invitees = [f"<sip:carol@{DOMAIN}>;mode=audio"]
    if watcher:
        invitees.append(f"<sip:dave@{DOMAIN}>;mode=watch")
    alice = phones["alice"]
    status = alice.message(f"sip:bob@{DOMAIN}", "talk?",
                           {"X-Vidim-Mode": "audio", "X-Vidim-Invite": ", ".join(invitees)})  # fmt: skip
    assert status["code"] == 202, status
    ready = alice.wait_im(lambda e: header(e["headers"], "X-Vidim-Conference") is not None)
    own = (header(ready["headers"], "X-Vidim-Conference") or "")[1:].partition(">")[0]
    alice.send(cmd="call", uri=own)
    for user, phone in phones.items():
        if user != "alice":
            phone.send(cmd="call", uri=phone.wait("invitation")["conference_uri"])
    for user, phone in phones.items():
        phone.wait("call_state", lambda e: e["state"] == "CONFIRMED")
        answer = phone.wait("call_sdp", lambda e: e["kind"] == "remote_answer")
        if user in codecs:  # the focus answered each phone in the codec it offered
            assert f"{codecs[user]}/8000" in answer["sdp"], answer["sdp"]
    if peer is not None:
        join_opus_peer(peer)
    # Everyone is in: record SECONDS of what each phone receives (counted in packets).
    base = {user: phone.rx_packets() for user, phone in phones.items()}
    for phone in phones.values():
        phone.send(cmd="record")
        phone.wait("recording")
    for user, phone in phones.items():
        wait_rx(phone, base[user] + int(SECONDS * 50) + 50)
    for phone in phones.values():
        start = phone.mark()
        phone.send(cmd="stop_recording")
        phone.wait("recording_stopped", start=start)
    if peer is not None and opus_user is not None:
        peer.command("hangup")
        peer.wait_event("CALL_CLOSED")
        recordings = peer.decoded_recordings()
        assert len(recordings) == 1, recordings
        wavs[opus_user] = recordings[0]
    return wavs


def join_opus_peer(peer: Baresip) -> None:
    """The baresip dials its invitation; the focus's answer must be Opus, stereo at 48 kHz."""
    invitation = peer.wait_sip(
        lambda m: m.direction == "recv" and m.method == "MESSAGE"
        and m.header("X-Vidim-Conference") is not None,
        "invitation MESSAGE",
    )  # fmt: skip
    uri = (invitation.header("X-Vidim-Conference") or "")[1:].partition(">")[0]
    peer.command("dial", uri)
    peer.wait_event("CALL_ESTABLISHED")
    ok = peer.wait_sip(
        lambda m: m.direction == "recv" and m.status == 200
        and (m.header("CSeq") or "").endswith("INVITE"),
        "200 to the conference INVITE",
    )  # fmt: skip
    audio = ok.body.split("m=audio ", 1)[1].split("m=", 1)[0]
    payload_types = audio.split("\r\n", 1)[0].split()[2:]
    assert len(payload_types) == 1, ok.body
    assert f"a=rtpmap:{payload_types[0]} {OPUS}" in audio, ok.body


def wait_rx(phone: Phone, packets: int, timeout: float = 3 * SECONDS) -> None:
    """Bounded: until the phone has received ``packets`` audio packets in all."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        if phone.rx_packets(timeout=remaining) >= packets:
            return
        with phone.cond:
            phone.cond.wait(0.1)
    raise AssertionError(f"{phone.name}: fewer than {packets} RTP packets received")


def check_mix(wavs: dict[str, Path], speakers: list[str]) -> None:
    for user in speakers:
        amplitudes = tone_amplitudes(wavs[user], TONES)
        report = {
            name: (round(float(np.median(a))), round(float(a.max())))
            for name, a in amplitudes.items()
        }
        for other in speakers:
            if other == user:
                continue
            share = float(np.mean(amplitudes[other] > PRESENT))
            assert share >= 0.9, f"{user} hears {other} in {share:.0%} of windows: {report}"
        assert amplitudes[user].max() < ABSENT, f"{user} hears itself: {report}"
        if "dave" in amplitudes and user != "dave":
            assert amplitudes["dave"].max() < ABSENT, f"{user} hears the watcher: {report}"


def test_three_phones_hear_each_other_and_a_watcher_reaches_nobody(site: Site) -> None:
    wavs = conference(site, {}, watcher=True)
    check_mix(wavs, ["alice", "bob", "carol"])
    # The watcher hears all three (and, like everyone, never itself).
    heard = tone_amplitudes(wavs["dave"], TONES)
    for speaker in ("alice", "bob", "carol"):
        assert float(np.mean(heard[speaker] > PRESENT)) >= 0.9, speaker


def test_phones_on_three_codecs_hear_each_other_transcoded(site: Site) -> None:
    """alice on PCMU, bob on PCMA, carol on G.722 (pjsua2 has no Opus): one mix, three codecs."""
    wavs = conference(site, {"alice": "PCMU", "bob": "PCMA", "carol": "G722"}, watcher=False)
    check_mix(wavs, ["alice", "bob", "carol"])


@pytest.mark.parametrize(
    "opus_options",
    [
        pytest.param({}, id="stereo-20ms"),
        # Mono and 40 ms packets: two packets' worth of samples per packet for the mixer.
        pytest.param({"ptime": 40, "extra_config": ("opus_stereo\tno", "opus_sprop_stereo\tno")},
                     id="mono-40ms"),
        # 10 ms packets: half a frame each, two to a tick (baresip ignores the answer's ptime).
        pytest.param({"ptime": 10}, id="stereo-10ms"),
    ],
)  # fmt: skip
def test_a_pcma_phone_a_pcmu_phone_and_an_opus_baresip_hear_each_other(
    site: Site, opus_options: dict[str, Any]
) -> None:
    """alice on PCMA, bob on PCMU (pjsua2), carol on Opus only (baresip, 48 kHz): the
    focus decodes each, mixes at 16 kHz and encodes per receiver in its codec."""
    wavs = conference(site, {"alice": "PCMA", "bob": "PCMU"}, watcher=False, opus_user="carol",
                      **opus_options)  # fmt: skip
    check_mix(wavs, ["alice", "bob", "carol"])
