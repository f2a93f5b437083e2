"""A real Asterisk 20 for the interop tests: the notes' minimal configuration on loopback.

Started with ``asterisk -f`` in its own process group (``setsid``), with its own
configuration and run directories (a short path under /tmp: the control socket's
path must fit in a Unix socket name), the dialplan and ConfBridge files of
``examples/asterisk/`` as they are, and an AMI user for vidim.  Stopped by its
process group in a finalizer.  ``asterisk -rx`` talks to it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sip_peers import HOST, REPO_ROOT, stop_process_group

EXAMPLES = REPO_ROOT / "examples" / "asterisk"
AMI_USER = "vidim"
AMI_SECRET = "interop-secret"
BOOT_TIMEOUT = 30.0


def asterisk_binary() -> str | None:
    return shutil.which("asterisk") or (
        "/usr/sbin/asterisk" if Path("/usr/sbin/asterisk").exists() else None
    )


def _configs(cfg: Path, run: Path, sip_port: int, ami_port: int) -> dict[str, str]:
    return {
        "asterisk.conf": f"""[directories]
astetcdir => {cfg}
astmoddir => /usr/lib/asterisk/modules
astvarlibdir => {run}/lib
astdbdir => {run}/db
astkeydir => {run}/lib
astdatadir => /var/lib/asterisk
astagidir => {run}/lib/agi-bin
astspooldir => {run}/spool
astrundir => {run}/run
astlogdir => {run}/log
astsbindir => /usr/sbin
[options]
nofork = yes
""",
        "modules.conf": """[modules]
autoload = yes
noload => chan_sip.so
noload => res_hep.so
noload => res_hep_pjsip.so
noload => res_hep_rtcp.so
""",
        "logger.conf": "[general]\n[logfiles]\nfull => notice,warning,error,verbose,dtmf\n",
        "rtp.conf": "[general]\nrtpstart=31000\nrtpend=31999\n",
        "pjsip.conf": f"""[transport-udp]
type = transport
protocol = udp
bind = {HOST}:{sip_port}

[loopback]
type = endpoint
context = vidim
disallow = all
allow = ulaw,alaw
allow = vp8,h264
max_audio_streams = 1
max_video_streams = 1
direct_media = no
rtp_symmetric = yes
force_rport = yes
transport = transport-udp

[loopback]
type = identify
endpoint = loopback
match = {HOST}
""",
        "manager.conf": f"""[general]
enabled = yes
port = {ami_port}
bindaddr = {HOST}
; the dialplan's VIDIM_KEY in every channel event: ConfbridgeJoin/Leave name the key
channelvars = VIDIM_KEY

[{AMI_USER}]
secret = {AMI_SECRET}
deny = 0.0.0.0/0.0.0.0
permit = {HOST}/255.255.255.255
read = call
write = system,call
; only what vidim reads: the rest of the call class is not sent
eventfilter(action(include),name(ConfbridgeJoin)) =
eventfilter(action(include),name(ConfbridgeLeave)) =
""",
        "extensions.conf": (EXAMPLES / "extensions.conf").read_text(),
        "confbridge.conf": (EXAMPLES / "confbridge.conf").read_text(),
    }


@dataclass
class Asterisk:
    proc: subprocess.Popen[bytes]
    binary: str
    config: Path
    run: Path
    sip_port: int
    ami_port: int

    @property
    def focus_uri(self) -> str:
        return f"sip:vidim-conference@{HOST}:{self.sip_port}"

    def cli(self, command: str) -> str:
        done = subprocess.run(
            [self.binary, "-C", str(self.config / "asterisk.conf"), "-rx", command],
            capture_output=True, timeout=15, check=False,
        )  # fmt: skip
        return done.stdout.decode(errors="replace")

    def log(self) -> str:
        path = self.run / "log" / "full"
        return path.read_text(errors="replace") if path.exists() else ""

    def astdb(self, family: str) -> dict[str, str]:
        """``database show FAMILY`` as {key: value} (keys without the family)."""
        out = {}
        for line in self.cli(f"database show {family}").splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip().startswith(f"/{family}/"):
                out[key.strip()[len(family) + 2 :]] = value.strip()
        return out

    def members(self, conference_id: str) -> list[str]:
        """Channels in a ConfBridge (``confbridge list ID``), empty when there is none."""
        out = []
        for line in self.cli(f"confbridge list {conference_id}").splitlines():
            if line.startswith("PJSIP/"):
                out.append(line.split()[0])
        return out

    def wait_until(self, check: object, what: str, timeout: float = 10.0) -> None:
        """Poll an ``asterisk -rx`` check (bounded): Asterisk tells no one when it is done."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():  # type: ignore[operator]
                return
            time.sleep(0.2)
        raise AssertionError(f"Asterisk: no {what} within {timeout}s\n{self.log()[-4000:]}")

    def stop(self) -> int:
        code = stop_process_group(self.proc)
        shutil.rmtree(self.run.parent, ignore_errors=True)
        return code


def start_asterisk(binary: str, sip_port: int, ami_port: int) -> Asterisk:
    base = Path(tempfile.mkdtemp(prefix="vast-", dir="/tmp"))
    cfg, run = base / "etc", base / "run"
    for directory in (cfg, run / "lib", run / "db", run / "spool", run / "run", run / "log"):
        directory.mkdir(parents=True)
    for name, text in _configs(cfg, run, sip_port, ami_port).items():
        (cfg / name).write_text(text)
    proc = subprocess.Popen(
        [binary, "-C", str(cfg / "asterisk.conf"), "-f"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=open(base / "stderr", "wb"), start_new_session=True,  # noqa: SIM115
    )  # fmt: skip
    asterisk = Asterisk(proc, binary, cfg, run, sip_port, ami_port)
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"asterisk exited with {proc.returncode}\n{asterisk.log()}")
            if "fully booted" in asterisk.cli("core waitfullybooted").lower() or (
                "Asterisk" in asterisk.cli("core show uptime")
            ):
                return asterisk
            time.sleep(0.3)
        raise AssertionError(f"asterisk did not boot within {BOOT_TIMEOUT}s\n{asterisk.log()}")
    except BaseException:
        asterisk.stop()
        raise
