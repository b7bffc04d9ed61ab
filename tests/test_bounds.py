"""Bounds on what clients can make the daemon keep (issue 23, item 3): tracked runs and
open digest windows per scope, silences; pure where the bound is checked, then through
the real daemon (socket, CLI, loopback HTTP, /metrics)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from conftest import webhook_config
from prometheus_client.parser import text_string_to_metric_families
from test_digests import fire, settings, statements

from runhook.cli.main import main as cli
from runhook.client import Client
from runhook.config.model import ConfigError, decode
from runhook.config.settings import ScopeSettings, build
from runhook.core import bounds
from runhook.core.bounds import AtBound
from runhook.core.events import RunHeartbeat
from runhook.evaluate.evaluator import Evaluator
from runhook.evaluate.runbook import RunBook
from runhook.store.statements import INSERT_GROUPED, OPEN_DIGEST

SCOPE = "project:acme/vision"
CRASHES = f"""
[[automations]]
name = "crashed"
scope = "{SCOPE}"
event = {{ kind = "RUN_STATE", states = ["crashed"] }}
action = {{ kind = "none" }}
"""


def beat(run_id: str) -> RunHeartbeat:
    return RunHeartbeat(entity="acme", project="vision", run_id=run_id)


def test_the_bounds_have_defaults_and_are_configurable():
    default = build(decode(CRASHES))
    server = default.config.server
    assert (server.max_runs_per_scope, server.max_digest_windows_per_scope,
            server.max_silences, server.max_silence_pattern) == (50_000, 5_000, 500, 256)
    assert default.max_silence_duration == 90 * 86400
    assert (default.scope(SCOPE).max_runs, default.scope(SCOPE).max_digest_windows) == \
        (50_000, 5_000)
    tuned = build(decode('[server]\nmax_runs_per_scope = 7\nmax_digest_windows_per_scope = 3\n'
                         'max_silence_duration = "2d"\n' + CRASHES))
    assert (tuned.scope(SCOPE).max_runs, tuned.scope(SCOPE).max_digest_windows) == (7, 3)
    assert tuned.max_silence_duration == 2 * 86400
    with pytest.raises(ConfigError) as caught:
        build(decode('[server]\nmax_silence_duration = "0s"\n' + CRASHES))
    assert "server.max_silence_duration: expected a duration above 0" in str(caught.value)


def test_a_new_run_past_the_bound_is_refused_and_changes_nothing():
    book = RunBook(build(decode(CRASHES)).automations, ScopeSettings(max_runs=2))
    book.heartbeat(beat("r1"), 1.0)
    book.heartbeat(beat("r2"), 2.0)
    deadline, armed = book.next_deadline(), len(book.timers)
    with pytest.raises(AtBound) as caught:
        book.heartbeat(beat("r3"), 3.0)
    assert str(caught.value) == (
        "at a bound: run 'r3' is not tracked: this scope tracks 2 runs, the most "
        "[server] max_runs_per_scope allows (event refused, nothing recorded)")
    assert caught.value.bound == "runs"
    assert sorted(book.runs) == ["r1", "r2"] and "r3" not in book.dirty
    assert (book.next_deadline(), len(book.timers)) == (deadline, armed)
    # The runs it tracks go on as before: never evicted to make room.
    assert book.heartbeat(beat("r1"), 4.0).run is book.runs["r1"]
    assert book.runs["r1"].last_seen == 4.0


def test_a_firing_with_a_new_key_past_the_window_bound_is_sent_alone():
    spec = settings(digest='{ window = "30s", by = ["run_name"] }')
    ev = Evaluator(SCOPE, spec.by_scope[SCOPE], settings=ScopeSettings(max_digest_windows=1))
    before = bounds.HITS.get("digest_windows", 0)
    first = fire(ev, "a", 10.0)
    assert len(statements(first, OPEN_DIGEST)) == 1 and not first.jobs  # grouped
    alone = fire(ev, "b", 11.0)
    # No window for key name-b: one execution, delivered now, as a digest of one.
    assert statements(alone, OPEN_DIGEST) == [] and statements(alone, INSERT_GROUPED) == []
    [job] = alone.jobs
    [row] = alone.rows
    assert row[0] == job.id == job.context["execution_id"]
    assert (job.context["digest_count"], job.context["digest_key"]) == (1, "name-b")
    assert [item["run_name"] for item in job.context["digest_items"]] == ["name-b"]
    assert "sent alone, not grouped: this scope has 1 open digest windows" in str(row)
    assert bounds.HITS["digest_windows"] == before + 1
    # A firing of the open key still joins its window.
    again = fire(ev, "a", 12.0)
    assert len(statements(again, INSERT_GROUPED)) == 1 and not again.jobs
    assert len(ev.digests) == 1


async def scrape(daemon) -> dict:
    async with aiohttp.ClientSession() as http, http.get(daemon.http + "/metrics") as r:
        text = await r.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_the_socket_refuses_a_new_run_past_the_bound_on_its_own_line(start_daemon):
    daemon = await start_daemon("max_runs_per_scope = 2\n" + CRASHES)
    event = {"type": "run.heartbeat", "entity": "acme", "project": "vision"}

    def pipelined() -> list[dict]:  # one chunk: only the third line is refused
        with Client(daemon.socket) as client:
            return list(client.send_many([{**event, "run_id": "r1"}, {**event, "run_id": "r2"},
                                          {**event, "run_id": "r3", "id": "ev-3"},
                                          {**event, "run_id": "r1"}]))
    answers = await asyncio.to_thread(pipelined)
    assert [a["ok"] for a in answers] == [True, True, False, True]
    refused = answers[2]
    async with daemon.client() as client:
        assert refused["error"] == "line 3: " + (
            "at a bound: run 'r3' is not tracked: this scope tracks 2 runs, the most "
            "[server] max_runs_per_scope allows (event refused, nothing recorded)")
        # Nothing recorded: not even the id, so the same event is refused again, not a
        # duplicate answered ok.
        again = await client.request({**event, "run_id": "r3", "id": "ev-3"})
        assert again["ok"] is False
        assert again["error"].replace("line 1: ", "line 3: ") == refused["error"]
    samples = await scrape(daemon)
    assert samples[("runhook_bound_hits_total", (("bound", "runs"),))] == 2
    assert samples[("runhook_tracked_runs", ())] == 2
    assert "at a bound: run 'r3' is not tracked" in daemon.log_text()


def silence_config(url: str) -> str:
    return ('max_silences = 2\nmax_silence_pattern = 8\nmax_silence_duration = "1d"\n'
            + webhook_config(url))


async def test_silences_past_their_bounds_are_refused_at_socket_cli_and_http(
        start_daemon, receiver, capsys):
    daemon = await start_daemon(silence_config(receiver.url))
    add = {"type": "command.silence_add", "automation": "deploy", "comment": "x"}
    async with daemon.client() as client:
        century = await client.request({**add, "duration": "36500d"})
        assert century == {"ok": False, "error": "field `duration`: 36500d is longer than 1d, "
                                                 "the most [server] max_silence_duration allows"}
        long_pattern = await client.request({**add, "duration": "1h", "run_name": "^sweep-12"})
        assert long_pattern == {"ok": False, "error": (
            "field `run_name`: 9 characters, more than the 8 [server] max_silence_pattern "
            "allows")}
        first = await client.request({**add, "duration": "1d", "run_name": "^sweep-1"})
        assert first["ok"], first
        second = await client.request({**add, "duration": 60})
        assert second["ok"], second
        full = await client.request({**add, "duration": 60})
        assert full == {"ok": False, "error": (
            "2 silences are kept (active, and ended within 24 h), the most [server] "
            "max_silences allows: expire one, or wait")}
        # An expired silence is still listed for 24 h: it still counts.
        await client.request({"type": "command.silence_expire", "id": second["silence"]["id"]})
        assert (await client.request({**add, "duration": 60}))["ok"] is False
        listed = (await client.request({"type": "command.silence_list"}))["silences"]
    assert len(listed) == 2
    code = await asyncio.to_thread(cli, ["silence", "add", "--all", "--for", "100d",
                                         "--comment", "forever", "--socket", daemon.socket])
    assert code == 1
    assert "field `duration`: 100d is longer than 1d" in capsys.readouterr().err
    async with daemon.console() as http, http.post(
            f"{daemon.http}/api/silences",
            json={"automation": "deploy", "duration": "2d", "comment": "x"}) as r:
        assert r.status == 400
        assert (await r.json())["error"].startswith("field `duration`: 2d is longer than 1d")
    samples = await scrape(daemon)
    assert samples[("runhook_bound_hits_total", (("bound", "silence_duration"),))] == 3
    assert samples[("runhook_bound_hits_total", (("bound", "silence_pattern"),))] == 1
    assert samples[("runhook_bound_hits_total", (("bound", "silences"),))] == 2
