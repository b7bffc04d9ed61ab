"""Filter regular expressions: RE2 at load (refusing what it cannot compile, with the
field's path), and matching in linear time, so no filter stalls the daemon."""

from __future__ import annotations

import aiohttp
import anyio
import pytest
from test_config import automation, problems

from runhook.config.model import decode
from runhook.config.settings import build
from runhook.triggers.pattern import Pattern

# Python's re backtracks exponentially on this: 2^40 paths for the name below.
CATASTROPHIC = "^(a+)+$"
HOSTILE_NAME = "a" * 40 + "!"


@pytest.mark.parametrize("event, path", [
    ('{ kind = "RUN_STATE", states = ["failed"], run_name = "(a)\\\\1" }', "run_name"),
    ('{ kind = "CREATE_ARTIFACT", collection = "^(?!tmp-)" }', "collection"),
    ('{ kind = "ADD_ARTIFACT_ALIAS", alias = "(?<=v)prod" }', "alias"),
    ('{ kind = "ADD_ARTIFACT_TAG", tag = "(?P<x>a)(?P=x)" }', "tag"),
    ('{ kind = "REMOVE_ARTIFACT_TAG", tag = "a\\\\Z" }', "tag"),
])
def test_patterns_re2_cannot_compile_are_refused_at_load(event, path):
    found = problems(automation(event))
    assert len(found) == 1, found
    assert found[0].startswith(f"automations[0].event.{path}: bad regular expression "), found
    assert "RE2 syntax" in found[0] and "(automation 'a1')" in found[0]


def test_filters_keep_search_semantics():
    settings = build(decode(
        automation('{ kind = "ADD_ARTIFACT_ALIAS", collection = "ds", alias = "^prod$|^v.$" }')
        + automation('{ kind = "RUN_STATE", states = ["failed"], run_name = "^prod-\\\\d+" }')
        .replace("a1", "a2")))
    alias, run = settings.automations
    assert alias.artifact is not None and run.run is not None
    checker, matcher = alias.artifact, run.run.matcher
    assert checker.collection is not None and checker.alias is not None
    assert checker.collection.search("my-ds-v2") and not checker.collection.search("d s")
    assert checker.alias.search("prod") and not checker.alias.search("preprod")
    # RE2 matches UTF-8 text one code point at a time, as Python's re does.
    assert checker.alias.search("vé") and not checker.alias.search("vée")
    assert matcher.matches("prod-12", "ana") and not matcher.matches("dev-prod-12", "ana")
    assert matcher.matches("prod-12x", "ana")  # search: the rest of the name is free
    assert not matcher.matches("prod-", "ana")


async def test_a_catastrophic_filter_does_not_stall_the_daemon(start_daemon):
    body = automation(f'{{ kind = "RUN_STATE", states = ["failed"], run_name = "{CATASTROPHIC}" }}') \
        + automation(f'{{ kind = "ADD_ARTIFACT_ALIAS", alias = "{CATASTROPHIC}" }}').replace(
            'name = "a1"', 'name = "a2"')
    daemon = await start_daemon(body)
    run = {"type": "run.state", "entity": "acme", "project": "vision", "run_id": "r1",
           "run_name": HOSTILE_NAME, "user": "ana", "state": "failed"}
    alias = {"type": "artifact.alias_added", "entity": "acme", "project": "vision",
             "collection": "ds", "version": 1, "alias": HOSTILE_NAME}
    try:
        # A bound on a wait, not a timing assertion: with backtracking this takes
        # hours; with RE2 microseconds.
        with anyio.fail_after(8):
            async with daemon.client() as client:
                assert await client.request(run) == {"ok": True}
                assert await client.request(alias) == {"ok": True}
                assert await client.request({**run, "run_id": "r2",
                                             "run_name": "a" * 40}) == {"ok": True}
            async with aiohttp.ClientSession() as http, http.get(daemon.http + "/healthz") as r:
                assert r.status == 200
    except TimeoutError:
        daemon.process.kill()  # a stalled daemon would not answer SIGTERM
        raise
    async with daemon.client() as client:
        rows = (await client.request({"type": "query.history"}))["executions"]
    assert [(r["automation"], r["run_id"]) for r in rows] == [("a1", "r2")]


def test_re2_classes_are_ascii_and_unicode_classes_are_spelt_out():
    """As the README says: RE2's \\w is ASCII; [\\pL\\pN_] matches names in any script."""
    assert not Pattern("run_name", r"^\w+$").search("modèle")
    assert Pattern("run_name", r"^[\pL\pN_]+$").search("modèle_2")
