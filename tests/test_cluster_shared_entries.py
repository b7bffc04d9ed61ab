"""Entries a stranger puts straight into the cluster's shared buckets (docs/cluster.md,
"Shared state"): refused when read, never applied, so no firing is lost or muted by
them, `silence list` answers, and `enable`/`expire` remove what they name. One runhook
node over one real nats-server, the entries put with a plain nats client."""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from conftest import Receiver, eventually
from test_cluster import history
from test_cluster_parity import artifact, ask, hook, over_one_nats

from runhook.cluster.bus import DISABLED, SILENCES


async def test_forged_silences_and_disables_are_refused_and_lose_no_firing(
        short_dir: Path, receiver: Receiver) -> None:
    async with over_one_nats(short_dir, receiver, ["a"]) as (a,):
        url = tomllib.loads(a.config.read_text())["cluster"]["nats"][0]
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            silences, disabled = await js.key_value(SILENCES), await js.key_value(DISABLED)
            # The attacker's: nulls where times go, an endless one, a silence of every
            # firing under another key than its id, a disable under another key.
            await silences.put("si_evil", b'["si_evil",null,null,null,null,"c","x","y"]')
            await silences.put("si_inf", b'["si_inf",null,null,null,null,"c",0,Infinity]')
            forged = ["si_x", None, None, None, None, "forged", time.time() - 60,
                      time.time() + 3600, None]
            await silences.put("k", json.dumps(forged).encode())
            await disabled.put("zz", b'["hook","forged"]')
            with pytest.raises(nats.errors.Error, match="maximum"):  # the bucket's bound
                await silences.put("si_big", b"[" + b" " * 20_000 + b"]")
        finally:
            await nc.close()

        async def status() -> dict[str, Any]:
            return dict((await ask(a, {"type": "query.status"}))["status"]["cluster"])
        await eventually(status, lambda found: found.get("refused_entries") == 4)
        listed = await ask(a, {"type": "command.silence_list"})
        assert listed == {"ok": True, "silences": []}
        assert (await hook(a))["disabled"] is None

        assert await ask(a, artifact("p0", 1)) == {"ok": True}
        sent = await receiver.next(timeout=30)  # neither lost nor muted nor held
        assert json.loads(sent.body)["data"]["automation_name"] == "model-p0"
        enabled = await ask(a, {"type": "command.enable", "integration": "hook"})
        assert enabled == {"ok": True, "integration": "hook", "was_disabled": None}
        assert await ask(a, {"type": "command.silence_expire", "id": "si_x"}) == {
            "ok": False, "error": "no silence 'si_x' (expired ones are forgotten after 24 h)"}

        # The node's own silence still mutes, and expiring it ends it.
        added = await ask(a, {"type": "command.silence_add", "all": True, "duration": "1h",
                              "comment": "maintenance"})
        assert added["ok"], added
        assert await ask(a, artifact("p0", 2)) == {"ok": True}
        await eventually(lambda: history(a.socket),
                         lambda rows: sorted(r["state"] for r in rows) == ["FINISHED", "SKIPPED"])
        expired = await ask(a, {"type": "command.silence_expire", "id": added["silence"]["id"]})
        assert expired["ok"] and expired["silence"]["active"] is False, expired
        assert await ask(a, artifact("p0", 3)) == {"ok": True}
        await receiver.next(timeout=30)
        assert len(receiver.requests) == 2
