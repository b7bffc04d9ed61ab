"""Digests, checked directly: evaluate/digests.py's windows and keys, the Evaluator
grouping firings into them (silences and cooldowns first), closing them on the
timer heap, restoring them from what is committed, the config's checks, and the
channels' rendering of a digest. No actor, no clock: times are given."""

from __future__ import annotations

import json
import sqlite3

import aiosqlite
import pytest

from runhook.config.automations import DigestSpec
from runhook.config.model import ConfigError, decode
from runhook.config.settings import Settings, build
from runhook.core import constants
from runhook.core.events import AliasAdded, RunMetrics
from runhook.core.executions import STATES
from runhook.core.variables import DIGEST_KINDS, VARIABLES
from runhook.delivery.channels import pagerduty
from runhook.delivery.channels.common import DIGEST_LISTED, digest_list, render
from runhook.evaluate.digests import Digests, digest_context, key_of
from runhook.evaluate.evaluator import Caused, Evaluator
from runhook.evaluate.timers import DIGEST, Timers
from runhook.store.migrations import MIGRATIONS, _0011_digests, migrate
from runhook.store.statements import (
    CLEAR_DIGEST,
    INSERT_GROUPED,
    OPEN_DIGEST,
)
from runhook.triggers.silences import Silences, compile_silence

SCOPE = "project:acme/vision"
HEAD = """
[integrations.ci]
kind = "webhook"
url = "https://example.com/hook"
"""


def settings(digest: str = '{ window = "30s", by = ["group"] }',
             event: str = '{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = ">", '
                          'threshold = 5 }', scope: str = SCOPE, cooldown: str = "0",
             head: str = HEAD, integration: str = "ci") -> Settings:
    return build(decode(f"""{head}
[[automations]]
name = "a"
scope = "{scope}"
event = {event}
action = {{ integration = "{integration}" }}
cooldown = "{cooldown}"
digest = {digest}
"""))


def evaluator(silences: Silences | None = None, **kw: str) -> Evaluator:
    return Evaluator(SCOPE, settings(**kw).by_scope[SCOPE], silences)


def loss(run: str, value: float = 10.0, group: str | None = "sweep-7") -> RunMetrics:
    return RunMetrics(entity="acme", project="vision", run_id=run, run_name=f"name-{run}",
                      user="ana", values={"loss": value}, group=group)


def fire(ev: Evaluator, run: str, now: float, **kw: object) -> Caused:
    """A crossing of `run` at `now` (after a value under the threshold clears it)."""
    ev.evaluate(loss(run, 0.0, **kw), now, now)  # type: ignore[arg-type]
    return ev.evaluate(loss(run, **kw), now, now)  # type: ignore[arg-type]


def statements(caused: Caused, sql: str) -> list[tuple[object, ...]]:
    return [row for s, params in caused.statements if s == sql for row in params]


def test_grouped_is_a_state():
    assert "GROUPED" in STATES


def test_key_reads_the_by_variables_and_empty_for_what_is_missing():
    spec = DigestSpec(30.0, ("group", "run_name"), (("run_group", "group"), ("run_name",)))
    assert key_of(spec, {"run_group": "g", "run_name": "n"}) == ("g", "n")
    assert key_of(spec, {"group": "g2"}) == ("g2", "")
    assert key_of(DigestSpec(1.0, (), ()), {"run_name": "n"}) == ()


def test_a_window_opens_once_per_key_and_closes_on_its_timer():
    timers = Timers()
    digests = Digests(timers)
    spec = DigestSpec(30.0, ("run_name",), (("run_name",),))
    w1, opened1 = digests.join("a", spec, {"run_name": "x", "n": 1}, 100.0, "ex_d1")
    w2, opened2 = digests.join("a", spec, {"run_name": "x", "n": 2}, 110.0, "ex_d2")
    w3, opened3 = digests.join("a", spec, {"run_name": "y"}, 111.0, "ex_d3")
    assert (opened1, opened2, opened3) == (True, False, True)
    assert w1 is w2 and w1.id == "ex_d1" and w1.count == 2 and w3.id == "ex_d3"
    assert timers.next() == 130.0
    assert timers.due(130.0) == [(DIGEST, "ex_d1")]
    closed = digests.close("ex_d1")
    assert closed is w1 and digests.close("ex_d1") is None
    # The key is free again: the next firing opens a second window.
    assert digests.join("a", spec, {"run_name": "x"}, 131.0, "ex_d4")[1]


def test_items_are_capped_but_counted():
    digests = Digests(Timers())
    spec = DigestSpec(30.0, (), ())
    for i in range(constants.DIGEST_ITEMS_KEPT + 5):
        window, _ = digests.join("a", spec, {"i": i}, 0.0, "ex_d")
    assert window.count == constants.DIGEST_ITEMS_KEPT + 5
    assert len(window.items) == constants.DIGEST_ITEMS_KEPT


def test_digest_context_keeps_what_the_firings_share():
    digests = Digests(Timers())
    spec = DigestSpec(30.0, ("group",), (("run_group", "group"),))
    for run in ("r1", "r2"):
        window, _ = digests.join("a", spec, {"run_group": "g", "run_name": run,
                                             "execution_id": f"ex_{run}", "entity_name": "acme",
                                             "event_time": run}, 0.0, "ex_d")
    context = digest_context(window, "RUN_METRIC_THRESHOLD", "2026-11-28T00:00:00.000Z")
    assert context["run_group"] == "g" and context["entity_name"] == "acme"
    assert "run_name" not in context  # the runs differ: renders empty
    assert context["execution_id"] == "ex_d" and context["digest_count"] == 2
    assert context["digest_key"] == "g" and context["event_type"] == "RUN_METRIC_THRESHOLD"
    assert [i["run_name"] for i in context["digest_items"]] == ["r1", "r2"]
    assert context["digest_runs"] == "2 runs"


def test_digest_runs_says_one_run_and_counts_each_run_once():
    from runhook.evaluate.digests import runs_in_words
    assert runs_in_words([{"run_id": "r1", "run_name": "a"}]) == "1 run"
    # r1 fired twice (two metrics), r2 once: two runs, three firings
    assert runs_in_words([{"run_id": "r1"}, {"run_id": "r1"}, {"run_id": "r2"}]) == "2 runs"
    assert runs_in_words([{"artifact_version": "a/b/c:v1"}]) == ""  # no runs: empty
    # the README's example title reads right for one run
    from runhook.core.templates import Text
    title = Text("${digest_runs} of ${run_group} failed")
    assert title.render({"digest_runs": runs_in_words([{"run_id": "r9"}]),
                         "run_group": "sweep-9"}, {}) == "1 run of sweep-9 failed"


def test_firings_are_grouped_and_one_digest_is_created_at_close():
    ev = evaluator()
    caused = [fire(ev, f"r{i}", 100.0 + i) for i in range(3)]
    opened = [statements(c, OPEN_DIGEST) for c in caused]
    assert len(opened[0]) == 1 and opened[1:] == [[], []]
    digest_id, scope, automation, key, opened_at, closes_at = opened[0][0]
    assert (scope, automation, json.loads(str(key)), opened_at, closes_at) == \
        (SCOPE, "a", ["sweep-7"], 100.0, 130.0)
    grouped = [row for c in caused for row in statements(c, INSERT_GROUPED)]
    assert len(grouped) == 3 and all(c.rows == [] and c.jobs == [] for c in caused)
    assert {row[8] for row in grouped} == {"GROUPED"}
    assert {row[-1] for row in grouped} == {digest_id}
    assert grouped[0][9] == f"grouped into digest {digest_id}"
    assert ev.next_deadline() == 130.0
    assert ev.expire(129.9).rows == []
    closed = ev.expire(130.0)
    (row,) = closed.rows
    assert row[0] == digest_id and row[8] == "PENDING" and row[4] == "timer"
    assert statements(closed, CLEAR_DIGEST) == [(digest_id,)]
    (job,) = closed.jobs
    assert job.id == digest_id and job.integration == "ci"
    assert job.context["digest_count"] == 3 and job.context["run_group"] == "sweep-7"
    assert [i["run_id"] for i in job.context["digest_items"]] == ["r0", "r1", "r2"]
    # After the window: a second one.
    again = fire(ev, "r9", 131.0)
    (second,) = statements(again, OPEN_DIGEST)
    assert second[0] != digest_id


def test_by_run_name_splits_keys():
    ev = evaluator(digest='{ window = "10s", by = ["run_name"] }')
    for i in range(4):
        fire(ev, f"r{i % 2}", 100.0 + i)
    caused = ev.expire(200.0)
    assert sorted((j.context["digest_key"], j.context["digest_count"]) for j in caused.jobs) \
        == [("name-r0", 2), ("name-r1", 2)]
    assert {j.context["run_name"] for j in caused.jobs} == {"name-r0", "name-r1"}


def test_a_silence_wins_over_a_digest():
    silences = Silences([compile_silence("si_1", "a", "^name-r1$", None, None, "noisy",
                                         0.0, 1e12)])
    ev = evaluator(silences)
    c0, c1 = fire(ev, "r0", 100.0), fire(ev, "r1", 101.0)
    assert len(statements(c0, INSERT_GROUPED)) == 1
    (skipped,) = c1.rows
    assert skipped[8:10] == ("SKIPPED", "silenced by si_1: noisy")
    assert statements(c1, INSERT_GROUPED) == []
    (job,) = ev.expire(200.0).jobs
    assert job.context["digest_count"] == 1


def test_a_cooldown_skip_does_not_join():
    ev = evaluator(digest='{ window = "30s" }', cooldown="1h")
    first, second = fire(ev, "r0", 100.0), fire(ev, "r0", 101.0)
    assert len(statements(first, INSERT_GROUPED)) == 1
    assert second.rows[0][8] == "SKIPPED" and statements(second, INSERT_GROUPED) == []
    assert ev.expire(200.0).jobs[0].context["digest_count"] == 1


def test_artifact_automations_group_by_collection():
    s = settings(digest='{ window = "5s", by = ["collection"] }', scope="registry:acme/model",
                 event='{ kind = "ADD_ARTIFACT_ALIAS" }')
    ev = Evaluator("registry:acme/model", s.by_scope["registry:acme/model"])
    for i, collection in enumerate(["c1", "c1", "c2"]):
        caused = ev.evaluate(AliasAdded(entity="acme", registry="model", collection=collection,
                                        version=i, alias="x", author="al"), 10.0, 10.0)
        assert caused.rows == [] and len(statements(caused, INSERT_GROUPED)) == 1
    done = ev.expire(15.0)
    assert sorted((j.context["digest_key"], j.context["digest_count"]) for j in done.jobs) == \
        [("c1", 2), ("c2", 1)]
    assert {r[4] for r in done.rows} == {"timer"}  # the daemon's clock closed them


def test_restore_reopens_windows_and_a_past_close_is_due_at_once():
    ev = evaluator()
    caused = [fire(ev, f"r{i}", 100.0 + i) for i in range(2)]
    (window_row,) = statements(caused[0], OPEN_DIGEST)
    grouped = [row for c in caused for row in statements(c, INSERT_GROUPED)]
    fresh = evaluator()
    fresh.restore({"runs": [], "windows": [], "log": [], "batches": [], "flags": [],
                   "digest_windows": [(window_row[0], "a", window_row[3], 100.0, 130.0)],
                   "digest_items": [(row[-1], row[10]) for row in grouped]}, 500.0)
    assert fresh.keeps_state and fresh.next_deadline() == 130.0
    (job,) = fresh.expire(500.0).jobs
    assert job.id == window_row[0] and job.context["digest_count"] == 2


def test_a_digest_of_a_removed_automation_is_recorded_skipped():
    ev = evaluator()
    fire(ev, "r0", 100.0)
    ev.reconfigure([])
    closed = ev.expire(200.0)
    (row,) = closed.rows
    assert row[8:10] == ("SKIPPED", "automation 'a' is no longer configured")
    assert closed.jobs == []


@pytest.mark.parametrize(("digest", "problem"), [
    ('{ window = "0" }', "digest.window: expected a duration above zero"),
    ('{ window = "soon" }', "digest.window: expected a duration"),
    ('{ window = "1s", by = ["collection"] }',
     "digest.by[0]: RUN_METRIC_THRESHOLD firings have no collection"),
    ('{ window = "1s", by = ["group", "group"] }', "digest.by[1]: group is listed twice"),
])
def test_bad_digests_are_refused_with_their_path(digest, problem):
    with pytest.raises(ConfigError) as caught:
        settings(digest=digest)
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def test_channels_list_twenty_then_and_n_more():
    items = [{"run_name": f"run-{i}", "metric_name": "loss", "metric_values": [12.5]}
             for i in range(25)]
    context = {"automation_name": "a", "event_type": "RUN_METRIC_THRESHOLD",
               "digest_count": 100, "digest_items": items, "digest_key": "g"}
    lines = digest_list(context).splitlines()
    assert len(lines) == DIGEST_LISTED + 1
    assert lines[0] == "• run-0: loss [12.5]" and lines[-1] == "and 80 more"
    title, text = render(None, None, context)
    assert title == "a: RUN_METRIC_THRESHOLD ×100" and text.endswith("and 80 more")
    # PagerDuty: one trigger keyed by the digest key, items cut to those listed.
    event = pagerduty.event("k" * 32, title, text, "ERROR", context)
    assert event["event_action"] == "trigger" and event["dedup_key"] == "a/digest/g"
    assert len(event["payload"]["custom_details"]["digest_items"]) == DIGEST_LISTED


async def test_migration_0011_keeps_the_history_and_admits_grouped(tmp_path):
    db = await aiosqlite.connect(tmp_path / "r.db", isolation_level=None)
    await db.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    before = MIGRATIONS[:MIGRATIONS.index(_0011_digests)]
    for migration in before:  # a database of the version before
        for statement in migration():
            await db.execute(statement)
        await db.execute("INSERT INTO schema_migrations VALUES (?, 0)",
                         (migration.__name__.lstrip("_"),))
    await db.execute("INSERT INTO executions (id, automation, scope, event_kind, event_type, "
                     "action_kind, state, context, created_at, updated_at, attempts, "
                     "round_start) VALUES ('ex_old', 'a', 's', 'K', 't', 'none', 'FINISHED', "
                     "'{}', 1, 2, 3, 1)")
    with pytest.raises(sqlite3.IntegrityError):
        await db.execute("UPDATE executions SET state = 'GROUPED'")
    assert (await migrate(db))[0] == "0011_digests"
    async with db.execute("SELECT id, state, attempts, round_start, digest_id "
                          "FROM executions") as cursor:
        assert await cursor.fetchall() == [("ex_old", "FINISHED", 3, 1, None)]
    await db.execute("UPDATE executions SET state = 'GROUPED', digest_id = 'ex_d'")
    async with db.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                          "AND tbl_name = 'executions' ORDER BY name") as cursor:
        assert [r[0] for r in await cursor.fetchall()] == [
            "executions_by_automation", "executions_by_created", "executions_by_digest",
            "executions_by_run", "executions_by_state", "executions_due",
            "sqlite_autoindex_executions_1"]
    await db.close()


def test_the_variable_table_lists_what_a_digest_adds():
    digests = Digests(Timers())
    window, _ = digests.join("a", DigestSpec(1.0, (), ()), {"run_name": "n"}, 0.0, "ex_d")
    added = set(digest_context(window, "RUN_STATE", "t")) - {
        "run_name", "event_type", "automation_name", "execution_id", "event_time"}
    assert added == {v.name for v in VARIABLES if v.kinds == DIGEST_KINDS}


def test_no_per_run_resolve_for_a_pagerduty_automation_with_a_digest():
    pager = '''
[secrets]
PD = { env = "PATH" }

[integrations.pager]
kind = "pagerduty"
routing_key = "PD"
'''
    s = settings(digest='{ window = "30s" }', head=pager, integration="pager")
    ev = Evaluator(SCOPE, s.by_scope[SCOPE])
    fire(ev, "r0", 100.0)
    cleared = ev.evaluate(loss("r0", 0.0), 101.0, 101.0)  # the condition turns false
    assert cleared.rows == [] and statements(cleared, INSERT_GROUPED) == []
