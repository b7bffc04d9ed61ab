"""Cluster mode's pure parts and its SQLite checkpoint, without NATS: who prefers
which partition, execution ids any owner derives alike, `[cluster]` checking, a
checkpoint carried from one store to another, and a single-machine daemon that
never imports nats."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from runhook.cluster import checkpoint
from runhook.cluster.leases import preferred
from runhook.cluster.scopes import StreamIds
from runhook.config.cluster import Cluster, check, public
from runhook.store.database import Store, Write
from runhook.store.statements import LOG_METRICS, UPSERT_FLAG, UPSERT_RUN, UPSERT_WINDOW


def test_each_partition_prefers_one_live_node_and_a_leaving_node_moves_only_its_own() -> None:
    three = {p: preferred(p, ["a", "b", "c"]) for p in range(64)}
    assert set(three.values()) == {"a", "b", "c"}
    assert {p: preferred(p, ["c", "a", "b"]) for p in range(64)} == three  # order-free
    two = {p: preferred(p, ["a", "c"]) for p in range(64)}
    moved = {p for p in range(64) if two[p] != three[p]}
    assert moved == {p for p in range(64) if three[p] == "b"}  # b's, and only b's
    four = {p: preferred(p, ["a", "b", "c", "d"]) for p in range(64)}
    assert {p for p in range(64) if four[p] != three[p]} == \
        {p for p in range(64) if four[p] == "d"}  # a joiner takes, nobody else trades


def test_stream_ids_are_the_same_for_the_same_cause_and_differ_otherwise() -> None:
    first, second = StreamIds(), StreamIds()
    first.start("project:acme/p|42")
    second.start("project:acme/p|42")
    a = [first(1764300000.123), first(1764300000.123)]
    assert a == [second(1764300000.123), second(1764300000.123)]
    assert a[0] != a[1]
    second.start("project:acme/p|43")
    assert second(1764300000.123) not in a
    # Shaped like every other execution id: ex_ + 26 hex digits, the time first.
    assert all(len(i) == 29 and i.startswith("ex_019ac") for i in a)
    int(a[0][3:], 16)


@pytest.mark.parametrize(("table", "problem"), [
    ({"nats": ["http://n1:4222"]}, "cluster.nats[0]: expected nats://HOST:PORT"),
    ({"nats": ["http://svc:hunter2-secret@n1:4222"]},
     "cluster.nats[0]: expected nats://HOST:PORT or tls://HOST:PORT, got 'http://n1:4222'"),
    ({"nats": ["nats://n1:4222"], "node": "a b"}, "cluster.node: 'a b' is not a node name"),
    ({"nats": ["nats://n1:4222"], "lease": "500ms"}, "cluster.lease: at least 1s"),
    ({"nats": ["nats://n1:4222"], "retention": "30m"}, "cluster.retention: at least 1h"),
    ({"nats": ["nats://n1:99999"]}, "cluster.nats[0]: expected nats://HOST:PORT"),
    ({"nats": ["nats://n1:4222"], "replicas": 3}, "cluster.replicas: 3, but only 1 server"),
    ({"nats": ["nats://n1:4222"], "checkpoint_interval": "2h"},
     "cluster.checkpoint_interval: below 1h"),
    ({"node": "a"}, "cluster.nats: no NATS servers given"),
    ({"nats": ["nats://n1:4222"], "checkpoint_interval": "soon"},
     "cluster.checkpoint_interval:"),
])
def test_a_bad_cluster_table_is_refused_saying_where(table: dict[str, object],
                                                      problem: str) -> None:
    problems, settings = check(Cluster(**table))  # type: ignore[arg-type]
    assert settings is None
    assert any(p.startswith(problem) for p in problems), problems


def test_cluster_defaults_and_off_without_servers() -> None:
    assert check(Cluster()) == ([], None)
    problems, settings = check(Cluster(nats=["nats://a:1", "nats://b:1"], node="n1"))
    assert problems == [] and settings is not None
    assert (settings.replicas, settings.partitions, settings.lease) == (2, 16, 3.0)


def test_credentials_in_a_server_url_stay_out_of_log_lines() -> None:
    assert public(["nats://svc:hunter2-secret@n1:4222", "tls://n2:4222"]) == \
        "nats://n1:4222, tls://n2:4222"


async def test_a_checkpoint_carries_a_partitions_state_to_another_store(tmp_path: Path) -> None:
    """Exported from one node's store and loaded into another's, which held stale
    state of its own for the same scope: the second now restores what the first had."""
    scope, other = "project:acme/p", "project:acme/q"
    old, new = Store(str(tmp_path / "old.db")), Store(str(tmp_path / "new.db"))
    for store in (old, new):
        await store.open()
    try:
        async with _writing(old), _writing(new):
            run = (scope, "r1", "name", "me", "running", 10.0, None, "g", "[]", "{}", None)
            await old.commit(Write([
                (UPSERT_RUN, [run]),
                (UPSERT_WINDOW, [(scope, "r1", "loss", 5, b"\x93\x01\x02\x03")]),
                (LOG_METRICS, [(scope, msgspec.msgpack.encode([["r1", {"loss": 1.0}]]))]),
                (UPSERT_FLAG, [(scope, "r1", "auto", "d1", 1, 9.0)])]))
            stale = (scope, "r9", "", "", "running", 1.0, None, None, None, None, None)
            kept = (other, "r1", "", "", "running", 1.0, None, None, None, None, None)
            await new.commit(Write([(UPSERT_RUN, [stale, kept])]))
            data = await checkpoint.export(old, [scope], 1234, "a")
            snapshot = checkpoint.decode(data)
            assert (snapshot.seq, snapshot.node) == (1234, "a")
            await checkpoint.load(new, [scope], snapshot)
            assert await new.run_state(scope) == await old.run_state(scope)
            assert [r[0] for r in (await new.run_state(scope))["runs"]] == ["r1"]  # r9 gone
            assert len((await new.run_state(other))["runs"]) == 1  # another scope untouched
    finally:
        for store in (old, new):
            await store.close()


class _writing:
    """The store's writer task, for the length of a block."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def __aenter__(self) -> None:
        import asyncio
        self.task = asyncio.get_running_loop().create_task(self.store.run())
        await asyncio.sleep(0)

    async def __aexit__(self, *exc: object) -> None:
        self.store.finish()
        await self.task


def test_a_single_machine_daemon_imports_no_nats() -> None:
    code = ("import sys, runhook.cli.main, runhook.app.daemon; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('nats', 'runhook') "
            "and (m.startswith('nats') or m.startswith('runhook.cluster'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_check_config_names_every_mistake_in_the_cluster_table(tmp_path: Path) -> None:
    """Type and structure mistakes in [cluster] (and [scopes]) are lines, not a traceback."""
    path = tmp_path / "runhook.toml"
    path.write_text('[cluster]\nnats = "nats://nats-1:4222"\npartitions = 0\n'
                    'lease_time = "3s"\n\n[scopes."project:a/b"]\nrun_url = 5\n')
    done = subprocess.run([sys.executable, "-m", "runhook", "check-config", str(path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"{path}: cluster.nats: expected `array`, got `str`",
        f"{path}: cluster.partitions: expected `int` >= 1",
        f"{path}: cluster: object contains unknown field `lease_time`; did you mean 'lease'?",
        f"{path}: scopes.project:a/b.run_url: expected `str | null`, got `int`",
        "4 problems found"]
    assert "Traceback" not in done.stderr


def test_a_partitions_back_off_doubles_resets_after_a_success_and_gives_up_at_four() -> None:
    """1, 2, 4 s between restarts, then the node lets the partition go; a success
    between failures starts the count again (the old back-off never came down)."""
    from runhook.cluster.partition import GIVE_UP_AFTER, Backoff
    backoff = Backoff()
    assert [backoff.failed(), backoff.failed()] == [1.0, 2.0]
    backoff.succeeded()
    assert [backoff.failed() for _ in range(GIVE_UP_AFTER)] == [1.0, 2.0, 4.0, None]


def test_the_publishers_places_are_bounded_whatever_projects_a_client_names():
    """Every place is published whatever the configuration, so a client inventing
    project names must not grow the publisher's memory without bound."""
    from types import SimpleNamespace

    from runhook.cluster.publish import Publisher
    from runhook.core.events import RunHeartbeat

    bus = SimpleNamespace(settings=SimpleNamespace(partitions=8))
    publisher = Publisher(bus, None)  # type: ignore[arg-type]  # route() needs no NATS
    for k in range(25_000):
        [destination] = publisher.route(RunHeartbeat(entity="acme", project=f"p{k}",
                                                     run_id="r1"))
        assert destination.scope == f"project:acme/p{k}"
    assert len(publisher._destinations) <= 10_000
    assert len(publisher._order) <= 8  # one turn per partition, kept


async def test_a_worker_lacking_an_executions_automation_puts_it_back_then_judges_it() -> None:
    """A rolling change: the owner made an execution under a file this node lacks (the
    automation, or the integration). The worker does not judge it but puts it back,
    waiting 1 s more each delivery up to 10 s, for a node that has both; only at the
    40th delivery (about 6 minutes on: 1+2+...+9 then 30 x 10 s = 345 s) is it left to
    be judged FAILED, as one machine fails it at the reload that removed it."""
    from types import SimpleNamespace

    from runhook.cluster.deliver import UNKNOWN_TRIES, Workers
    from runhook.core.executions import TEST_AUTOMATION, Job

    naks: list[float] = []

    async def nak(delay: float) -> None:
        naks.append(delay)

    def msg(delivered: int) -> SimpleNamespace:
        return SimpleNamespace(metadata=SimpleNamespace(num_delivered=delivered), nak=nak)

    known = {"model-p0"}
    settings = SimpleNamespace(integrations={"hook": object()},
                               automation=lambda name: object() if name in known else None)
    bus = SimpleNamespace(settings=SimpleNamespace(lease=2.0, node="a"))  # share, recorder
    workers = Workers(None, bus, None)  # type: ignore[arg-type]  # _unknown needs neither

    def job(automation: str, integration: str = "hook") -> Job:
        return Job("ex_1", automation, integration, {}, 0, 0.0, 0)

    assert UNKNOWN_TRIES == 40
    for delivered in (1, 2, 9, 10, 11, 39):
        assert await workers._unknown(msg(delivered), job("model-new"), settings)  # type: ignore[arg-type]
    assert await workers._unknown(msg(1), job("model-p0", "gone"), settings)  # type: ignore[arg-type]
    assert naks == [1.0, 2.0, 9.0, 10.0, 10.0, 10.0, 1.0]
    assert not await workers._unknown(msg(40), job("model-new"), settings)  # type: ignore[arg-type]
    assert not await workers._unknown(msg(1), job("model-p0"), settings)  # type: ignore[arg-type]
    assert not await workers._unknown(msg(1), job(TEST_AUTOMATION), settings)  # type: ignore[arg-type]
    assert len(naks) == 7  # judged or sent as before: never put back
