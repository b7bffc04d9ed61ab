"""An integration's `rate` is the cluster's (docs/cluster.md): each node paces its
attempts to the rate divided by the live nodes its lease round counted. The share and
its token bucket are checked directly; then three runhook nodes over a real
nats-server deliver a backlog to a loopback receiver, which must see the rate across
the nodes, not three times it, and the survivors' shares grow when a node leaves."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import Receiver, eventually
from test_cluster import BODY, Node, status, stop_node
from test_cluster_parity import ask, over_one_nats

from runhook.client import AsyncClient
from runhook.cluster.rates import share
from runhook.delivery.core import Counts
from runhook.delivery.ratelimit import TokenBucket

RATE = 6.0  # per second, across the cluster
# Each node holds at most 4 executions at a time (fetching more as they are sent), so
# a backlog stays on the shared queue for every node to take from, as under load.
CLUSTER_BODY = "delivery_workers = 4\n" + BODY.replace(
    "allow_private = true\n", 'allow_private = true\nrate = "6/s"\n', 1)
WINDOW_S = 3.0
# Arrivals are stamped by the receiver, in this (busy) process: a send can arrive up
# to this late, so a window of arrivals holds the sends of WINDOW_S + LATE_S.
LATE_S = 2.0


def sends_within(takes: list[TokenBucket], seconds: float) -> int:
    """How many attempts the buckets allow in `seconds` from full, each taking as
    fast as it is let (all at once at 0, each waiting its turn)."""
    allowed = 0
    for bucket in takes:
        while bucket.take(0.0) <= seconds:
            allowed += 1
    return allowed


def test_a_nodes_share_is_the_rate_divided_by_the_live_nodes() -> None:
    assert [share(n) for n in (1, 2, 3, 4)] == [1.0, 0.5, 1 / 3, 0.25]
    assert share(0) == 1.0  # nothing counted: a node alone


def test_the_nodes_shares_together_allow_the_rate_not_a_multiple() -> None:
    """6/s over 3 nodes: 2/s each, a burst of 2 each. In 3 s from full, each is let
    through 2 + 2 * 3 = 8 attempts, 24 in all: what one node alone at 6/s allows
    (6 + 6 * 3), where each node taking the whole rate would allow 3 * 24 = 72."""
    assert sends_within([TokenBucket(RATE * share(3)) for _ in range(3)], 3.0) == 24
    assert sends_within([TokenBucket(RATE)], 3.0) == 24
    assert sends_within([TokenBucket(RATE) for _ in range(3)], 3.0) == 72


def test_a_share_that_grows_brings_no_fresh_burst_and_one_that_shrinks_keeps_less() -> None:
    """2/s (6/s over 3 nodes), its burst spent: the third take waits 0.5 s. At 0.5 s
    a node left: 3/s from there, with the tokens it had (none: the debt is just paid),
    so the next waits 1/3 s (a new bucket would have let 3 through at once). Idle,
    it fills up to the new burst, 3. Shrunk from 3/s with 3 tokens to 1.5/s, it keeps
    1.5: one at once, the next waits (1 - 0.5) / 1.5 = 1/3 s."""
    bucket = TokenBucket(2.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]
    bucket.retune(3.0, now=0.5)
    assert bucket.take(0.5) == pytest.approx(1 / 3)
    assert [bucket.take(10.0) for _ in range(4)] == [0.0, 0.0, 0.0, pytest.approx(1 / 3)]

    shrunk = TokenBucket(3.0, now=0.0)
    shrunk.retune(1.5, now=0.0)
    assert [shrunk.take(0.0), shrunk.take(0.0)] == [0.0, pytest.approx(1 / 3)]


def test_the_seam_one_machine_takes_the_whole_rate_a_node_its_share() -> None:
    """Counts.pace: without a share (one machine) 6/s lets 6 through at once and the
    seventh waits 1/6 s; with a third of it, 2 then 1/2 s; the share changed to a
    half retunes the bucket (no fresh burst: the next waits about 1/3 s, at 3/s)."""
    whole, third = Counts(), Counts()
    assert [whole.pace("6/s") for _ in range(6)] == [0.0] * 6
    assert whole.pace("6/s") == pytest.approx(1 / 6, abs=0.01)
    assert [third.pace("6/s", 1 / 3) for _ in range(2)] == [0.0, 0.0]
    assert third.pace("6/s", 1 / 3) == pytest.approx(0.5, abs=0.01)
    # The debt of 1 token at 2/s is 0.5 s; retuned at once to 3/s, one more token is
    # 1 more owed: 2 tokens owed, less the ~0 s since, at 3/s.
    assert third.pace("6/s", 1 / 2) == pytest.approx(2 / 3, abs=0.01)


def most_within(times: list[float], seconds: float) -> int:
    """The most arrivals in any window of `seconds` (each window starting at one)."""
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t - start <= seconds)
               for i, start in enumerate(times))


async def sent(nodes: list[Node]) -> list[int]:
    """Each node's attempts of `hook` that succeeded."""
    counts = []
    for node in nodes:
        (found,) = (await ask(node, {"type": "query.status"}))["status"]["integrations"]
        counts.append(int(found["sent"]))
    return counts


async def artifacts(node: Node, first: int, count: int) -> None:
    """`count` artifact events, each firing one execution to `hook`."""
    async with AsyncClient(node.socket) as client:
        for version in range(first, first + count):
            answer = await client.request({
                "type": "artifact.created", "entity": "acme", "project": f"p{version % 6}",
                "collection": "m", "version": version})
            assert answer == {"ok": True}, answer


async def live(nodes: list[Node], expected: list[str]) -> None:
    """Until each node's lease round counts exactly `expected` as live."""
    for node in nodes:
        await eventually(lambda node=node: status(node), lambda s: s["live"] == expected)


@pytest.fixture
async def trio(short_dir: Path, receiver: Receiver) -> AsyncIterator[list[Node]]:
    """Nodes a, b and c over one NATS server, each owning partitions."""
    async with over_one_nats(short_dir, receiver, ["a", "b", "c"], CLUSTER_BODY) as nodes:
        yield nodes


async def test_three_nodes_deliver_at_the_integrations_rate_and_survivors_take_more(
        trio: list[Node], receiver: Receiver) -> None:
    """48 executions to `hook` (rate 6/s), every node delivering: in any 3 s the
    receiver sees at most what the three shares allow in 3 + 2 s (3 bursts of 2,
    and 6/s): 36, where two nodes each pacing to the whole 6/s would already send
    2 * (6 + 6 * 3) = 48 in 3 s, and three all 48 in under 2 s. Then c leaves: a and
    b count two live nodes and take half each; every execution is sent once."""
    await live(trio, ["a", "b", "c"])
    await artifacts(trio[0], 0, 48)
    for _ in range(48):
        await receiver.next(timeout=60)
    assert most_within([r.at for r in receiver.requests], WINDOW_S) \
        <= 3 * 2 + RATE * (WINDOW_S + LATE_S)
    # Counted once the receiver's answer is back: until the sum is all of them.
    counts = await eventually(lambda: sent(trio), lambda found: sum(found) == 48)
    assert all(counts), counts  # each node delivered its part
    for node in trio:
        assert "rate is shared by 3 live nodes: 1/3 of it here" in node.log.read_text()

    a, b, c = trio
    assert await stop_node(c, signal.SIGTERM) == 0
    await live([a, b], ["a", "b"])
    await artifacts(a, 48, 12)
    for _ in range(12):
        await receiver.next(timeout=60)
    # The whole sequence: 2 nodes' bursts of 3 and 6/s after c left, as before it.
    assert most_within([r.at for r in receiver.requests], WINDOW_S) \
        <= 3 * 2 + RATE * (WINDOW_S + LATE_S)
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(ids) == len(set(ids)) == 60
    grown = await eventually(lambda: sent([a, b]),
                             lambda found: sum(found) == counts[0] + counts[1] + 12)
    for node, before, after in zip((a, b), counts, grown, strict=False):
        if after > before:  # it attempted after c left, at its grown share
            assert "rate is shared by 2 live nodes: 1/2 of it here" in node.log.read_text()
