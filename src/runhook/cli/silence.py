"""`runhook silence add|list|expire`: the socket's `command.silence_*`, printed for people."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import msgspec

from runhook.cli.show import table, when
from runhook.core.durations import parse_duration

Command = Callable[[argparse.Namespace, dict[str, Any]], "dict[str, Any] | None"]


def _filters(silence: dict[str, Any]) -> str:
    return ", ".join(f"{name} ~ {silence[key]}" for name, key in (
        ("run-name", "run_name"), ("group", "group"), ("collection", "collection"))
        if silence.get(key) is not None)


def _line(silence: dict[str, Any]) -> str:
    filters = _filters(silence)
    state = f"until {when(silence['ends_at'])}" if silence["active"] else \
        f"expired {when(silence['ends_at'])}"
    return (f"{silence['id']}  {silence['automation'] or '(all)'}  {state}"
            + (f"  [{filters}]" if filters else "") + f"  {silence['comment']}")


def listing(silences: list[dict[str, Any]]) -> list[str]:
    """`silence list` as a table under a header, one silence a row."""
    rows = [(s["id"], s["automation"] or "(all)", "active" if s["active"] else "expired",
             when(s["ends_at"]), _filters(s) or "-", s["comment"]) for s in silences]
    return table(("ID", "AUTOMATION", "STATE", "ENDS", "MATCHING", "COMMENT"), rows)


def register(sub: Any, client_command: Callable[[str, str], argparse.ArgumentParser],
             command: Command) -> None:
    """Add `silence` and its three subcommands; `command` sends one request."""
    top = client_command("silence", "mute firings for a while (recorded SKIPPED, not sent)")
    verbs = top.add_subparsers(dest="verb", required=True)
    # The --config/--socket options live on `silence`; each verb repeats them so that
    # `runhook silence list --config FILE` reads naturally too.

    add = verbs.add_parser("add", help="silence an automation (or all) for a while")
    which = add.add_mutually_exclusive_group(required=True)
    which.add_argument("--automation", help="the automation's name")
    which.add_argument("--all", action="store_true", help="every automation")
    add.add_argument("--run-name", help="only runs whose name matches (RE2, search)")
    add.add_argument("--group", help="only runs of a matching group (matches once runs "
                                     "report groups)")
    add.add_argument("--collection", help="only artifacts of a matching collection")
    add.add_argument("--for", dest="duration", required=True, help="how long, e.g. 2h")
    add.add_argument("--comment", required=True, help="why; shown with every skip")
    listing = verbs.add_parser("list", help="active silences and those ended in the last 24 h")
    listing.add_argument("--json", action="store_true")
    expire = verbs.add_parser("expire", help="end a silence now")
    expire.add_argument("id")
    for parser in (add, listing, expire):
        parser.add_argument("--config", default=argparse.SUPPRESS)
        parser.add_argument("--socket", default=argparse.SUPPRESS)
    top.set_defaults(func=lambda args: run(args, command))


def run(args: argparse.Namespace, command: Command) -> int:
    request: dict[str, Any]
    if args.verb == "add":
        try:
            seconds = parse_duration(args.duration)
        except ValueError as exc:
            print(f"runhook: --for: {exc}", file=sys.stderr)
            return 2
        request = {"type": "command.silence_add", "duration": seconds, "comment": args.comment}
        if args.all:
            request["all"] = True
        else:
            request["automation"] = args.automation
        for key in ("run_name", "group", "collection"):
            if getattr(args, key) is not None:
                request[key] = getattr(args, key)
    elif args.verb == "expire":
        request = {"type": "command.silence_expire", "id": args.id}
    else:
        request = {"type": "command.silence_list"}
    answer = command(args, request)
    if answer is None:
        return 1
    if args.verb == "list":
        if args.json:
            print(msgspec.json.encode(answer["silences"]).decode())
        elif not answer["silences"]:
            print("no silences")
        else:
            for line in listing(answer["silences"]):
                print(line)
    else:
        print(_line(answer["silence"]))
    return 0
