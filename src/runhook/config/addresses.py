"""`server.http` and `server.socket`: the HTTP server's address, checked at load to be a
port on loopback, and the socket's path, checked to fit a Unix socket address."""

from __future__ import annotations

import ipaddress
import os
import re
import sys

# http.serve binds an empty host (":8787") to this, as it always has.
DEFAULT_HOST = "127.0.0.1"
# The bytes of sockaddr_un's sun_path, the NUL that ends the path among them: 108 on
# Linux, 104 on macOS and the BSDs. A longer path is refused only when serve binds it
# ("AF_UNIX path too long"), after the database was created.
SUN_PATH = 104 if sys.platform == "darwin" or "bsd" in sys.platform else 108
_PORT = re.compile(r"[0-9]{1,5}")  # ASCII digits only: int() would also take " 80", "8_0", "８０"
# Why, as it is now: the console needs a login session, but the server speaks plain
# HTTP, so the login token and the session cookie would cross the network readable;
# health, readiness and metrics answer without a session.
_WHY_LOOPBACK = ("the HTTP server has no TLS, so beyond this machine the console's login "
                 "token and session cookie would cross the network in clear text, and "
                 "/healthz, /readyz and /metrics answer anyone; it listens on 127.0.0.0/8, "
                 "::1 or localhost only, and no setting changes that: from elsewhere, "
                 "open the console through an SSH tunnel (ssh -L {port}:127.0.0.1:{port} HOST)")


def loopback_http(address: str) -> tuple[str, int]:
    """The (host, port) of a non-empty `server.http` such as "127.0.0.1:8787",
    "[::1]:8787" or "localhost:8787", read exactly as http.serve reads it (split at
    the last colon); ValueError says what is wrong."""
    host, colon, port_text = address.rpartition(":")
    if not colon or not port_text:
        raise ValueError(f'expected HOST:PORT such as "127.0.0.1:8787" (or "" for no HTTP '
                         f"server), got {address!r}")
    if not _PORT.fullmatch(port_text) or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port must be a number from 1 to 65535, got {port_text[:12]!r}")
    port = int(port_text)
    if port == 0:
        raise ValueError('port 0 would be any free port, and nobody could know which; '
                         'give a port from 1 to 65535, or http = "" for no HTTP server')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        return DEFAULT_HOST, port
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            # A name (other than localhost) or a short form such as 127.1: what it
            # binds to is up to the resolver, not to this file.
            loopback = False
        if not loopback:
            raise ValueError(f"{host!r} is not a loopback address: "
                             + _WHY_LOOPBACK.format(port=port))
    return host, port


def socket_problem(path: str) -> str | None:
    """Why `server.socket` (as anchored: relative to the configuration file's directory,
    as the daemon binds it) cannot be a Unix socket's path here; None when it can."""
    size = len(os.fsencode(path))
    if size < SUN_PATH:
        return None
    return (f"{path!r} is {size} bytes; a Unix socket's path is at most {SUN_PATH - 1} "
            f"bytes on this system: choose a shorter one (such as /run/runhook/events.sock)")
