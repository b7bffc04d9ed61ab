"""A hostile checkpoint (docs/cluster.md, Security): times that are not finite or
not stream times fail the decode (the partition starts without that state, said in
status); times in bounds are held within [the stream's retention ago, now]; scopes of
another partition are left out, so the load cannot wipe that partition's local state."""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import pytest
from test_cluster_parts import _writing

from runhook.cluster import checkpoint
from runhook.cluster.bus import partition_of
from runhook.cluster.checkpoint import Snapshot, Times
from runhook.store.database import Store, Write
from runhook.store.statements import UPSERT_RUN

PARTITIONS = 8
SCOPES = [f"project:acme/p{k}" for k in range(40)]
MINE = next(s for s in SCOPES if partition_of(s, PARTITIONS) == 0)
ALSO_MINE = [s for s in SCOPES if partition_of(s, PARTITIONS) == 0][1]
FOREIGN = next(s for s in SCOPES if partition_of(s, PARTITIONS) == 3)


def _run(scope: str, run_id: str, last_seen: float) -> tuple[object, ...]:
    return (scope, run_id, "", "", "running", last_seen, None, None, None, None, None)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e300, -1e300])
@pytest.mark.parametrize("where", ["since", "at", "values", "joined"])
def test_a_time_that_is_no_stream_time_makes_the_checkpoint_undecodable(
        where: str, bad: float) -> None:
    """NaN, an infinity or ±1e300 anywhere a checkpoint holds a time: a decode error
    (msgspec's ValidationError is a DecodeError), which the partition takes as an
    undecodable checkpoint: it starts at its position without the state."""
    since, at = (bad if where == "since" else 10.0), (bad if where == "at" else 20.0)
    times = Times({"r1": {"loss": bad if where == "values" else 15.0}},
                  {"g": bad if where == "joined" else 15.0})
    data = msgspec.msgpack.encode(Snapshot(2, 7, "a", {}, since, at, {MINE: times}))
    with pytest.raises(msgspec.DecodeError, match=r"Expected `float` [<>]= [-]?1000000000000000"):
        checkpoint.decode(data)


def test_times_are_held_between_the_retention_floor_and_now() -> None:
    """now 1000, floor 400 (retention 600 s). By hand: since -5e14 -> 400 (not a stall
    fired at once), at 9e14 -> 1000, a metric's values at 1e14 -> 1000 (not a stall
    pushed out for ever), one at 500 kept, a group joined at -1e14 -> 400 (not settled
    at once); watched_since then takes the old owner's since (written at 1000 >= up
    since 900): 400."""
    times = Times({"r1": {"loss": 1e14, "": 500.0}}, {"g": -1e14})
    hostile = checkpoint.decode(msgspec.msgpack.encode(
        Snapshot(2, 7, "a", {}, -5e14, 9e14, {MINE: times})))
    kept, foreign = checkpoint.admit(hostile, 0, PARTITIONS, 1000.0, 400.0)
    assert foreign == []
    assert (kept.since, kept.at) == (400.0, 1000.0)
    assert kept.times == {MINE: Times({"r1": {"loss": 1000.0, "": 500.0}}, {"g": 400.0})}
    assert checkpoint.watched_since(kept, 900.0, 1000.0) == 400.0
    # NaN never reaches it from a decode; built by hand, it counts from now.
    nan = Snapshot(2, 7, "a", {}, math.nan, math.nan, {MINE: Times({"r1": {"": math.nan}})})
    kept, _ = checkpoint.admit(nan, 0, PARTITIONS, 1000.0, 400.0)
    assert (kept.since, kept.at, kept.times[MINE].values) == (1000.0, 1000.0, {"r1": {"": 1000.0}})
    assert checkpoint.watched_since(kept, 900.0, 1000.0) == 1000.0
    # A real one passes unchanged.
    real = Snapshot(2, 7, "a", {}, 450.0, 990.0, {MINE: Times({"r1": {"loss": 980.0}})})
    assert checkpoint.admit(real, 0, PARTITIONS, 1000.0, 400.0) == (real, [])


async def test_scopes_of_another_partition_are_left_out_and_its_state_kept(
        tmp_path: Path) -> None:
    """Partition 0's checkpoint names FOREIGN (partition 3), with no rows: loaded as
    it was, it deleted FOREIGN's runs on this node. Admitted: FOREIGN is named as
    left out, its times dropped, its run r9 kept; MINE gets the checkpoint's run r1
    and ALSO_MINE (a scope of partition 0 this node held) is replaced as before."""
    store = Store(str(tmp_path / "s.db"))
    await store.open()
    try:
        async with _writing(store):
            await store.commit(Write([(UPSERT_RUN, [_run(FOREIGN, "r9", 5.0),
                                                    _run(ALSO_MINE, "r8", 5.0)])]))
            state = {MINE: {"runs": [list(_run(MINE, "r1", 10.0)[1:])]}, FOREIGN: {"runs": []}}
            times = {MINE: Times({"r1": {"loss": 10.0}}), FOREIGN: Times({"r9": {"loss": 1.0}})}
            hostile = checkpoint.decode(msgspec.msgpack.encode(
                Snapshot(2, 7, "a", state, 1.0, 20.0, times)))
            kept, foreign = checkpoint.admit(hostile, 0, PARTITIONS, 100.0, 0.0)
            assert foreign == [FOREIGN]
            assert list(kept.scopes) == [MINE] and list(kept.times) == [MINE]
            await checkpoint.load(store, [MINE, ALSO_MINE], kept)
            assert [r[0] for r in (await store.run_state(FOREIGN))["runs"]] == ["r9"]
            assert [r[0] for r in (await store.run_state(MINE))["runs"]] == ["r1"]
            assert (await store.run_state(ALSO_MINE))["runs"] == []
    finally:
        await store.close()
