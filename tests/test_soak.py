"""Idempotency and atomicity under fire: a pipelining client that resends every line it has no `ok`
for, with the same ids, ends with exactly the executions of a crash-free run, through
kill -9 of the daemon, a full disk, and lines refused for a bad field.

The expectation is computed here from the series sent, independently of runhook:
one execution per (artifact automation, created event), the avg-of-3 crossings of
each run's loss series (with the window each fired on), one firing per watched run
state change."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import errno
import json
import math
import os
import random
import signal
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, write_config

SEED = int(os.environ.get("RUNHOOK_SOAK_SEED", "20240611"))
WINDOW = 50  # lines in flight
THRESHOLD = 5.5  # on avg(loss) over the last 3: integer values never sit on it
STALL_S = 60.0  # longest wait for any one answer, ack count or restart

CONFIG = """
[[automations]]
name = "created-project"
scope = "project:acme/vision"
event = { kind = "CREATE_ARTIFACT" }
action = { kind = "none" }

[[automations]]
name = "created-entity"
scope = "entity:acme"
event = { kind = "CREATE_ARTIFACT" }
action = { kind = "none" }

[[automations]]
name = "loss-avg3"
scope = "project:acme/vision"
event = { kind = "RUN_METRIC_THRESHOLD", metric = "loss", agg = "avg", window = 3, cmp = ">", threshold = 5.5 }
action = { kind = "none" }
cooldown = "0s"

[[automations]]
name = "run-state"
scope = "project:acme/vision"
event = { kind = "RUN_STATE", states = ["running", "finished"] }
action = { kind = "none" }
cooldown = "0s"
"""


# The load, and what a crash-free run makes of it.

@dataclass
class Line:
    id: str
    good: bytes
    run: str | None = None  # the run whose series this line belongs to
    bad: bytes | None = None  # sent like this first (to be refused), corrected after


@dataclass
class Load:
    lines: list[Line]
    # (automation, event id) -> the metric window it fired on (None: not a metric firing)
    expected: dict[tuple[str, str], list[float | None] | None]


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\n"  # NaN / Infinity as Python's json writes them


def crossings(series: list[float | None], window: int = 3) -> list[tuple[int, list[float]]]:
    """Where avg(last `window` values) > THRESHOLD becomes true (the first evaluation
    counts), with the window: the crossing rule by hand. NaN and null are not values."""
    kept: list[float] = []
    fired, active = [], False
    for position, value in enumerate(series):
        if value is None or math.isnan(value):
            continue
        kept.append(value)
        if len(kept) < window:
            continue
        holds = sum(kept[-window:]) / window > THRESHOLD
        if holds and not active:
            fired.append((position, kept[-window:]))
        active = holds
    return fired


def make_load(rng: random.Random, artifacts: int, runs: int, per_run: int) -> Load:
    """Artifact lines and the lines of `runs` runs (running, loss values with a
    repeated `running` half-way, finished), merged at random, each stream in order."""
    location = {"entity": "acme", "project": "vision"}
    streams: list[list[Line]] = []
    expected: dict[tuple[str, str], list[float | None] | None] = {}
    art = []
    for k in range(artifacts):
        event_id = f"a-{k}"
        if rng.random() < 0.1:  # watched by no automation: an id, no execution
            body = {"type": "artifact.tag_added", "collection": f"c{k % 5}", "version": k,
                    "tag": "t", "author": "ana"}
        else:
            body = {"type": "artifact.created", "collection": f"c{k % 5}", "version": k,
                    "author": "ana", "metadata": {"k": k}}
            expected[("created-project", event_id)] = None
            expected[("created-entity", event_id)] = None
        art.append(Line(event_id, encode({**body, **location, "id": event_id})))
    streams.append(art)
    for r in range(runs):
        run_id = f"r{r}"
        run = {**location, "run_id": run_id, "run_name": f"prod-{r}", "user": "ana"}

        def state(name: str, event_id: str, run: dict[str, Any] = run,
                  run_id: str = run_id) -> Line:
            return Line(event_id, encode({"type": "run.state", **run, "state": name,
                                          "id": event_id}), run_id)

        series: list[float | None] = []
        for _ in range(per_run):
            roll = rng.random()
            series.append(None if roll < 0.03 else math.nan if roll < 0.05
                          else math.inf if roll < 0.06 else float(rng.randint(0, 9)))
        lines = [state("running", f"s-{run_id}-start")]
        for position, value in enumerate(series):
            event_id = f"m-{run_id}-{position}"
            lines.append(Line(event_id, encode({
                "type": "run.metrics", **run, "step": position, "id": event_id,
                "values": {"loss": value, "acc": 0.5}}), run_id))
            if position == per_run // 2:
                lines.append(state("running", f"s-{run_id}-again"))  # a repeat: no firing
        lines.append(state("finished", f"s-{run_id}-end"))
        streams.append(lines)
        expected[("run-state", f"s-{run_id}-start")] = None
        expected[("run-state", f"s-{run_id}-end")] = None
        for position, window in crossings(series):
            # The context is JSON: msgspec writes Infinity as null.
            expected[("loss-avg3", f"m-{run_id}-{position}")] = [
                None if math.isinf(v) else v for v in window]
    merged: list[Line] = []
    heads = [0] * len(streams)
    left = sum(len(s) for s in streams)
    while left:
        pick = rng.randrange(left)  # a stream in proportion to what it has left
        for s, stream in enumerate(streams):
            remaining = len(stream) - heads[s]
            if pick < remaining:
                merged.append(stream[heads[s]])
                heads[s] += 1
                break
            pick -= remaining
        left -= 1
    assert len({line.id for line in merged}) == len(merged)
    return Load(merged, expected)


def check_history(database: Path, load: Load) -> int:
    """The execution rows are exactly the expected ones: none missing, none twice,
    none else, each metric firing on its window. Returns how many there are."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT automation, event_id, state, context FROM executions").fetchall()
    got = Counter((automation, event_id) for automation, event_id, _, _ in rows)
    missing = sorted(k for k in load.expected if got[k] == 0)
    twice = sorted((k, n) for k, n in got.items() if n > 1)
    unexpected = sorted(k for k in got if k not in load.expected)
    assert not (missing or twice or unexpected), (
        f"{len(rows)} executions, {len(load.expected)} expected: {len(missing)} missing "
        f"{missing[:10]}, {len(twice)} duplicated {twice[:10]}, {len(unexpected)} "
        f"unexpected {unexpected[:10]}")
    wrong = []
    for automation, event_id, state, context in rows:
        values = json.loads(context).get("metric_values")
        if state != "FINISHED" or values != load.expected[(automation, event_id)]:
            wrong.append((automation, event_id, state, values,
                          load.expected[(automation, event_id)]))
    assert not wrong, f"{len(wrong)} executions not as expected, e.g. {wrong[:5]}"
    return len(rows)


# The client.

class Client:
    """Pipelines up to WINDOW lines; a line leaves its resend set only on an
    `{"ok": true}` answer (duplicate or not). Whatever is unanswered when the
    connection breaks, or answered with an error, is sent again, in line order,
    with its id. With `one_per_run`, a run's next line waits for the previous one's
    `ok`: a refused line is evaluated where its retry lands, so a client that
    cares for a run's order does not pipeline past a line that may be refused."""

    def __init__(self, lines: list[Line], socket: str, one_per_run: bool = False) -> None:
        self.lines = lines
        self.socket = socket
        self.one_per_run = one_per_run
        self.todo = list(range(len(lines)))  # neither acknowledged nor in flight, in order
        self.in_flight: deque[int] = deque()
        self.busy: set[str] = set()  # runs with a line in flight (one_per_run)
        self.acked = 0
        self.sends = [0] * len(lines)
        self.duplicates = 0
        self.errors: list[str] = []
        self.connections = 0
        self.generation = 0  # bumped by restarted(): a new daemon to connect to
        self.changed = asyncio.Condition()
        self.task: asyncio.Task[None] | None = None

    @property
    def resends(self) -> int:
        return sum(n - 1 for n in self.sends if n > 1)

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def restarted(self, socket: str) -> None:
        self.socket = socket
        self.generation += 1
        async with self.changed:
            self.changed.notify_all()

    def state(self) -> str:
        return (f"{self.acked}/{len(self.lines)} acknowledged, {len(self.in_flight)} in "
                f"flight, {len(self.errors)} errors, {self.connections} connections")

    async def until(self, predicate: Callable[[], bool], what: str,
                    timeout: float = STALL_S) -> None:
        """Wait for the client to reach `predicate`; fail with its state, or with its
        own failure if it stopped."""
        assert self.task is not None

        async def reached() -> None:
            async with self.changed:
                await self.changed.wait_for(lambda: predicate() or self.task.done())
        try:
            await asyncio.wait_for(reached(), timeout)
        except TimeoutError:
            raise AssertionError(f"{what}: not reached in {timeout:.0f}s "
                                 f"({self.state()})") from None
        if not predicate():
            self.task.result()  # its exception, if it has one
            raise AssertionError(f"{what}: the client stopped first ({self.state()})")

    async def _run(self) -> None:
        try:
            while self.acked < len(self.lines):
                generation = self.generation
                try:
                    await self._session()
                except (ConnectionError, OSError) as exc:
                    # Only a restart brings the daemon back: wait for one, bounded.
                    async def restart(generation: int = generation) -> None:
                        async with self.changed:
                            await self.changed.wait_for(lambda: self.generation > generation)
                    try:
                        await asyncio.wait_for(restart(), STALL_S)
                    except TimeoutError:
                        raise AssertionError(f"connection lost ({exc!r}) and no restart "
                                             f"came in {STALL_S:.0f}s ({self.state()})") from None
        finally:
            async with self.changed:
                self.changed.notify_all()

    def _take(self) -> list[int]:
        """The next lines to send: the lowest not in flight, in order, skipping (with
        one_per_run) the lines of runs that have one in flight."""
        taken: list[int] = []
        k = 0
        while len(self.in_flight) + len(taken) < WINDOW and k < min(len(self.todo), 400):
            i = self.todo[k]
            run = self.lines[i].run
            if self.one_per_run and run is not None:
                if run in self.busy:
                    k += 1
                    continue
                self.busy.add(run)
            del self.todo[k]
            taken.append(i)
        return taken

    async def _session(self) -> None:
        reader, writer = await asyncio.open_unix_connection(self.socket)
        self.connections += 1
        wake = asyncio.Event()

        async def send() -> None:
            while True:
                taken = self._take()
                if not taken:
                    wake.clear()
                    await wake.wait()
                    continue
                out = []
                for i in taken:
                    line = self.lines[i]
                    out.append(line.bad if line.bad is not None else line.good)
                    self.sends[i] += 1
                    self.in_flight.append(i)
                writer.write(b"".join(out))
                await writer.drain()

        sender = asyncio.create_task(send())
        try:
            while self.acked < len(self.lines):
                try:
                    raw = await asyncio.wait_for(reader.readline(), STALL_S)
                except TimeoutError:
                    if sender.done():
                        sender.result()
                    raise AssertionError(f"no answer in {STALL_S:.0f}s ({self.state()})") \
                        from None
                if not raw.endswith(b"\n"):
                    raise ConnectionError("the daemon closed the connection")
                self._answer(json.loads(raw))
                wake.set()
                async with self.changed:
                    self.changed.notify_all()
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await sender
            writer.close()
            # Unanswered: sent again on the next connection, in line order.
            for i in self.in_flight:
                bisect.insort(self.todo, i)
                self.busy.discard(self.lines[i].run or "")
            self.in_flight.clear()

    def _answer(self, answer: dict[str, Any]) -> None:
        assert self.in_flight, f"an answer to no line: {answer}"
        i = self.in_flight.popleft()
        line = self.lines[i]
        if line.run is not None:
            self.busy.discard(line.run)
        if answer.get("ok") is True:
            self.acked += 1
            self.duplicates += bool(answer.get("duplicate"))
            return
        self.errors.append(f"{line.id}: {answer.get('error')}")
        line.bad = None  # what was wrong with it is corrected for the resend
        bisect.insort(self.todo, i)


async def stop_cleanly(daemon: Any) -> None:
    """SIGTERM; exit 0; and no daemon of the test (killed ones included) logged a traceback."""
    code = await daemon.stop()
    assert code == 0, f"daemon exited {code}:\n{daemon.log_text()[-3000:]}"
    for log in sorted(daemon.directory.glob("daemon*.log")):
        text = log.read_text()
        assert "Traceback" not in text, f"{log.name}:\n{text[max(0, text.index('Traceback') - 500):][:3000]}"


def summary(name: str, started: float, client: Client, load: Load, executions: int,
            extra: str = "") -> None:
    print(f"\n{name}: seed {SEED}, {len(client.lines)} lines, {client.connections} "
          f"connections, {client.resends} resends, {client.duplicates} answered duplicate, "
          f"{len(client.errors)} refused, {executions} executions{extra}, "
          f"{time.monotonic() - started:.1f}s")


# 1. kill -9

KILLS = 40


async def test_kill_9_under_pipelined_load_loses_and_repeats_nothing(start_daemon, short_dir):
    started = time.monotonic()
    rng = random.Random(SEED)
    load = make_load(rng, artifacts=5000, runs=6, per_run=900)
    config = write_config(short_dir, CONFIG, free_port())
    # Checkpoints often, so kills land both before and after the log is folded into windows.
    config.write_text(config.read_text().replace('checkpoint_interval = "1s"',
                                                 'checkpoint_interval = "100ms"'))
    daemon = await start_daemon(config=config)
    client = Client(load.lines, daemon.socket)
    client.start()
    # Kill after a random number of further acks, spread over about 90 % of the stream.
    gaps = [rng.uniform(0.5, 1.5) for _ in range(KILLS)]
    scale = 0.9 * len(load.lines) / sum(gaps)
    kill_at = [int(scale * sum(gaps[:n + 1])) for n in range(KILLS)]
    in_flight_at_kill = []
    for n, at in enumerate(kill_at):
        await client.until(lambda at=at: client.acked >= at, f"kill {n + 1} at {at} acks")
        in_flight_at_kill.append(len(client.in_flight))
        assert await daemon.stop(signal.SIGKILL) == -signal.SIGKILL
        daemon = await start_daemon(config=config)
        await client.restarted(daemon.socket)
    await client.until(lambda: client.acked == len(load.lines), "every line acknowledged")
    await client.task
    assert client.errors == [], client.errors[:10]
    await stop_cleanly(daemon)
    executions = check_history(daemon.database, load)
    summary("kill -9 soak", started, client, load, executions,
            f", {KILLS} kills at acks {kill_at[0]}..{kill_at[-1]} with "
            f"{min(in_flight_at_kill)}-{max(in_flight_at_kill)} lines in flight")


# 2. full disk

@pytest.fixture
def small_disk(tmpfs: Any) -> Path:
    return tmpfs("32m")


def fill(mount: Path, room: int) -> Path:
    """A filler file that leaves about `room` bytes free on `mount`."""
    stat = os.statvfs(mount)
    filler = mount / "filler"
    size = max(0, stat.f_bavail * stat.f_frsize - room)
    chunk = b"\0" * (1 << 20)
    # Unbuffered: a buffered file keeps what ENOSPC refused and raises it again at close.
    with filler.open("wb", buffering=0) as f:
        while size > 0:  # written, not sparse: tmpfs counts only written pages
            try:
                f.write(chunk[:size])
            except OSError as exc:  # the daemon took the last room meanwhile: full anyway
                if exc.errno != errno.ENOSPC:
                    raise
                break
            size -= min(size, len(chunk))
    return filler


FULL_DISK_CYCLES = 10
REFUSALS_PER_CYCLE = 40


async def test_full_disk_refusals_resent_end_with_the_expected_executions(
        start_daemon, short_dir, small_disk):
    started = time.monotonic()
    rng = random.Random(SEED + 1)
    load = make_load(rng, artifacts=3000, runs=6, per_run=500)
    config = write_config(short_dir, CONFIG, free_port())
    config.write_text(config.read_text()
                      .replace(f'database = "{short_dir}/runhook.db"',
                               f'database = "{small_disk}/runhook.db"')
                      .replace('checkpoint_interval = "1s"', 'checkpoint_interval = "100ms"'))
    daemon = await start_daemon(config=config)
    client = Client(load.lines, daemon.socket, one_per_run=True)
    fill_at = sorted(rng.sample(range(len(load.lines) // 20, len(load.lines) * 9 // 10),
                                FULL_DISK_CYCLES))
    client.start()
    for n, at in enumerate(fill_at):
        await client.until(lambda at=at: client.acked >= at, f"fill {n + 1} at {at} acks")
        refused = len(client.errors)
        filler = fill(small_disk, room=128 * 1024)
        await client.until(lambda r=refused: len(client.errors) >= r + REFUSALS_PER_CYCLE,
                           f"{REFUSALS_PER_CYCLE} refusals after fill {n + 1}")
        filler.unlink()  # room again; the client's resends go through
    await client.until(lambda: client.acked == len(load.lines), "every line acknowledged")
    await client.task
    full = [e for e in client.errors if "database write failed: database or disk is full" in e]
    assert full, client.errors[:10]
    # Every refusal is of a write (the disk's, or of one behind it); none of a line.
    other = [e for e in client.errors if "write" not in e.split(": line ", 1)[1]]
    assert not other, other[:10]
    await stop_cleanly(daemon)
    executions = check_history(small_disk / "runhook.db", load)
    summary("full disk", started, client, load, executions,
            f" ({len(full)} for a full disk), {FULL_DISK_CYCLES} fills at acks {fill_at}")


# 3. refused lines

BAD_TIMES = ["9999-12-31T23:59:59-23:59", math.nan, 1e300]


async def test_refused_lines_resent_corrected_are_evaluated(start_daemon):
    """Lines refused for a bad field record nothing: their corrected retries (same
    ids) are evaluated, crossings included. Many of the refused metric lines are
    the ones whose value crosses the threshold."""
    started = time.monotonic()
    rng = random.Random(SEED + 2)
    load = make_load(rng, artifacts=1500, runs=6, per_run=250)
    crossing_ids = {event_id for automation, event_id in load.expected
                    if automation == "loss-avg3"}
    bad_fields = Counter()
    for line in load.lines:
        chosen = line.id in crossing_ids and rng.random() < 0.5 \
            or line.id.endswith("-end") or rng.random() < 0.03
        if not chosen:
            continue
        body = json.loads(line.good)
        if rng.random() < 0.75:
            body["time"] = rng.choice(BAD_TIMES)
            bad_fields["time"] += 1
        elif body["type"] == "run.metrics":
            body["values"]["loss"] = "high"
            bad_fields["values.loss"] += 1
        elif body["type"] == "run.state":
            body["state"] = "exploded"
            bad_fields["state"] += 1
        else:
            body["version"] = -1
            bad_fields["version"] += 1
        line.bad = encode(body)
    bad = sum(bad_fields.values())
    daemon = await start_daemon(CONFIG)
    client = Client(load.lines, daemon.socket, one_per_run=True)
    client.start()
    await client.until(lambda: client.acked == len(load.lines), "every line acknowledged")
    await client.task
    assert len(client.errors) == bad, (len(client.errors), bad)
    unnamed = [e for e in client.errors if not any(f"field `{f}`" in e for f in bad_fields)]
    assert not unnamed, unnamed[:10]
    assert client.duplicates == 0
    await stop_cleanly(daemon)
    executions = check_history(daemon.database, load)
    summary("refused lines", started, client, load, executions,
            f", refused for {dict(bad_fields)}")
