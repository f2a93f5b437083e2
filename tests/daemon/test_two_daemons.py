"""Two daemons over one Redis: follow-ups reach the daemon that drives, kill -9 is survived.

Real processes on loopback: redis-server, two ``vidim-daemon run`` sharing it,
an external focus (``vidim-daemon focus``), and this test as requesters and
invitees.  Kamailio's dispatcher in front is tested in tests/integration;
here each request is sent to a chosen daemon, to see what each one does.
"""

from __future__ import annotations

import signal
from pathlib import Path

from test_cli import free_port
from test_daemon_restart import Daemon, People, ask_all, message, processes, wait_ready

from redis_peer import RedisServer

__all__ = ["processes"]  # the fixture, imported for this module's tests

LEASE_TTL = 1.0
CONFERENCES = 10


def test_follow_ups_reach_the_driving_daemon_and_a_killed_one_is_taken_over(
    tmp_path: Path, processes: list[Daemon], redis_server: RedisServer
) -> None:
    focus_port = free_port()
    focus = Daemon(
        ["focus", "--focus-listen", f"127.0.0.1:{focus_port}", "--store", "memory:"],
        tmp_path / "focus.log",
    )
    processes.append(focus)
    ports = [free_port(), free_port()]
    # Several daemons send their IMs through a proxy (Kamailio in a deployment): this
    # test's socket plays it, so an IM reaches it whichever daemon sends it.
    people = People()
    config = tmp_path / "vidim.toml"
    config.write_text(f"lease_ttl = {LEASE_TTL}\n")
    daemons = [
        Daemon(
            [
                "run",
                "--config",
                str(config),
                "--listen",
                f"127.0.0.1:{port}",
                "--focus",
                f"sip:conference-factory@127.0.0.1:{focus_port}",
                "--store",
                redis_server.url,
                "--proxy",
                f"sip:127.0.0.1:{people.port}",
                "--no-probe",
            ],
            tmp_path / f"daemon-{port}.log",
        )
        for port in ports
    ]
    processes.extend(daemons)
    for port in [focus_port, *ports]:
        wait_ready(port)
    a, b = daemons
    try:
        bob = f"sip:bob@127.0.0.1:{people.port}"
        requesters = [f"alice{i}" for i in range(CONFERENCES)]
        # Every conference is made on daemon A ...
        accepted = ask_all(
            people, ports[0], [message(people, r, bob, mode="video") for r in requesters]
        )
        assert [x.status for x in accepted] == [202] * CONFERENCES
        people.pump_until(lambda: len(people.ims) >= 2 * CONFERENCES, "invitations")

        # ... and /status sent to daemon B is answered by A, which drives them.
        service = "sip:vidim@localhost"
        ims_before = len(people.ims)
        statuses = ask_all(
            people, ports[1], [message(people, r, service, "/status") for r in requesters]
        )
        assert [s.status for s in statuses] == [202] * CONFERENCES
        people.pump_until(lambda: len(people.ims) >= ims_before + CONFERENCES, "status IMs")
        assert all(b"(video), active" in im.body for im in people.ims[ims_before:])
        assert len(a.wait_lines("RequestAccepted", 2 * CONFERENCES)) == 2 * CONFERENCES
        assert b.wait_lines("RequestAccepted", 1, timeout=0) == []  # B only forwarded
        assert b.wait_lines("adopted conference", 1, timeout=0) == []

        # kill -9 A: B takes its conferences over once their leases expire.
        assert a.kill(signal.SIGKILL) == -signal.SIGKILL
        ims_before = len(people.ims)
        ended = ask_all(people, ports[1], [message(people, r, service, "/end") for r in requesters])
        assert [e.status for e in ended] == [202] * CONFERENCES

        def end_notices() -> int:
            return sum(1 for im in people.ims[ims_before:] if b"has ended" in im.body)

        people.pump_until(lambda: end_notices() >= CONFERENCES, "end notices")
        assert len(b.wait_lines("adopted conference", CONFERENCES)) == CONFERENCES
        assert len(b.wait_lines("ConferenceEnded", CONFERENCES)) == CONFERENCES
        # A BYE on each anchor A had made.
        assert len(focus.wait_lines("ConferenceEnded", CONFERENCES)) == CONFERENCES
    finally:
        people.close()


def test_the_rate_limit_counts_a_requester_s_requests_on_every_daemon(
    tmp_path: Path, processes: list[Daemon], redis_server: RedisServer
) -> None:
    ports = [free_port(), free_port()]
    people = People()
    config = tmp_path / "vidim.toml"
    config.write_text("[limits]\nrate_limit = 3\nrate_window = 60.0\n")
    daemons = [
        Daemon(
            [
                "run", "--config", str(config),
                "--listen", f"127.0.0.1:{port}",
                # Nobody answers there: the conferences fail later; the 202s are what count.
                "--focus", "sip:conference-factory@127.0.0.1:9",
                "--store", redis_server.url,
                "--proxy", f"sip:127.0.0.1:{people.port}",
                "--no-probe",
            ],
            tmp_path / f"daemon-{port}.log",
        )
        for port in ports
    ]  # fmt: skip
    processes.extend(daemons)
    for port in ports:
        wait_ready(port)
    try:
        bob = f"sip:bob@127.0.0.1:{people.port}"
        answers = [
            ask_all(people, ports[i % 2], [message(people, "alice", bob, mode="video")])[0]
            for i in range(5)
        ]
        # Three in the window, whichever daemon each reached: the fourth and fifth refused.
        assert [a.status for a in answers] == [202, 202, 202, 403, 403]
        warning = answers[3].headers.get("Warning") or ""
        assert "too many new conferences" in warning
        # Another requester has a count of their own.
        other = ask_all(people, ports[1], [message(people, "carol", bob, mode="video")])[0]
        assert other.status == 202
    finally:
        people.close()


def test_after_a_takeover_the_focus_s_bye_reaches_the_adopting_daemon(
    tmp_path: Path, processes: list[Daemon], redis_server: RedisServer
) -> None:
    """The adopter re-INVITEs each anchor with its own Contact (a target refresh): when the
    focus ends a conference later (here: its time limit), its BYE reaches the adopter, which
    tells the requester, instead of going to the dead daemon's address."""
    focus_port = free_port()
    focus_config = tmp_path / "focus.toml"
    focus_config.write_text("[media]\nconference_ttl = 8.0\n")
    focus = Daemon(
        ["focus", "--config", str(focus_config), "--focus-listen", f"127.0.0.1:{focus_port}",
         "--store", "memory:"],
        tmp_path / "focus.log",
    )  # fmt: skip
    processes.append(focus)
    ports = [free_port(), free_port()]
    people = People()
    config = tmp_path / "vidim.toml"
    config.write_text(f"lease_ttl = {LEASE_TTL}\n")
    daemons = [
        Daemon(
            [
                "run", "--config", str(config),
                "--listen", f"127.0.0.1:{port}",
                "--focus", f"sip:conference-factory@127.0.0.1:{focus_port}",
                "--store", redis_server.url,
                "--proxy", f"sip:127.0.0.1:{people.port}",
                "--no-probe",
            ],
            tmp_path / f"daemon-{port}.log",
        )
        for port in ports
    ]  # fmt: skip
    processes.extend(daemons)
    for port in [focus_port, *ports]:
        wait_ready(port)
    a, b = daemons
    try:
        bob = f"sip:bob@127.0.0.1:{people.port}"
        requesters = [f"alice{i}" for i in range(5)]
        accepted = ask_all(
            people, ports[0], [message(people, r, bob, mode="video") for r in requesters]
        )
        assert [x.status for x in accepted] == [202] * len(requesters)
        people.pump_until(lambda: len(people.ims) >= 2 * len(requesters), "invitations")
        assert a.kill(signal.SIGKILL) == -signal.SIGKILL
        assert len(b.wait_lines("adopted conference", len(requesters))) == len(requesters)
        ims_before = len(people.ims)

        def end_notices() -> int:
            return sum(1 for im in people.ims[ims_before:] if b"has ended" in im.body)

        # Nobody sends /end: the focus's time limit ends each conference, with a BYE.
        people.pump_until(lambda: end_notices() >= len(requesters), "end notices", timeout=20)
        assert end_notices() == len(requesters)
        assert len(b.wait_lines("ConferenceEnded", len(requesters))) == len(requesters)
    finally:
        people.close()
