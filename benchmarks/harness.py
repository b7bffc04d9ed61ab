"""Benchmark plumbing: start the real daemon, drive it over its socket, read its RSS."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    def __init__(self, process: subprocess.Popen[bytes], directory: Path) -> None:
        self.process = process
        self.directory = directory
        self.socket = str(directory / "ev.sock")
        self.database = directory / "runhook.db"

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        """User + system CPU of the daemon process so far, all its threads."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def daemon(body: str, http: bool = False, prefix: str = "rhb",
           server: str = "") -> Iterator[Daemon]:
    """A daemon on a fresh database in a short temporary directory; ready when yielded.
    `server`: more lines for its [server] table."""
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    config = directory / "runhook.toml"
    config.write_text(f"""
[server]
socket = "{directory}/ev.sock"
http = "{f'127.0.0.1:{free_port()}' if http else ''}"
database = "{directory}/runhook.db"
{server}
{body}
""")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(directory / "notify.sock"))
    notify.settimeout(60)
    env = {**os.environ, "NOTIFY_SOCKET": str(directory / "notify.sock")}
    log = (directory / "daemon.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "runhook", "serve", "--config", str(config),
                                "--log-level", os.environ.get("RH_BENCH_LOG", "info")], env=env, stdout=log, stderr=log)
    try:
        while b"READY=1" not in notify.recv(4096):
            pass
        yield Daemon(process, directory)
    finally:
        notify.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


def pipeline(path: str, lines: Iterable[bytes], count: int, chunk: int = 256 * 1024) -> float:
    """Write `count` lines on one connection while a thread reads the answers;
    returns seconds from the first byte sent to the last answer read."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    bad: list[bytes] = []

    def read() -> None:
        seen, rest = 0, b""
        while seen < count:
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectionError("daemon closed the connection")
            data = rest + data
            seen += data.count(b"\n")
            if b'"ok":false' in data and not bad:
                bad.append(data[:300])
            rest = data[data.rfind(b"\n") + 1:]

    reader = threading.Thread(target=read)
    start = time.perf_counter()
    reader.start()
    buf: list[bytes] = []
    size = 0
    for line in lines:
        buf.append(line)
        size += len(line)
        if size >= chunk:
            sock.sendall(b"".join(buf))
            buf, size = [], 0
    if buf:
        sock.sendall(b"".join(buf))
    reader.join()
    elapsed = time.perf_counter() - start
    sock.close()
    if bad:
        raise RuntimeError(f"daemon refused lines: {bad[0]!r}")
    return elapsed


def rate(n: float, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s"


def report(title: str, rows: list[tuple[str, str, str, str]], started: float) -> None:
    """The run's heading (machine, cores, Python, seconds) and its table."""
    import platform
    print(f"{title}, {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {time.perf_counter() - started:.0f}s")
    header = ("scenario", "figure", "baseline (same run)", "ratio / note")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
