"""Where a configuration file puts the daemon's socket, read without judging the rest.

A client command (`status`, `history`, `reload`, ...) needs only the socket. A typo
elsewhere in the file, the very thing one runs `reload` to hear about, must not keep
it from the daemon still running on the file it loaded last."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from runhook.config.model import ConfigError
from runhook.core import constants

# `socket = "..."` (or '...') on a line of its own, for a file TOML cannot parse.
_SOCKET_LINE = re.compile(r"""^\s*socket\s*=\s*(?:"([^"\\]*)"|'([^']*)')\s*(?:#.*)?$""")
_TABLE_LINE = re.compile(r"^\s*\[\s*([^\]]*?)\s*\]\s*(?:#.*)?$")


def socket_of(path: str | Path) -> str:
    """The socket the file at `path` names (relative to the file's directory, as the
    daemon reads it), or the default one when it names none. ConfigError only when the
    file cannot be read, or names a socket that is not a string."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from None
    text = data.decode("utf-8", errors="replace")
    try:
        found = _from_document(tomllib.loads(text), str(path))
    except (tomllib.TOMLDecodeError, RecursionError, ValueError):
        found = _from_lines(text)
    socket = found or constants.DEFAULT_SOCKET
    if Path(socket).is_absolute():
        return socket
    return os.path.normpath(Path(path).parent / socket)


def _from_document(document: dict[str, Any], source: str) -> str | None:
    server = document.get("server")
    if not isinstance(server, dict) or "socket" not in server:
        return None
    socket = server["socket"]
    if not isinstance(socket, str) or not socket:
        raise ConfigError(source, ["server.socket: expected a path (a non-empty string)"])
    return socket


def _from_lines(text: str) -> str | None:
    """The [server] table's socket line, read line by line: the file has a syntax
    error somewhere, most likely not on that line."""
    table = ""
    for line in text.splitlines():
        header = _TABLE_LINE.match(line)
        if header:
            table = header.group(1)
            continue
        if table == "server":
            match = _SOCKET_LINE.match(line)
            if match:
                return match.group(1) if match.group(1) is not None else match.group(2)
    return None
