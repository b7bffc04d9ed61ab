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



class LineFloorServer:
    """The floor the ingest target names: an asyncio server that reads line by
    line, decodes each with msgspec (typed, as the daemon does) and writes one
    answer per line: what any daemon answering every line pays, with none of
    runhook's work (routing, windows, SQLite). `strict`: each line decoded into
    the event's own Struct (RunMetrics) rather than the tagged union of every
    request type, which is cheaper: the stricter floor of issue 29."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.directory = Path(tempfile.mkdtemp(prefix="rhf", dir="/tmp"))
        self.path = str(self.directory / "floor.sock")
        ready_r, ready_w = os.pipe()
        self._pid = os.fork()
        if self._pid == 0:
            os.close(ready_r)
            import asyncio
            asyncio.run(self._serve(ready_w))
            os._exit(0)
        os.close(ready_w)
        os.read(ready_r, 1)  # listening
        os.close(ready_r)

    async def _serve(self, ready: int) -> None:
        import asyncio

        from runhook.core.events import RunMetrics
        from runhook.ingest.protocol import Request
        decoder: msgspec.json.Decoder[object] = msgspec.json.Decoder(
            RunMetrics if self.strict else Request)
        done = asyncio.Event()

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while line := await reader.readline():
                decoder.decode(line)
                writer.write(b'{"ok":true}\n')
                if writer.transport.get_write_buffer_size() > 1 << 20:
                    await writer.drain()
            writer.close()
            done.set()

        server = await asyncio.start_unix_server(client, self.path, limit=1 << 21)
        os.write(ready, b"r")
        os.close(ready)
        async with server:
            await done.wait()

    def close(self) -> None:
        os.waitpid(self._pid, 0)
