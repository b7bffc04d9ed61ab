"""`runhook check-config`: every problem of a configuration file in one pass, or ok."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runhook.config import diagnose
from runhook.config.model import ConfigError
from runhook.config.settings import load


def cmd_check_config(args: argparse.Namespace) -> int:
    if bool(args.file) == bool(args.config):
        print("runhook: give the configuration file, as FILE or --config FILE", file=sys.stderr)
        return 2
    args.file = args.file or args.config
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        print(f"{args.file}: cannot read: {exc.strerror}")
        return 1
    problems = diagnose.check(data, args.file)
    for problem in problems:
        print(f"{args.file}: {problem}")
    if len(problems) > 1:
        print(f"{len(problems)} problems found")
    if problems:
        return 1
    try:
        settings = load(args.file)
    except ConfigError as exc:  # what the one-pass check did not see: never a traceback
        for problem in exc.problems:
            print(f"{args.file}: {problem}")
        return 1
    cluster = settings.cluster
    print(f"{args.file}: ok, {_count(len(settings.automations), 'automation')}, "
          f"{_count(len(settings.integrations), 'integration')}"
          + (f"; cluster node {cluster.node} over {_count(len(cluster.servers), 'NATS server')}"
             if cluster is not None else ""))
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
