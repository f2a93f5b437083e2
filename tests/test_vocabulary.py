"""The shared vocabulary (vidim.vocabulary): modes, capabilities, the one trust check."""

from __future__ import annotations

import ipaddress

import pytest

from vidim.vocabulary import (
    LOOPBACK_NETWORKS,
    Capabilities,
    Mode,
    effective_mode,
    is_trusted,
    parse_networks,
)

# -- modes and capabilities -------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "has_audio", "has_video", "sends_media"),
    [
        (Mode.VIDEO, True, True, True),
        (Mode.AUDIO, True, False, True),
        (Mode.WATCH, True, True, False),
        (Mode.CHAT, False, False, False),
    ],
)
def test_mode_properties(mode: Mode, has_audio: bool, has_video: bool, sends_media: bool) -> None:
    assert (mode.has_audio, mode.has_video, mode.sends_media) == (
        has_audio,
        has_video,
        sends_media,
    )


def test_modes_are_their_wire_words() -> None:
    assert [str(mode) for mode in Mode] == ["video", "audio", "watch", "chat"]
    assert Mode("watch") is Mode.WATCH


def test_unreachable_means_no_media() -> None:
    assert Capabilities.unreachable() == Capabilities(audio=False, video=False)


BOTH = Capabilities(audio=True, video=True)
AUDIO_ONLY = Capabilities(audio=True, video=False)
VIDEO_ONLY = Capabilities(audio=False, video=True)
NONE = Capabilities.unreachable()

#: requested mode -> effective mode, for: not probed, both, audio only, video only, nothing.
EFFECTIVE: dict[Mode, tuple[Mode, Mode, Mode, Mode, Mode]] = {
    Mode.VIDEO: (Mode.VIDEO, Mode.VIDEO, Mode.AUDIO, Mode.CHAT, Mode.CHAT),
    Mode.AUDIO: (Mode.AUDIO, Mode.AUDIO, Mode.AUDIO, Mode.CHAT, Mode.CHAT),
    Mode.WATCH: (Mode.WATCH, Mode.WATCH, Mode.WATCH, Mode.CHAT, Mode.CHAT),
    Mode.CHAT: (Mode.CHAT, Mode.CHAT, Mode.CHAT, Mode.CHAT, Mode.CHAT),
}


@pytest.mark.parametrize(
    ("requested", "capabilities", "expected"),
    [
        (requested, capabilities, row[column])
        for requested, row in EFFECTIVE.items()
        for column, capabilities in enumerate((None, BOTH, AUDIO_ONLY, VIDEO_ONLY, NONE))
    ],
)
def test_effective_mode(requested: Mode, capabilities: Capabilities | None, expected: Mode) -> None:
    assert effective_mode(requested, capabilities) is expected


@pytest.mark.parametrize("capabilities", [None, BOTH, AUDIO_ONLY, VIDEO_ONLY, NONE])
@pytest.mark.parametrize("requested", list(Mode))
def test_effective_mode_never_raises_a_mode(
    requested: Mode, capabilities: Capabilities | None
) -> None:
    mode = effective_mode(requested, capabilities)
    assert mode.has_audio <= requested.has_audio
    assert mode.has_video <= requested.has_video
    assert mode.sends_media <= requested.sends_media


# -- trust -----------------------------------------------------------------------------------

TRUSTED = parse_networks(["10.0.0.0/8", "2001:db8::/32", "fe80::/10"])


@pytest.mark.parametrize(
    ("host", "trusted"),
    [
        ("10.1.2.3", True),
        (" 10.1.2.3 ", True),  # padding as a header may carry it
        ("11.1.2.3", False),
        ("2001:db8::7", True),
        ("[2001:db8::7]", True),
        ("2001:db9::7", False),
        ("[2001:db9::7]", False),
        ("fe80::1%eth0", True),  # the zone names an interface, not an address
        ("[fe80::1%eth0]", True),
        ("[fe80::1%25eth0]", True),  # the zone as a URI escapes it (RFC 6874)
        ("::ffff:10.0.0.1", True),  # a dual-stack socket's view of an IPv4 peer
        ("[::ffff:10.0.0.1]", True),
        ("::ffff:11.0.0.1", False),
        ("::ffff:a00:1", True),  # the same address, written in hex
        # Names are never trusted, whatever they resolve to.
        ("localhost", False),
        ("proxy.example.com", False),
        ("10.1.2.3.example.com", False),
        # Not an address at all.
        ("", False),
        ("[]", False),
        ("10.1.2.3:5060", False),
        ("[2001:db8::7]:5060", False),
        ("[2001:db8::7", False),
        ("10.1.2", False),
    ],
)
def test_is_trusted(host: str, trusted: bool) -> None:
    assert is_trusted(host, TRUSTED) is trusted


def test_a_mapped_address_is_checked_as_ipv4_only() -> None:
    """``::ffff:10.0.0.1`` is the IPv4 peer 10.0.0.1: an IPv6 network never covers it."""
    v6_everything = parse_networks(["::/0"])
    assert not is_trusted("::ffff:10.0.0.1", v6_everything)
    assert not is_trusted("10.0.0.1", v6_everything)
    assert is_trusted("::ffff:10.0.0.1", parse_networks(["0.0.0.0/0"]))


def test_loopback_networks() -> None:
    assert is_trusted("127.0.0.1", LOOPBACK_NETWORKS)
    assert is_trusted("127.255.0.9", LOOPBACK_NETWORKS)
    assert is_trusted("::1", LOOPBACK_NETWORKS)
    assert is_trusted("[::1]", LOOPBACK_NETWORKS)
    assert is_trusted("::ffff:127.0.0.1", LOOPBACK_NETWORKS)
    assert not is_trusted("::2", LOOPBACK_NETWORKS)
    assert not is_trusted("192.0.2.1", LOOPBACK_NETWORKS)


def test_nothing_is_trusted_without_networks() -> None:
    assert not is_trusted("127.0.0.1", ())
    assert not is_trusted("::1", iter(()))


def test_parse_networks() -> None:
    assert parse_networks(["10.0.0.0/8", "::1", "192.0.2.7"]) == (
        ipaddress.IPv4Network("10.0.0.0/8"),
        ipaddress.IPv6Network("::1/128"),
        ipaddress.IPv4Network("192.0.2.7/32"),  # an address is a network of one
    )
    network = ipaddress.IPv4Network("10.0.0.0/8")
    assert parse_networks([network]) == (network,)
    assert parse_networks([]) == ()


@pytest.mark.parametrize(
    "text",
    [
        "10.0.0.1/8",  # host bits set: a typo for 10.0.0.0/8, or for 10.0.0.1/32?
        "10.0.0.0/33",
        "2001:db8::/129",
        "banana",
        "localhost",
        "",
        "10.0.0.0/8 ",
    ],
)
def test_parse_networks_refuses_what_is_not_a_network(text: str) -> None:
    with pytest.raises(ValueError, match=r"host bits set|does not appear to be"):
        parse_networks([text])
