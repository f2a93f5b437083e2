"""The daemon's configuration: defaults, TOML, overrides and precise errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from vidim_daemon.config import DEFAULTS, SETTINGS, ConfigError, load, parse_hostport

from vidim.allocator.profiles import FocusProfile
from vidim.sip import Address, ClientCredentials, hash_a1


def test_defaults_are_the_embedded_job() -> None:
    config = load()
    assert config.listen == Address("127.0.0.1", 5070)
    assert config.focus_listen == Address("127.0.0.1", 5080)
    assert config.builtin_focus
    assert config.focus_uris == ("sip:conference-factory@127.0.0.1:5080",)
    assert config.profile is FocusProfile.RFC4579
    assert config.proxy is None
    assert str(config.service_uri) == "sip:vidim@localhost"
    assert [str(n) for n in config.trusted] == ["127.0.0.0/8", "::1/128"]
    assert config.probe
    assert (config.probe_timeout, config.focus_timeout) == (2.0, 8.0)
    assert config.rtp_ports == (10000, 20000)


def test_a_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "vidim.toml"
    path.write_text(
        'listen = "127.0.0.1:6070"\n'
        'focus = ["sip:conf@192.0.2.1:5060", "sip:conf@192.0.2.2:5060"]\n'
        'profile = "asterisk"\n'
        'proxy = "sip:127.0.0.1:5060"\n'
        'domain = "example.com"\n'
        "[timers]\nprobe_timeout = 1.5\n"
        "[limits]\nmax_invitees = 4\n"
    )
    config = load(path, {"listen": "127.0.0.1:7070", "probe": False})
    assert config.listen == Address("127.0.0.1", 7070)  # the command line wins
    assert config.focus == ("sip:conf@192.0.2.1:5060", "sip:conf@192.0.2.2:5060")
    assert not config.builtin_focus
    assert config.profile is FocusProfile.ASTERISK
    assert config.proxy == Address("127.0.0.1", 5060)
    assert str(config.service_uri) == "sip:vidim@example.com"
    assert config.probe_timeout == 1.5
    assert config.focus_timeout == 8.0  # untouched keys keep their defaults
    assert config.max_invitees == 4
    assert not config.probe


def test_every_problem_is_reported_with_its_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        'listen = "localhost:5070"\n'
        'focus = "http://example.com"\n'
        'profile = "skype"\n'
        'proxy = "tel:+15551234"\n'
        'trusted = ["10.0.0.0/33"]\n'
        'log_level = "loud"\n'
        "colour = true\n"
        "[timers]\nprobe_timeout = -1\n"
        "[media]\nrtp_ports = [5000, 4000]\n"
    )
    with pytest.raises(ConfigError) as info:
        load(path)
    problems = info.value.problems
    expected = [
        "colour: unknown setting",
        "listen: listen host must be an IP address, got 'localhost'",
        "focus: 'http://example.com' is not a SIP URI",
        "profile: must be one of rfc4579, asterisk, freeswitch, got 'skype'",
        "proxy: 'tel:+15551234' must be a SIP URI",
        "trusted: '10.0.0.0/33' is not a network",
        "log_level: must be one of debug, info, warning, error, got 'loud'",
        "timers.probe_timeout: must be above 0, got -1",
        "media.rtp_ports: must be [first, last]",
    ]
    for fragment in expected:
        assert any(p.startswith(fragment) for p in problems), (fragment, problems)
    assert len(problems) == len(expected)


@pytest.mark.parametrize(
    ("proxy", "expected"),
    [
        ("sip:localhost:5060", Address("localhost", 5060, "UDP", "A")),
        ("sip:proxy.example.com", Address("proxy.example.com", 5060, "UDP", "NAPTR")),
        ("sip:proxy.example.com;transport=tcp", Address("proxy.example.com", 5060, "TCP", "SRV")),
    ],
)
def test_the_proxy_may_be_a_host_name(proxy: str, expected: Address) -> None:
    """Issue 18: a name is located when a request is sent (RFC 3263), A/AAAA, SRV or NAPTR."""
    config = load(None, {"proxy": proxy})
    assert config.proxy == expected
    assert config.proxy is not None
    assert config.proxy.lookup == expected.lookup
    assert config.proxy_uri == proxy


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("listen = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(broken)


def test_builtin_focus_needs_its_own_port() -> None:
    with pytest.raises(ConfigError, match="focus_listen: must differ from listen"):
        load(None, {"focus_listen": "127.0.0.1:5070"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5070", Address("127.0.0.1", 5070)),
        ("[::1]:5060", Address("::1", 5060)),
    ],
)
def test_parse_hostport(text: str, expected: Address) -> None:
    assert parse_hostport(text) == expected


@pytest.mark.parametrize(
    "text", ["5070", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:70000", "host:5060"]
)
def test_parse_hostport_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="address"):
        parse_hostport(text)


def test_overload_control_is_on_by_default_and_configurable(tmp_path: Path) -> None:
    default = load()
    assert default.overload is not None
    assert (default.overload.max_lag, default.overload.clear_lag) == (0.2, 0.02)
    assert default.overload.hold == 0.1
    assert default.overload.retry_after == 5
    path = tmp_path / "vidim.toml"
    path.write_text(
        "[limits]\noverload_max_lag = 0.3\noverload_clear_lag = 0.05\noverload_retry_after = 2\n"
    )
    tuned = load(path).overload
    assert tuned is not None
    assert (tuned.max_lag, tuned.clear_lag, tuned.retry_after) == (0.3, 0.05, 2)
    path.write_text("[limits]\noverload = false\n")
    assert load(path).overload is None
    path.write_text("[limits]\noverload_max_lag = 0.1\noverload_clear_lag = 0.2\n")
    with pytest.raises(ConfigError, match=r"limits\.overload"):
        load(path)


@pytest.mark.parametrize("key", ["overload_enter", "overload_leave", "overload_window"])
def test_the_removed_cpu_settings_say_what_replaced_them(tmp_path: Path, key: str) -> None:
    path = tmp_path / "vidim.toml"
    path.write_text(f"[limits]\n{key} = 0.7\n")
    with pytest.raises(ConfigError, match=rf"limits\.{key}: no longer .*overload_clear_lag"):
        load(path)


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ('probe = "yes"', "probe: must be bool, got 'yes'"),
        ("listen = 5070", "listen: must be str, got 5070"),
        ("timers = 3", "timers: must be a table"),
        ("[timers]\nt1 = true", "timers.t1: must be a number, got True"),
        ("[limits]\nmax_invitees = 2.5", "limits.max_invitees: must be int, got 2.5"),
        ("[limits]\nrate_window = 0", "limits.rate_window: must be above 0, got 0"),
        ("[limits]\noverload_hold = -1", "limits.overload_*: hold and retry_after must be 0"),
        ("[limits]\noverload_retry_after = 1.5", "limits.overload_retry_after: must be int"),
        ('[media]\naddress = "here"', "media.address: must be an IP address, got 'here'"),
        ("[media]\ncolour = 1", "media.colour: unknown setting"),
        ('service_uri = "sip:example.com"', "service_uri: 'sip:example.com' is not usable"),
        ('event_loop = "trio"', "event_loop: must be one of auto, uvloop, asyncio, got 'trio'"),
    ],
)
def test_each_wrong_value_is_named_with_its_key(tmp_path: Path, toml: str, problem: str) -> None:
    path = tmp_path / "vidim.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(problem), info.value.problems


def test_the_defaults_as_toml_writes_them() -> None:
    assert DEFAULTS["listen"] == "127.0.0.1:5070"
    assert DEFAULTS["timers"]["t1"] == 0.5
    assert DEFAULTS["limits"]["overload_retry_after"] == 5
    assert DEFAULTS["media"]["rtp_ports"] == [10000, 20000]
    assert list(DEFAULTS) == [
        "listen", "focus", "focus_listen", "profile", "proxy", "domain", "service_uri",
        "trusted", "probe", "log_level", "log_json", "event_loop", "store", "state_dir", "lease_ttl",
        "end_on_stop", "refuse_on_stop", "stop_timeout", "advertise", "metrics_listen", "timers",
        "limits", "media", "auth", "asterisk", "tls",
    ]  # fmt: skip


def test_docs_name_every_setting() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "daemon.md").read_text()
    for key in SETTINGS:
        table, _, name = key.rpartition(".")
        assert re.search(rf"[`\] ]{name}[` ]", doc), key
        assert not table or f"`[{table}] " in doc, key


def test_end_on_stop_and_the_stop_timings() -> None:
    config = load()
    assert (config.end_on_stop, config.refuse_on_stop, config.stop_timeout) == (True, 1.0, 5.0)
    assert load(None, {"end_on_stop": False, "refuse_on_stop": 0}).end_on_stop is False
    # "auto" (the default): on with the embedded store, off with a shared one.
    assert load(None, {"store": "memory:"}).end_on_stop is True
    assert load(None, {"store": "redis://127.0.0.1:6379/0"}).end_on_stop is False
    assert load(None, {"store": "redis://127.0.0.1:6379/0", "end_on_stop": True}).end_on_stop
    with pytest.raises(ConfigError) as caught:
        load(None, {"end_on_stop": "no", "refuse_on_stop": -1, "stop_timeout": 0})
    assert caught.value.problems == [
        "end_on_stop: must be true, false or \"auto\", got 'no'",
        "refuse_on_stop: must be 0 or more, got -1",
        "stop_timeout: must be above 0, got 0",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.10", ("192.0.2.10", None)),
        ("192.0.2.10:5090", ("192.0.2.10", 5090)),
        ("sip.example.com", ("sip.example.com", None)),
        ("sip.example.com:5070", ("sip.example.com", 5070)),
        ("2001:db8::10", ("2001:db8::10", None)),
        ("[2001:db8::10]:5070", ("2001:db8::10", 5070)),
    ],
)
def test_advertise_is_a_host_and_maybe_a_port(text: str, expected: tuple[str, int | None]) -> None:
    config = load(None, {"advertise": text, "listen": "0.0.0.0:5070", "focus_listen": "[::]:5080"})
    assert config.advertise == expected
    host, port = expected
    assert config.advertised == Address(host, port or 5070)
    assert config.focus_advertised == Address(host, 5080)
    shown = f"[{host}]" if ":" in host else host
    assert config.focus_uris == (f"sip:conference-factory@{shown}:5080",)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"listen": "0.0.0.0:5070"}, "listen: 0.0.0.0 is every local address"),
        ({"focus_listen": "[::]:5080"}, "focus_listen: :: is every local address"),
        ({"advertise": "0.0.0.0"}, "advertise: must be an address peers can reach, not 0.0.0.0"),
        ({"advertise": "host:port"}, "advertise: must be HOST[:PORT], got 'host:port'"),
        ({"advertise": "a b"}, "advertise: 'a b' is neither an IP address nor a host name"),
        ({"metrics_listen": "localhost:9470"}, "metrics_listen: metrics_listen host must be"),
    ],
)
def test_unreachable_addresses_are_refused(overrides: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(None, overrides)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(problem)


def test_an_external_focus_needs_no_focus_listen_address() -> None:
    config = load(None, {"focus": "sip:conf@192.0.2.1", "focus_listen": "0.0.0.0:5080"})
    assert config.advertised == config.listen


def test_metrics_are_off_unless_an_address_is_given() -> None:
    assert load().metrics_listen is None
    assert load(None, {"metrics_listen": "127.0.0.1:9470"}).metrics_listen == Address(
        "127.0.0.1", 9470
    )


def test_the_built_in_focus_trusts_this_daemon_s_own_allocator() -> None:
    """Issue 18: the focus takes factory INVITEs from trusted sources only, its allocator's too."""
    from vidim_daemon.cli import focus_trusted

    from vidim.vocabulary import is_trusted

    config = load(overrides={"listen": "192.0.2.7:5070", "focus_listen": "192.0.2.7:5080"})
    trusted = focus_trusted(config)
    assert is_trusted("192.0.2.7", trusted)
    assert not is_trusted("192.0.2.8", trusted)
    assert is_trusted("127.0.0.1", trusted)
    assert focus_trusted(load(overrides={})) == load(overrides={}).trusted  # loopback already


def test_auth_credentials_and_the_users_file(tmp_path: Path) -> None:
    assert (load().credentials, load().challenge) == (None, None)
    md5 = hash_a1("MD5", "alice", "example.com", "secret")
    sha = hash_a1("SHA-256", "alice", "example.com", "secret")
    users = tmp_path / "users"
    users.write_text(f"alice:example.com:{md5}\nalice:example.com:{sha}\nbob:other:{md5}\n")
    path = tmp_path / "vidim.toml"
    path.write_text(
        'domain = "example.com"\n'
        "[auth]\n"
        'username = "vidim"\npassword = "pw"\nrealm = "proxy.example.com"\n'
        f'challenge = true\nusers_file = "{users}"\n'
    )
    config = load(path)
    assert config.credentials == ClientCredentials(
        username="vidim", password="pw", realm="proxy.example.com"
    )
    assert "pw" not in repr(config)  # never in a log line
    assert config.challenge is not None
    assert config.challenge.realm == "example.com"  # challenge_realm: the domain by default
    assert dict(config.challenge.users) == {"alice": {"MD5": md5, "SHA-256": sha}}


@pytest.mark.parametrize(
    ("auth", "problem"),
    [
        ('password = "pw"', "auth.password: given without auth.username"),
        ("challenge = true", "auth.challenge: needs auth.users_file"),
        ('challenge = true\nusers_file = "/nonexistent/users"', "auth.users_file: cannot read"),
    ],
)
def test_auth_problems_are_named(tmp_path: Path, auth: str, problem: str) -> None:
    path = tmp_path / "vidim.toml"
    path.write_text(f"[auth]\n{auth}\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert any(line.startswith(problem) for line in caught.value.problems), caught.value.problems


def test_a_users_file_with_a_bad_line_or_no_user_of_the_realm(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("alice:localhost:nothex\n")
    with pytest.raises(ConfigError, match="line 1: not user:realm:HA1"):
        load(None, {"auth": {"challenge": True, "users_file": str(users)}})
    users.write_text(f"alice:elsewhere:{'0' * 32}\n")
    with pytest.raises(ConfigError, match="has no user of realm 'localhost'"):
        load(None, {"auth": {"challenge": True, "users_file": str(users)}})


def test_asterisk_ami_needs_the_profile_and_credentials(tmp_path: Path) -> None:
    """Issue 17: AMI is the asterisk profile's control channel; it logs in with the file's."""
    path = tmp_path / "vidim.toml"
    path.write_text('[asterisk]\nami = "127.0.0.1:5038"\n')
    with pytest.raises(ConfigError) as info:
        load(path, {"focus": "sip:vidim-conference@127.0.0.1:5090"})
    assert info.value.problems == [
        'asterisk.ami: only with profile = "asterisk"',
        "asterisk.ami_user: needed with asterisk.ami (AMI logs in with it)",
        "asterisk.ami_secret: needed with asterisk.ami (AMI logs in with it)",
    ]
    path.write_text('profile = "asterisk"\n[asterisk]\nami_user = "vidim"\nami_secret = "s"\n')
    config = load(path, {"asterisk": {"ami": "127.0.0.1:5038"}})
    assert config.asterisk_ami == Address("127.0.0.1", 5038)
    assert (config.asterisk_ami_user, config.asterisk_ami_secret) == ("vidim", "s")
    assert "ami_secret" not in repr(config)  # never in a log line
    assert load().asterisk_ami is None
