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
from runhook.cli.connect import connect, send_command, socket_path
from runhook.cli.deliveries import SINCE, cmd_enable, cmd_redeliver, cmd_test
from runhook.cli.show import attempt, count, cut, table, when
from runhook.client import RunhookError
from runhook.config.model import ConfigError
from runhook.config.restart import restart_note
from runhook.config.settings import load
from runhook.core import constants
from runhook.core.executions import STATES
from runhook.core.schema import StartupError


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
    with connect(args) as client:
        source: Any = [args.event.encode()] if args.event else _stdin_lines()
        for answer in client.send_many(source):
            failed += not answer.get("ok")
            sys.stdout.write(msgspec.json.encode(answer).decode() + "\n")
            sys.stdout.flush()
    return 1 if failed else 0


def cmd_history(args: argparse.Namespace) -> int:
    with connect(args) as client:
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
    with connect(args) as client:
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


def cmd_reload(args: argparse.Namespace) -> int:
    answer = send_command(args, {"type": "command.reload"})
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

    silence.register(sub, client_command, send_command)
    console.register(sub, client_command, send_command, socket_path)
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


