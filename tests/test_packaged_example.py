"""The example configuration the package ships checks clean as it is, and what
systemd/README.md quotes of it is in it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from runhook.cli.share import SHARE

ROOT = Path(__file__).resolve().parent.parent


def test_the_packaged_example_passes_check_config_as_shipped():
    # Nothing to provide: its signing key is packaged beside it (`runhook share`).
    checked = subprocess.run([sys.executable, "-m", "runhook", "check-config",
                              str(SHARE / "runhook.toml")],
                             check=False, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout == f"{SHARE / 'runhook.toml'}: ok, 4 automations, 1 integration\n"


def test_the_paths_the_systemd_guide_quotes_are_in_the_example_and_the_unit():
    guide = (ROOT / "systemd/README.md").read_text()
    example = (SHARE / "runhook.toml").read_text()
    assert example == (ROOT / "config/runhook.toml").read_text()  # the file it points to
    quoted = re.findall(r'`((?:socket|database) = "[^"]+")`', guide)
    assert quoted == ['socket = "/run/runhook/events.sock"',
                      'database = "/var/lib/runhook/runhook.db"']
    for setting in quoted:  # given in the example's comment for systemd
        assert setting in example, setting
    for path in re.findall(r"`(\.\./var/[^`]+)`", guide):  # the example's own (make run)
        assert f'"{path}"' in example, path
    # The directories the unit makes (RuntimeDirectory=, StateDirectory= runhook).
    unit = (SHARE / "runhook.service").read_text()
    assert "RuntimeDirectory=runhook\n" in unit and "StateDirectory=runhook\n" in unit
