"""A scope that a reload added evaluates a resent event (a real daemon, the reload by
`command.reload`): the id of an event that reached no scope is recorded apart from
every scope's, so the project or registry scope that appears is not told it has seen it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import Receiver, webhook_config

ADDED = """
[[automations]]
name = "added"
scope = "{scope}"
event = {{ kind = "{kind}" }}
action = {{ integration = "ci" }}
"""

EVENTS = {
    "project:acme/new3": ("CREATE_ARTIFACT", {"type": "artifact.created", "entity": "acme",
                                              "project": "new3", "collection": "m",
                                              "version": 1, "id": "e1"}),
    "registry:acme/models": ("LINK_ARTIFACT", {"type": "artifact.linked", "entity": "acme",
                                               "registry": "models", "collection": "m",
                                               "version": 1, "id": "e1"}),
}


@pytest.mark.parametrize("scope", list(EVENTS))
async def test_a_scope_a_reload_added_evaluates_the_resent_event(
        start_daemon: Any, receiver: Receiver, scope: str) -> None:
    """Sent once while no automation has its place: ok, nothing fires; sent again:
    a duplicate. The file gains an automation for that very place and is reloaded;
    the resend is evaluated there (ok, one webhook), and the one after is a duplicate.
    Before, the first send recorded the id under its place, which is also the new
    scope's own key: the resend was a duplicate and nothing was ever sent."""
    kind, event = EVENTS[scope]
    daemon = await start_daemon(webhook_config(receiver.url))  # registry:acme/model only
    async with daemon.client() as client:
        assert await client.request(event) == {"ok": True}
        assert await client.request(event) == {"ok": True, "duplicate": True}
        daemon.config.write_text(daemon.config.read_text() + ADDED.format(scope=scope,
                                                                          kind=kind))
        reloaded = await client.request({"type": "command.reload"})
        assert reloaded["ok"], reloaded
        assert await client.request(event) == {"ok": True}
        assert await client.request(event) == {"ok": True, "duplicate": True}
    sent = await receiver.next(timeout=15)
    body = json.loads(sent.body)
    assert body["data"]["automation_name"] == "added"
    assert len(receiver.requests) == 1  # the duplicate after it evaluated nothing
