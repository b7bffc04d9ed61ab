"""The delivery commands: enable an integration, redeliver executions, send a test
request through an integration."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from runhook.cli import explain
from runhook.cli.connect import send_command
from runhook.cli.show import count
from runhook.core.durations import parse_duration

# `runhook redeliver --failed` looks this far back unless --since says otherwise.
SINCE = "24h"


def cmd_enable(args: argparse.Namespace) -> int:
    answer = send_command(args, {"type": "command.enable", "integration": args.integration})
    if answer is None:
        return 1
    # The reason it was disabled ends with the hint just followed: not said again.
    was = (answer["was_disabled"] or "").removesuffix(
        f"; `runhook enable {args.integration}` resumes")
    print(f"{args.integration}: enabled" + (f" (was disabled: {was})" if was else
                                            " (it was not disabled)"))
    return 0


def cmd_redeliver(args: argparse.Namespace) -> int:
    if bool(args.execution) == bool(args.failed):
        print("runhook: give an EXECUTION_ID, or --failed (with --since DURATION, "
              f"default {SINCE})", file=sys.stderr)
        return 2
    request: dict[str, Any] = {"type": "command.redeliver"}
    if args.execution:
        request["id"] = args.execution
    else:
        try:
            request.update(failed=True, since=parse_duration(args.since))
        except ValueError as exc:
            print(f"runhook: --since: {exc}", file=sys.stderr)
            return 2
        if args.automation:
            request["automation"] = args.automation
    answer = send_command(args, request)
    if answer is None:
        return 1
    ids = answer["redelivered"]
    print(f"{count(len(ids), 'execution')} queued for redelivery (same webhook-id)"
          + (f", of those FAILED in the last {args.since}" if args.failed else ""))
    for execution_id in ids:
        print(f"  {execution_id}")
    for said in (answer.get("notes") or {}).values():
        print(f"note: {said}")
    left_out = answer.get("left_out") or {}
    if left_out:
        print(f"{len(left_out)} left out:")
        for execution_id, why in left_out.items():
            print(f"  {execution_id}: {why}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    request: dict[str, Any] = {"type": "command.test", "integration": args.integration}
    if args.payload is not None:
        request["payload"] = args.payload
        # Slack takes the payload as text, a webhook as JSON: a payload that parses
        # as JSON is checked as the webhook's, anything else as text.
        for warning in explain.empty_in_test(args.payload, _is_json(args.payload)):
            print(f"warning: {warning}", file=sys.stderr)
    answer = send_command(args, request)
    if answer is None:
        return 1
    test = answer["test"]
    if test["execution_id"] is None:  # refused before anything was sent
        print(f"runhook: not sent: {test['error']}", file=sys.stderr)
        return 1
    status, error = test["status"], test["error"] or ""
    got = f"status {status}" if status is not None else "no answer"
    # The error of an HTTP answer begins with its status, said just before.
    error = error.removeprefix(f"HTTP {status}").removeprefix(": ") if status is not None \
        else error
    print(f"execution {test['execution_id']}: {got}" + (f", {error}" if error else ""))
    if test["response"]:
        print(test["response"])
    return 0 if test["status"] is not None and 200 <= test["status"] < 300 else 1


def _is_json(text: str) -> bool:
    try:
        msgspec.json.decode(text.encode())
    except msgspec.DecodeError:
        return False
    return True
