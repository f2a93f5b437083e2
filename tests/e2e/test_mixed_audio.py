"""Issue 15: phones in one conference on the built-in focus hear each other (the mixer).

Real Kamailio, the real vidim-daemon and one pjsua2 process per phone
(examples/softphone.py --json --tone HZ --record FILE), and for Opus (which the pjsua2
wheel lacks) one baresip offering Opus only, playing ``ausine`` and dumping what it
decodes with the ``sndfile`` filter (and SIPp replaying 10 ms packets, as a phone that
ignores the answer's ptime does).  Each phone plays its own tone and records what it
receives; the WAV files are analysed with numpy, in 100 ms windows from one second after
the recording started: every speaker's recording holds both other speakers' tones in at
least 90% of the windows, never its own, and never the tone of the ``watch`` participant
(whose audio the focus drops).
"""

from __future__ import annotations

import struct
import subprocess
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from baresip_peer import Baresip
from e2e_peers import DOMAIN, Phone, Site, header
from sip_peers import Sipp, free_port, require_binary, stop_process_group

from vidim.focus.codecs import AudioEncoder, codec_for
from vidim.rtp import RtpPacket

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
    record_what_each_hears(phones)  # everyone is in
    if peer is not None and opus_user is not None:
        peer.command("hangup")
        peer.wait_event("CALL_CLOSED")
        recordings = peer.decoded_recordings()
        assert len(recordings) == 1, recordings
        wavs[opus_user] = recordings[0]
    return wavs


def join_opus_peer(peer: Baresip) -> None:
    """The baresip dials its invitation; the focus's answer must be Opus, stereo at 48 kHz."""
    ok = peer.join_invitation()
    audio = ok.body.split("m=audio ", 1)[1].split("m=", 1)[0]
    payload_types = audio.split("\r\n", 1)[0].split()[2:]
    assert len(payload_types) == 1, ok.body
    assert f"a=rtpmap:{payload_types[0]} {OPUS}" in audio, ok.body


def record_what_each_hears(phones: dict[str, Phone]) -> None:
    """Each phone records SECONDS of what it receives (counted in packets, 50 a second)."""
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
        # Mono, offering 40 ms packets.  baresip 1.0 sends at the answer's a=ptime:20 all
        # the same (audio_sdp_attr_decode: "peer changed ptime_tx"), as it would with
        # ptime=10: the 10 ms phone is SIPp (test_a_phone_sending_10_ms_packets_...).
        pytest.param({"ptime": 40, "extra_config": ("opus_stereo\tno", "opus_sprop_stereo\tno")},
                     id="mono-40ms"),
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


# -- a phone that sends 10 ms packets ------------------------------------------------------
# baresip 1.0 and pjsua2 both send at the ptime of the answer (the focus says
# a=ptime:20), so the 10 ms phone here is SIPp, which plays a capture of 10 ms
# packets whatever the answer says, as some desk phones do.

TEN_MS_AMPLITUDE = 12000.0
TEN_MS_SCENARIO = """<?xml version="1.0" encoding="UTF-8"?>
<scenario name="alice sends 10 ms PCMU packets">
<send retrans="500"><![CDATA[
INVITE [conference] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:alice@[domain]>;tag=[pid]SIPpTag[call_number]
To: <[conference]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:alice@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=alice 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=ptime:10
]]></send>
<recv response="100" optional="true"/>
<recv response="180" optional="true"/>
<recv response="183" optional="true"/>
<recv response="200" rrs="true"/>
<send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: <sip:alice@[domain]>;tag=[pid]SIPpTag[call_number]
To: <[conference]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Contact: <sip:alice@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
<nop><action><exec play_pcap_audio="[pcap]"/></action></nop>
<pause milliseconds="DURATION"/>
<send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: <sip:alice@[domain]>;tag=[pid]SIPpTag[call_number]
To: <[conference]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Contact: <sip:alice@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
<recv response="200"/>
</scenario>
"""


def write_ten_ms_capture(path: Path, seconds: float) -> None:
    """A pcap of PCMU RTP in 10 ms packets of alice's tone (SIPp replays its timing)."""
    codec = codec_for("pcmu", 0)
    encoder = AudioEncoder(codec, 8000)
    t = np.arange(int(8000 * seconds))
    pcm = (TEN_MS_AMPLITUDE * np.sin(2 * np.pi * TONES["alice"] * t / 8000)).astype(np.int16)
    records = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for k in range(len(pcm) // 80):
        rtp = bytes(RtpPacket(payload_type=0, sequence_number=k & 0xFFFF, timestamp=k * 80,
                              ssrc=0x10AB, payload=encoder.encode(pcm[k * 80 : (k + 1) * 80])))  # fmt: skip
        udp = struct.pack(">HHHH", 40000, 40000, 8 + len(rtp), 0) + rtp
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + udp  # fmt: skip
        frame = b"\0" * 12 + b"\x08\x00" + ip
        when = k * 10_000  # microseconds
        records.append(struct.pack("<IIII", when // 1_000_000, when % 1_000_000,
                                   len(frame), len(frame)) + frame)  # fmt: skip
    path.write_bytes(b"".join(records))


def test_a_phone_sending_10_ms_packets_is_heard_at_full_level(site: Site) -> None:
    """alice (SIPp replaying 10 ms PCMU packets) reaches bob and carol (pjsua2) at the
    level she sends, in every window: each tick mixes 20 ms of her audio, two packets."""
    sipp_binary = require_binary("sipp")
    site.start()
    alice = site.phone("alice")
    phones = {user: site.phone(user, "--tone", str(TONES[user]), "--record",
                               str(site.workdir / f"{user}.wav")) for user in ("bob", "carol")}  # fmt: skip
    status = alice.message(f"sip:bob@{DOMAIN}", "talk?", {"X-Vidim-Mode": "audio",
                           "X-Vidim-Invite": f"<sip:carol@{DOMAIN}>;mode=audio"})  # fmt: skip
    assert status["code"] == 202, status
    ready = alice.wait_im(lambda e: header(e["headers"], "X-Vidim-Conference") is not None)
    own = (header(ready["headers"], "X-Vidim-Conference") or "")[1:].partition(">")[0]
    for phone in phones.values():
        phone.send(cmd="call", uri=phone.wait("invitation")["conference_uri"])
    for phone in phones.values():
        phone.wait("call_state", lambda e: e["state"] == "CONFIRMED")
    workdir = site.workdir / "sipp"
    workdir.mkdir()
    seconds = SECONDS + 4
    write_ten_ms_capture(workdir / "alice-10ms.pcap", seconds)
    (workdir / "alice.xml").write_text(TEN_MS_SCENARIO.replace("DURATION", str(seconds * 1000)))
    assert site.kamailio is not None
    port = free_port()
    argv = [sipp_binary, f"{site.kamailio.addr[0]}:{site.kamailio.addr[1]}", "-sf", "alice.xml",
            "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1", "-mp", str(free_port()),
            "-m", "1", "-key", "conference", own, "-key", "domain", DOMAIN,
            "-key", "pcap", str(workdir / "alice-10ms.pcap"),
            "-trace_err", "-trace_msg",
            "-message_file", "messages.log", "-error_file", "errors.log", "-nostdin"]  # fmt: skip
    with (workdir / "sipp.stdout").open("wb") as out:
        proc = subprocess.Popen(argv, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    sipp = Sipp(proc, port, argv, workdir)
    try:
        sipp.wait_bound()
        # alice is in once bob receives her: record SECONDS of what bob and carol get.
        wait_rx(phones["bob"], phones["bob"].rx_packets() + 100)
        record_what_each_hears(phones)
        assert sipp.wait(timeout=seconds + 10) == 0, sipp.report()
    finally:
        if not sipp.finished:
            stop_process_group(proc)
    for user in phones:
        heard = tone_amplitudes(site.workdir / f"{user}.wav", {"alice": TONES["alice"]})["alice"]
        full = float(np.mean(heard > 0.85 * TEN_MS_AMPLITUDE))
        assert full >= 0.9, f"{user} hears alice at full level in {full:.0%}: {np.median(heard)}"
