"""`runhook share`: where an install keeps the systemd unit and the example configuration."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import runhook

SHARE = Path(runhook.__file__).resolve().parent / "share"


def cmd_share(args: argparse.Namespace) -> int:
    for path in sorted(SHARE.iterdir()):
        if not path.name.startswith(("_", ".")):
            print(path)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("share", help="print the paths of the packaged systemd unit, its "
                                     "sysusers and tmpfiles, and the example configuration")
    p.set_defaults(func=cmd_share)
