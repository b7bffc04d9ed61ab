"""Is nats-py's per-message overhead the wall? Client CPU per JetStream publish (with
a message id, as runhook's are) and its ack, nats-py's publish_async against a
minimal client on asyncio streams (HPUB with a reply subject, the acks parsed off
one wildcard inbox), on one nats-server. CPU time is the benchmark process's own:
what a node would spend, whatever else loads the machine."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

import nats
from nats.js.api import StreamConfig
from nats_cluster import NatsCluster

COUNT = 20_000
WINDOW = 512  # publishes in flight at most (runhook's publishes are batches of this order)
PAYLOAD = b"x" * 300  # about an executions message


async def with_nats_py(url: str, subject: str) -> tuple[float, float]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, COUNT, WINDOW):
        futures = [await js.publish_async(subject, PAYLOAD, headers={"Nats-Msg-Id": f"a{i}"})
                   for i in range(start, min(COUNT, start + WINDOW))]
        await asyncio.gather(*futures)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await nc.close()
    return cpu, wall


async def with_streams(host: str, port: int, subject: str) -> tuple[float, float]:
    reader, writer = await asyncio.open_connection(host, port)
    await reader.readline()  # INFO
    writer.write(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,'
                 b'"no_responders":true,"protocol":1}\r\nSUB _A.* 1\r\nPING\r\n')
    while (await reader.readline()) != b"PONG\r\n":
        pass
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, COUNT, WINDOW):
        end = min(COUNT, start + WINDOW)
        out = []
        for i in range(start, end):
            header = b"NATS/1.0\r\nNats-Msg-Id: b%d\r\n\r\n" % i
            out.append(b"HPUB %s _A.%d %d %d\r\n%s%s\r\n" % (
                subject.encode(), i, len(header), len(header) + len(PAYLOAD), header, PAYLOAD))
        writer.write(b"".join(out))
        got = 0
        while got < end - start:  # MSG _A.<i> 1 <size>\r\n{"stream":...,"seq":n}\r\n
            line = await reader.readline()
            if line.startswith(b"MSG "):
                size = int(line.rsplit(b" ", 1)[1])
                ack = await reader.readexactly(size + 2)
                if b'"error"' in ack:
                    raise RuntimeError(ack.decode())
                got += 1
            elif line == b"PING\r\n":
                writer.write(b"PONG\r\n")
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    writer.close()
    return cpu, wall


async def main() -> int:
    directory = Path(tempfile.mkdtemp(prefix="rhn", dir="/tmp"))
    server = NatsCluster(directory, 1)
    await server.start()
    try:
        nc = await nats.connect(server.urls[0])
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="BENCH", subjects=["bench.*"]))
        await nc.close()
        rounds = []
        for _ in range(3):  # interleaved: the machine's load moves both alike
            rounds.append((await with_nats_py(server.urls[0], "bench.a"),
                           await with_streams("127.0.0.1", server.nodes[0].port, "bench.b")))
    finally:
        await server.stop()
        shutil.rmtree(directory, ignore_errors=True)
    for name, index in (("nats-py publish_async", 0), ("asyncio streams, minimal", 1)):
        cpu = sorted(r[index][0] for r in rounds)[1]
        wall = sorted(r[index][1] for r in rounds)[1]
        print(f"{name:26} {cpu / COUNT * 1e6:6.1f} us CPU / publish+ack   "
              f"{COUNT / wall:9,.0f}/s (median of 3, {COUNT} each)")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
