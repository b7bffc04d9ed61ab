"""`runhook console`: print (or open) the console's login URL, read from the login file
next to the events socket; `--rotate` has the daemon make a new token first."""

from __future__ import annotations

import argparse
import sys
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec

Command = Callable[[argparse.Namespace, dict[str, Any]], "dict[str, Any] | None"]


class LoginFile(msgspec.Struct):
    url: str
    token: str


def login_file(socket: str) -> Path | None:
    """The console's login file for the daemon at `socket`, None for a remote URL
    (the console is on loopback: a session starts on the daemon's machine)."""
    if socket.startswith("unix://"):
        socket = socket[len("unix://"):]
    elif "://" in socket:
        return None
    return Path(f"{socket}.console")


def register(sub: Any, client_command: Callable[[str, str], argparse.ArgumentParser],
             command: Command, socket_path: Callable[[argparse.Namespace], str]) -> None:
    def run(args: argparse.Namespace) -> int:
        socket = socket_path(args)
        path = login_file(socket)
        if path is None:
            print(f"runhook: the console is on the daemon's machine; {socket} is remote: "
                  "give the local --socket or --config", file=sys.stderr)
            return 2
        if args.rotate:
            if command(args, {"type": "command.console_rotate"}) is None:
                return 1
            print("new console token: every open session has to log in again",
                  file=sys.stderr)
        try:
            login = msgspec.json.decode(path.read_bytes(), type=LoginFile)
        except FileNotFoundError:
            named = "" if args.config or args.socket else (
                " (by $RUNHOOK_URL or the default socket; give the daemon's configuration "
                "file with --config FILE)")
            print(f"runhook: no console login file {path}{named}: is the daemon running, "
                  "with [server] http set?", file=sys.stderr)
            return 1
        except PermissionError:
            print(f"runhook: cannot read {path}: the console is for the events socket's "
                  "owner and group", file=sys.stderr)
            return 1
        except (OSError, msgspec.DecodeError) as exc:
            print(f"runhook: cannot read {path}: {exc}", file=sys.stderr)
            return 1
        if args.token:
            print(login.token)
            return 0
        url = f"{login.url}login?token={quote(login.token, safe='')}"
        print(url)
        if args.open and not webbrowser.open(url):
            print("runhook: no browser to open; open the URL above", file=sys.stderr)
        return 0

    p = client_command("console", "print the console's login URL (the token is in a file "
                                  "only the events socket's owner and group can read)")
    p.add_argument("--open", action="store_true", help="open it in a browser too")
    p.add_argument("--rotate", action="store_true",
                   help="make a new token first: every open session is logged out")
    p.add_argument("--token", action="store_true",
                   help="print only the token (for `Authorization: Bearer` on the JSON API)")
    p.set_defaults(func=run)
