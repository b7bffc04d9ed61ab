"""The `runhook` command: the daemon, and the client commands that talk to it."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

import anyio
import msgspec

from runhook import __version__
from runhook.cli import check, console, explain, secret, share, silence, wandb_import
from runhook.cli.cluster_status import cluster_lines
from runhook.cli.show import attempt, count, cut, table, when
from runhook.client import Client, RunhookError
from runhook.config.locate import socket_of
from runhook.config.model import ConfigError
from runhook.config.restart import restart_note
from runhook.config.settings import load
from runhook.core import constants
from runhook.core.durations import parse_duration
from runhook.core.executions import STATES
from runhook.core.schema import StartupError

# `runhook redeliver --failed` looks this far back unless --since says otherwise.
SINCE = "24h"


def _socket_path(args: argparse.Namespace) -> str:
    """An explicit --socket or --config first (what this command line says), then
    $RUNHOOK_URL (unix:///path or https://host:port), then the default socket."""
    if args.socket:
        return str(args.socket)
    if args.config:
        # Only the socket is read: a typo elsewhere in the file must not keep a
        # command (reload above all, which says why the daemon refused it) from it.
        try:
            return socket_of(args.config)
        except ConfigError as exc:
            raise SystemExit(f"runhook: {exc}") from None
    return os.environ.get("RUNHOOK_URL") or constants.DEFAULT_SOCKET


def _connect(args: argparse.Namespace) -> Client:
    """A client; over HTTPS its token is $RUNHOOK_TOKEN."""
    path = _socket_path(args)
    try:
        return Client(path)
    except OSError as exc:
        raise SystemExit(f"runhook: cannot reach the daemon at {path}: {exc.strerror or exc}"
                         f" ({where_from(args)})") from None


def where_from(args: argparse.Namespace) -> str:
    """Where the address a client command tried came from, and how to give another."""
    if args.socket:
        return "given by --socket: is the daemon running there?"
    if args.config:
        return f"the socket of {args.config}: is its daemon running?"
    if os.environ.get("RUNHOOK_URL"):
        return "from $RUNHOOK_URL; --config FILE gives the socket of the daemon's file"
    return ("the default socket; give the daemon's configuration file with --config FILE, "
            "or --socket PATH, or set $RUNHOOK_URL (unix:///PATH or https://HOST:PORT)")


def cmd_serve(args: argparse.Namespace) -> int:
    from runhook import app
    from runhook.core import logs
    try:
        settings = load(args.config)
    except ConfigError as exc:
        print(f"runhook: refusing to start, {exc.source} has errors:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    logs.setup(args.log_level, args.log_format, settings.redactor)
    failed = False
    _tune_runtime()
    try:
        main = app.main
        if settings.cluster is not None:  # only then: nats-py is imported by it
            from runhook.app import cluster
            main = cluster.main
        anyio.run(main, settings, backend="asyncio",
                  backend_options={"use_uvloop": _have_uvloop()})
    except* KeyboardInterrupt:
        pass
    except* StartupError as group:
        for error in _leaves(group):
            logging.getLogger("runhook").error("cannot start: %s", error)
        failed = True
    return 1 if failed else 0


def _leaves(group: BaseExceptionGroup[StartupError]) -> list[BaseException]:
    """The errors in a group of task groups' errors, nesting flattened."""
    out: list[BaseException] = []
    for item in group.exceptions:
        out.extend(_leaves(item) if isinstance(item, BaseExceptionGroup) else [item])
    return out


def _tune_runtime() -> None:
    """Every event allocates a few dozen short-lived objects; with the default
    threshold (700) the collector ran every few events and re-scanned the run
    windows each time (measured: ingest 218k -> 250k values/s, delivery +8 %).
    Objects from start-up (modules, configuration) are frozen out of collections.
    The GIL switch interval is 1 ms, not 5: the event loop waited that long for the
    database thread between two bindings (delivery ~3 % faster, ingest unchanged)."""
    gc.freeze()
    gc.set_threshold(100_000, 20, 10)
    sys.setswitchinterval(0.001)


def _have_uvloop() -> bool:
    """uvloop makes socket I/O about a fifth cheaper (measured: ingest 188k -> 228k
    values/s); the daemon runs the same on asyncio's own loop without it."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _stdin_lines() -> Iterator[bytes]:
    for line in sys.stdin.buffer:
        if line.strip():
            yield line


def cmd_send(args: argparse.Namespace) -> int:
    failed = 0
    with _connect(args) as client:
        source: Any = [args.event.encode()] if args.event else _stdin_lines()
        for answer in client.send_many(source):
            failed += not answer.get("ok")
            sys.stdout.write(msgspec.json.encode(answer).decode() + "\n")
            sys.stdout.flush()
    return 1 if failed else 0


def cmd_history(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        try:
            rows = client.history(args.automation, args.state, args.limit)
        except RunhookError as exc:
            print(f"runhook: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(msgspec.json.encode(rows).decode())
        return 0
    if not rows:
        print("no executions")
        return 0
    header = ("CREATED", "EXECUTION", "AUTOMATION", "EVENT", "STATE", "TRIES", "REASON")
    for line in table(header, [(when(r["created_at"]), r["id"], r["automation"],
                                r["event_kind"], r["state"], str(r["attempts"]),
                                cut(r["reason"] or "", 60)) for r in rows]):
        print(line)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        answer = client.request({"type": "query.status"})
    if not answer.get("ok"):
        print(f"runhook: {answer.get('error')}", file=sys.stderr)
        return 1
    status = answer["status"]
    if args.json:
        print(msgspec.json.encode(status).decode())
        return 0
    print(f"runhook {status['version']}, up {status['uptime_s']:.0f}s, config {status['config']}")
    print(", ".join([
        count(sum(status["events_received"].values()), "event") + " received",
        count(status["lines_rejected"], "line") + " rejected",
        count(status["connections"], "connection"), count(status["scopes"], "scope"),
        count(status["tracked_runs"], "run") + " tracked"]))
    if status.get("cluster"):
        print("\n".join(cluster_lines(status["cluster"])))
    print("\nAUTOMATIONS (counts over the last 24 h)")
    for a in status["automations"]:
        last = a.get("last")
        counts = " ".join(f"{k.lower()}={v}" for k, v in sorted(a.get("counts_24h", {}).items()))
        print(f"  {a['name']:<28} {a['kind']:<22} {a['scope']:<26} "
              f"{'enabled ' if a['enabled'] else 'disabled'}  "
              f"last: {last['state'] + ' ' + when(last['created_at']) if last else 'never':<36} "
              f"{counts}")
    if status.get("silences"):
        print("\nSILENCES (matching firings are recorded SKIPPED)")
        for s in status["silences"]:
            print(f"  {s['id']}  {s['automation'] or '(all)'}  until {when(s['ends_at'])}"
                  f"  {s['comment']}")
    print("\nINTEGRATIONS")
    for i in status["integrations"]:
        state = f"DISABLED: {i['disabled']}" if i["disabled"] else \
            f"last error: {i['last_error'] or '-'}"
        print(f"  {i['name']:<28} {i['kind']:<8} rate {i['rate'] or 'unlimited':<10} "
              f"sent {i['sent']:<8} in flight {i['in_flight']:<4} {state}")
    if status.get("sources"):
        print("\nSOURCES (followed)")
        for f in status["sources"]:
            lag = "never looked" if f["lag_s"] is None else f"lag {f['lag_s']:.0f}s"
            print(f"  {f['name']:<28} {f['kind']:<16} {lag:<14} {f['runs']} runs  "
                  f"{f['events']} events  {f['requests']} requests  "
                  f"last error: {f['last_error'] or '-'}")
    print("\nRECENT EXECUTIONS")
    for e in status["recent"]:
        print(f"  {when(e['created_at'])}  {e['id']}  {e['automation']:<24} "
              f"{e['event_kind']:<20} {e['state']:<9} {e['reason'] or ''}")
        for t in e["attempt_list"]:
            print(f"      attempt {t['number']}: {when(t['started_at'])} "
                  + attempt(t["status"], t["error"], t["duration_ms"]))
    return 0


def _command(args: argparse.Namespace, request: dict[str, Any]) -> dict[str, Any] | None:
    """Send one command; print the refusal and return None if refused."""
    with _connect(args) as client:
        answer = client.request(request)
    if not answer.get("ok"):
        print(f"runhook: {answer.get('error')}", file=sys.stderr)
        return None
    return answer


def cmd_enable(args: argparse.Namespace) -> int:
    answer = _command(args, {"type": "command.enable", "integration": args.integration})
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
    answer = _command(args, request)
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
    answer = _command(args, request)
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


def cmd_reload(args: argparse.Namespace) -> int:
    answer = _command(args, {"type": "command.reload"})
    if answer is None:
        return 1
    print("configuration reloaded" + restart_note(answer.get("restart", [])))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="runhook", description=__doc__)
    top.add_argument("--version", action="version", version=f"runhook {__version__}")
    sub = top.add_subparsers(dest="command", required=True)

    def client_command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", help="find the daemon's socket in this configuration file")
        p.add_argument("--socket", help="the daemon's socket or URL (default $RUNHOOK_URL, "
                                        f"else {constants.DEFAULT_SOCKET})")
        return p

    p = sub.add_parser("serve", help="run the daemon")
    p.add_argument("--config", required=True)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check-config", help="validate a configuration file")
    p.add_argument("file", nargs="?", help="the configuration file (or --config FILE)")
    p.add_argument("--config", help="the same, spelt as every other command takes it")
    p.set_defaults(func=check.cmd_check_config)

    p = client_command("send", "send one event (argument) or NDJSON events (stdin)")
    p.add_argument("event", nargs="?", help="one JSON event; without it, NDJSON from stdin")
    p.set_defaults(func=cmd_send)

    p = client_command("history", "list recent executions")
    p.add_argument("--automation")
    p.add_argument("--state", choices=STATES, type=str.upper, help="any case")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_history)

    p = client_command("enable", "resume an integration a 410 answer disabled")
    p.add_argument("integration")
    p.set_defaults(func=cmd_enable)

    p = client_command("redeliver", "send executions again (same webhook-id)")
    p.add_argument("execution", nargs="?", help="one execution id")
    p.add_argument("--failed", action="store_true", help="every FAILED execution of --since")
    p.add_argument("--since", default=SINCE,
                   help="with --failed: how far back (default %(default)s; e.g. 2h)")
    p.add_argument("--automation", help="with --failed: only this automation's")
    p.set_defaults(func=cmd_redeliver)

    p = client_command("test", "send a test request through an integration")
    p.add_argument("integration")
    p.add_argument("--payload", help="the JSON body to send (webhooks) or the text (Slack)")
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("preview", help="print the request an automation would send for an "
                                       "event, without sending it")
    p.add_argument("automation")
    p.add_argument("--event", required=True, help="one JSON event, as `runhook send` takes")
    p.add_argument("--config", required=True)
    p.set_defaults(func=explain.cmd_preview)

    p = sub.add_parser("vars", help="the template variables, and the event kinds that set each")
    p.add_argument("kind", nargs="?", help="only those this kind sets (e.g. RUN_STATE)")
    p.set_defaults(func=explain.cmd_vars)

    p = client_command("reload", "re-read the configuration file (like SIGHUP)")
    p.set_defaults(func=cmd_reload)

    silence.register(sub, client_command, _command)
    console.register(sub, client_command, _command, _socket_path)
    secret.register(sub)
    share.register(sub)
    wandb_import.register(sub)

    p = client_command("status", "what the daemon is doing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RunhookError as exc:  # over HTTPS: a whole request refused (401, 413)
        print(f"runhook: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `runhook vars | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # the daemon went away mid-command, or HTTPS failed
        print(f"runhook: cannot talk to the daemon: {exc}", file=sys.stderr)
        return 1


