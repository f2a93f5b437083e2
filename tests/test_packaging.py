"""setup.cfg lists its packages by hand (vidim_daemon lives in daemon/): keep it complete."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_is_listed_in_setup_cfg() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "vidim").rglob("__init__.py")
    }
    on_disk.add("vidim_daemon")
    assert listed == on_disk
