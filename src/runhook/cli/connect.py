"""How a client command finds the daemon (--socket, --config, $RUNHOOK_URL, the
default socket) and sends it one command, saying where it looked when it is not there."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from runhook.client import Client
from runhook.config.locate import socket_of
from runhook.config.model import ConfigError
from runhook.core import constants


def socket_path(args: argparse.Namespace) -> str:
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


def connect(args: argparse.Namespace) -> Client:
    """A client; over HTTPS its token is $RUNHOOK_TOKEN."""
    path = socket_path(args)
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


def send_command(args: argparse.Namespace, request: dict[str, Any]) -> dict[str, Any] | None:
    """Send one command; print the refusal and return None if refused."""
    with connect(args) as client:
        answer = client.request(request)
    if not answer.get("ok"):
        print(f"runhook: {answer.get('error')}", file=sys.stderr)
        return None
    return answer
