"""Baselines measured in the same run: what the machine does without runhook's logic."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import msgspec


class RawDecodeServer:
    """A Unix socket server that reads NDJSON, decodes each line with msgspec and
    answers `{"ok":true}` per line: the floor of what ingest can cost."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="rhr", dir="/tmp"))
        self.path = str(self.directory / "raw.sock")
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen()
        self._pid = os.fork()
        if self._pid == 0:  # the server lives in its own process, like the daemon
            self._serve()
            os._exit(0)
        self._server.close()

    def _serve(self) -> None:
        decoder = msgspec.json.Decoder()
        conn, _ = self._server.accept()
        rest = b""
        while True:
            data = conn.recv(256 * 1024)
            if not data:
                return
            lines = (rest + data).split(b"\n")
            rest = lines.pop()
            for line in lines:
                decoder.decode(line)
            conn.sendall(b'{"ok":true}\n' * len(lines))

    def close(self) -> None:
        os.waitpid(self._pid, 0)

