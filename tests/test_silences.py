"""Silences: the pure check where a firing becomes an execution, and through the real
daemon over the socket, the CLI and loopback HTTP, durable across a restart."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from conftest import settled, webhook_config

from runhook.cli.main import main as cli
from runhook.core.schema import FieldError
from runhook.triggers.silences import Silences, compile_silence, silenced_by

NOW = 1_000_000.0


def silence(automation=None, run_name=None, group=None, collection=None, start=NOW - 10,
            end=NOW + 10):
    return compile_silence("si_1", automation, run_name, group, collection, "deploying",
                           start, end)


RUN = {"run_name": "sweep-7", "run_id": "r7"}
ARTIFACT = {"artifact_collection_name": "resnet"}


@pytest.mark.parametrize("given, automation, context, matches", [
    (silence(), "any", RUN, True),                                    # --all
    (silence(automation="a"), "a", RUN, True),
    (silence(automation="a"), "b", RUN, False),                       # another automation
    (silence(run_name="^sweep-"), "a", RUN, True),
    (silence(run_name="^sweep-"), "a", {"run_name": "prod-1"}, False),
    (silence(run_name="^sweep-"), "a", ARTIFACT, False),              # no run: no match
    (silence(collection="res"), "a", ARTIFACT, True),                 # search semantics
    (silence(collection="res"), "a", RUN, False),
    (silence(run_name="sweep", collection="res"), "a", RUN, False),   # every filter must match
    (silence(group="."), "a", RUN, False),                            # runs carry no group yet
    (silence(group="^g1$"), "a", {**RUN, "run_group": "g1"}, True),   # …and will once they do
    (silence(end=NOW), "a", RUN, False),                              # ended exactly now
    (silence(start=NOW + 1), "a", RUN, False),                        # not yet
])
def test_silenced_by(given, automation, context, matches):
    found = silenced_by([given], automation, context, NOW)
    assert (found is given) if matches else found is None


def test_first_matching_silence_names_the_reason():
    first = compile_silence("si_a", "x", None, None, None, "other", NOW - 1, NOW + 1)
    second = compile_silence("si_b", None, "sweep", None, None, "sweep diverging", NOW - 1,
                             NOW + 1)
    assert silenced_by([first, second], "a", RUN, NOW).reason() == \
        "silenced by si_b: sweep diverging"
    book = Silences([first])
    book.put(second)
    assert [s.id for s in book.active(NOW)] == ["si_a", "si_b"]
    book.forget_before(NOW + 2)
    assert book.all == ()


def test_a_bad_pattern_names_its_field():
    with pytest.raises(FieldError) as caught:
        silence(run_name="(a")
    assert caught.value.field == "run_name"


def config(url: str) -> str:
    return webhook_config(url, '{"run": "${run_name}", "status": "${run_status}"}',
                          scope="project:acme/vision",
                          event='{ kind = "RUN_STATE", states = ["failed"] }') \
        .replace('name = "deploy"', 'name = "run-failed"')


def failed(run_id: str, name: str) -> dict:
    return {"type": "run.state", "entity": "acme", "project": "vision", "run_id": run_id,
            "run_name": name, "user": "ana", "state": "failed"}


async def history(daemon) -> list[dict]:
    async with daemon.client() as client:
        return (await client.request({"type": "query.history"}))["executions"]


async def test_a_run_name_silence_skips_matching_firings_and_delivers_others(
        start_daemon, receiver, capsys):
    daemon = await start_daemon(config(receiver.url))
    async with daemon.client() as client:
        refused = await client.request({"type": "command.silence_add", "automation": "nope",
                                        "duration": 60, "comment": "typo"})
        assert refused == {"ok": False,
                           "error": "no automation 'nope' in the running configuration"}
        added = await client.request({"type": "command.silence_add", "automation": "run-failed",
                                      "run_name": "^sweep-", "duration": "2h",
                                      "comment": "sweep 12 is diverging on purpose"})
        assert added["ok"], added
        silence_id = added["silence"]["id"]
        assert added["silence"]["ends_at"] - added["silence"]["created_at"] == 7200
        for run_id, name in [("a", "sweep-1"), ("b", "prod-1"), ("c", "sweep-2")]:
            assert await client.send(failed(run_id, name)) == {"ok": True}
    delivered = json.loads((await receiver.next()).body)
    rows = await history(daemon)
    [prod] = [r for r in rows if r["context"]["run_name"] == "prod-1"]
    assert (await settled(daemon, prod["id"]))["execution"]["state"] == "FINISHED"
    # sweep-1 and sweep-2 match ^sweep-: SKIPPED with the silence; prod-1 is sent.
    reason = f"silenced by {silence_id}: sweep 12 is diverging on purpose"
    assert sorted((r["context"]["run_name"], r["state"], r["reason"]) for r in rows
                  if r is not prod) == [("sweep-1", "SKIPPED", reason),
                                        ("sweep-2", "SKIPPED", reason)]
    assert delivered == {"run": "prod-1", "status": "failed"}
    assert len(receiver.requests) == 1

    # Redelivered by id while the silence holds: sent, and the command says it was
    # silenced and goes out anyway (a person asked for this one by name).
    [sweep_1] = [r for r in rows if r["context"]["run_name"] == "sweep-1"]
    code = await asyncio.to_thread(cli, ["redeliver", sweep_1["id"], "--socket", daemon.socket])
    assert code == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"note: {sweep_1['id']} was not sent when it fired ({reason}); it is sent now anyway")
    assert json.loads((await receiver.next()).body) == {"run": "sweep-1", "status": "failed"}
    assert (await settled(daemon, sweep_1["id"]))["execution"]["state"] == "FINISHED"

    # The same through the CLI, and durable: a restarted daemon still applies it.
    code = await asyncio.to_thread(cli, ["silence", "list", "--socket", daemon.socket])
    assert code == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["ID", "AUTOMATION", "STATE", "ENDS", "MATCHING", "COMMENT"]
    assert row.startswith(f"{silence_id}  run-failed  active  ")
    assert "run-name ~ ^sweep-  sweep 12 is diverging on purpose" in row
    assert re.search(r"active  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC([+-]\d\d:\d\d)?  ", row)
    assert await daemon.stop() == 0
    daemon = await start_daemon(config=daemon.config)
    async with daemon.client() as client:
        assert await client.send(failed("d", "sweep-3")) == {"ok": True}
    [newest, *_] = await history(daemon)
    assert (newest["context"]["run_name"], newest["state"]) == ("sweep-3", "SKIPPED")

    # Expired: firings go out again, and the silence stays listed, inactive.
    code = await asyncio.to_thread(cli, ["silence", "expire", silence_id,
                                         "--socket", daemon.socket])
    assert code == 0 and "expired" in capsys.readouterr().out
    async with daemon.client() as client:
        assert await client.send(failed("e", "sweep-4")) == {"ok": True}
        listed = (await client.request({"type": "command.silence_list"}))["silences"]
    assert json.loads((await receiver.next()).body) == {"run": "sweep-4", "status": "failed"}
    assert [(s["id"], s["active"]) for s in listed] == [(silence_id, False)]


async def test_silences_over_loopback_http_and_on_the_status_page(start_daemon, receiver,
                                                                  capsys):
    daemon = await start_daemon(config(receiver.url))
    code = await asyncio.to_thread(cli, ["silence", "add", "--all", "--for", "30m",
                                         "--comment", "maintenance", "--socket", daemon.socket])
    assert code == 0 and "(all)" in capsys.readouterr().out
    async with daemon.console() as http:
        # A browser's cross-site form post cannot send JSON: refused, nothing added.
        async with http.post(f"{daemon.http}/api/silences", data="automation=run-failed",
                             headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
            assert r.status == 415
        async with http.post(f"{daemon.http}/api/silences",
                             json={"automation": "run-failed", "duration": "1h"}) as r:
            assert r.status == 400
            assert (await r.json())["error"] == "Object missing required field `comment`"
        async with http.post(f"{daemon.http}/api/silences",
                             json={"automation": "run-failed", "run_name": "(a",
                                   "duration": "1h", "comment": "x"}) as r:
            assert r.status == 400 and (await r.json())["error"].startswith(
                "field `run_name`: bad regular expression")
        async with http.post(f"{daemon.http}/api/silences",
                             json={"automation": "run-failed", "collection": "resnet",
                                   "duration": 600, "comment": "retraining"}) as r:
            assert r.status == 201
            added = (await r.json())["silence"]
        async with http.get(f"{daemon.http}/api/silences") as r:
            listed = (await r.json())["silences"]
        assert {s["comment"] for s in listed} == {"maintenance", "retraining"}
        async with http.get(f"{daemon.http}/") as r:
            page = await r.text()
        assert added["id"] in page and "collection ~ resnet" in page
        async with http.post(f"{daemon.http}/api/silences/{added['id']}/expire",
                             json={}) as r:
            assert r.status == 200 and (await r.json())["silence"]["active"] is False
        async with http.post(f"{daemon.http}/api/silences/si_nope/expire", json={}) as r:
            assert r.status == 404
    async with daemon.client() as client:
        status = (await client.request({"type": "query.status"}))["status"]
    assert [s["comment"] for s in status["silences"]] == ["maintenance"]  # active only
