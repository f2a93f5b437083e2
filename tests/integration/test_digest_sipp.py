"""vidim challenges a requester it does not trust, and SIPp's own digest code answers (issue 18).

vidim-daemon (the worktree's code) runs with ``[auth] challenge = true`` and an
htdigest-style users file, trusting only 10.0.0.0/8: SIPp on 127.0.0.1 is a
stranger.  SIPp 3.6 sends a MESSAGE, gets 401, answers it with its
``[authentication]`` keyword (an implementation that is not vidim's), and gets
202.  With a wrong password the answer is 403 with a Warning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sip_peers import HOST, Sipp, VidimProcess, free_port

from vidim.sip import hash_a1

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

DOMAIN = "vidim.test"

_MESSAGE = """\
MESSAGE sip:vidim@{domain} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:mallory@{domain}>;tag=[call_number]
To: <sip:vidim@{domain}>
Call-ID: [call_id]
CSeq: {cseq} MESSAGE
Max-Forwards: 70
{auth}Content-Type: text/plain
Content-Length: [len]

/help
"""


def scenario(password: str, final: int) -> str:
    first = _MESSAGE.format(domain=DOMAIN, cseq=1, auth="")
    auth = f"[authentication username=mallory password={password}]\n"
    second = _MESSAGE.format(domain=DOMAIN, cseq=2, auth=auth)
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
        '<!DOCTYPE scenario SYSTEM "sipp.dtd">\n'
        '<scenario name="MESSAGE with digest">\n'
        f'  <send retrans="500"><![CDATA[\n{first}  ]]></send>\n'
        '  <recv response="401" auth="true"/>\n'
        f'  <send retrans="500"><![CDATA[\n{second}  ]]></send>\n'
        f'  <recv response="{final}"/>\n'
        "</scenario>\n"
    )


@pytest.fixture
def challenging_vidim(tmp_path: Path) -> Iterator[int]:
    users = tmp_path / "users"
    users.write_text(f"mallory:{DOMAIN}:{hash_a1('MD5', 'mallory', DOMAIN, 'secret')}\n")
    toml = tmp_path / "vidim.toml"
    # SIPp reads only the first challenge and knows only MD5: offer it first.
    toml.write_text(
        f'[auth]\nchallenge = true\nusers_file = "{users}"\n'
        'challenge_algorithms = ["MD5", "SHA-256"]\n'
    )
    port = free_port()
    daemon = VidimProcess(
        "vidim",
        ["run", "--config", str(toml), "--listen", f"{HOST}:{port}",
         "--focus-listen", f"{HOST}:{free_port()}", "--store", "memory:",
         "--domain", DOMAIN, "--trusted", "10.0.0.0/8"],
        tmp_path,
    )  # fmt: skip
    try:
        daemon.wait_ready(port)
        yield port
    finally:
        code = daemon.stop()
        print(f"--- vidim exited with {code}; log tail:\n{daemon.tail()}")


@pytest.mark.parametrize(("password", "final"), [("secret", 202), ("guess", 403)])
def test_sipp_answers_vidim_s_challenge(
    tmp_path: Path,
    sipp_factory: Callable[..., Sipp],
    challenging_vidim: int,
    password: str,
    final: int,
) -> None:
    path = tmp_path / "message_digest.xml"
    path.write_text(scenario(password, final))
    # SIPp signs sip:<remote address> unless told the Request-URI, which vidim requires.
    args = ["-sf", str(path), "-m", "1", "-auth_uri", f"vidim@{DOMAIN}"]
    sipp = sipp_factory([*args, f"{HOST}:{challenging_vidim}"])
    assert sipp.wait() == 0, sipp.report()
    messages = sipp.messages_path.read_text(errors="replace")
    assert "WWW-Authenticate: Digest" in messages
    if final == 403:
        assert "wrong credentials for 'mallory'" in messages
