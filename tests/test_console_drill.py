"""Drilling down the console on a real daemon: every cell of the executions list that
names something links to it; the run filter takes a name or an id, and run, group and
collection filters take prefixes; digest and GROUP_FINISHED rows show their group;
the automation page says its digest setting and its definition hash apart and draws
its firings; the Runs page shows what the books hold of each run, escaped."""

from __future__ import annotations

import re

import aiohttp
from conftest import eventually, settled

SCOPE = "project:acme/vision"
HOSTILE = "<script>alert('x')</script>"

CONFIG = """
heartbeat_timeout = "10m"

[[automations]]
name = "loss-high"
scope = "project:acme/vision"
event = { kind = "RUN_METRIC_THRESHOLD", metric = "loss", agg = "avg", window = 3, cmp = ">", threshold = 10.0 }
action = { kind = "none" }

[[automations]]
name = "failed"
scope = "project:acme/vision"
event = { kind = "RUN_STATE", states = ["failed"] }
action = { kind = "none" }
digest = { window = "1s", by = ["group"] }

[[automations]]
name = "sweep-done"
scope = "project:acme/vision"
event = { kind = "GROUP_FINISHED", group = "^sweep-", settle = "1s" }
action = { kind = "none" }

[[automations]]
name = "record"
scope = "project:acme/vision"
event = { kind = "CREATE_ARTIFACT" }
action = { kind = "none" }
"""


def run(kind: str, run_id: str, name: str, group: str = "sweep-9", **fields) -> dict:
    return {"type": kind, "entity": "acme", "project": "vision", "run_id": run_id,
            "run_name": name, "group": group, **fields}


async def history(daemon, automation: str) -> list[dict]:
    async with daemon.client() as client:
        answer = await client.request({"type": "query.history", "automation": automation,
                                       "limit": 100})
    return answer["executions"]


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url, allow_redirects=False) as r:
        return r.status, await r.text()


def rows(html: str) -> list[str]:
    return html.split("</form>")[-1].split("<tr>")[2:]


async def test_cells_link_and_filters_take_names_and_prefixes(start_daemon):
    daemon = await start_daemon(CONFIG)
    async with daemon.client() as client:
        for value in (9.0, 12.0, 15.0):  # avg 12 > 10: loss-high fires for 8c1f
            await client.send(run("run.metrics", "8c1f0e77", "resnet-lr3", values={"loss": value}))
        await client.send(run("run.state", "8c1f0e77", "resnet-lr3", state="finished"))
        for run_id, name in (("a1", "trial-1"), ("a2", "trial-2")):
            await client.send(run("run.state", run_id, name, state="failed"))
        for collection in ("imagenet-train", "imagenet-val", "coco"):
            await client.send({"type": "artifact.created", "entity": "acme",
                               "project": "vision", "collection": collection, "version": 1})
    # The two failures make one digest (window 1 s); both runs ended: the sweep settles.
    digest = (await eventually(lambda: history(daemon, "failed"),
                               lambda r: any(e["state"] == "FINISHED" for e in r)))
    digest_id = next(e["id"] for e in digest if e["state"] == "FINISHED")
    group_done = await eventually(lambda: history(daemon, "sweep-done"), lambda r: len(r) == 1)
    await settled(daemon, group_done[0]["id"])
    async with daemon.console() as http:
        _, html = await get(http, f"{daemon.http}/executions?automation=loss-high")
        [row] = rows(html)
        assert '<a href="/automations/loss-high">loss-high</a>' in row
        assert '<a href="/runs/8c1f0e77">resnet-lr3</a>' in row
        assert '<a href="/runs?group=sweep-9">sweep-9</a>' in row
        # The run filter: the name the list shows, or the id, each by a prefix.
        for wanted in ("resnet-lr3", "resnet", "8c1f0e77", "8c1f"):
            _, html = await get(http, f"{daemon.http}/executions?run={wanted}")
            assert [re.search(r'href="/automations/([^"]+)"', r).group(1)
                    for r in rows(html)] == ["loss-high"], wanted
        _, html = await get(http, f"{daemon.http}/executions?run=trial")
        assert len(rows(html)) == 2  # the two GROUPED firings (the digest has no run)
        _, html = await get(http, f"{daemon.http}/executions?run=%25")  # % is itself
        assert "no executions match" in html
        # The collection filter by prefix, and the cell links to it.
        _, html = await get(http, f"{daemon.http}/executions?collection=imagenet")
        assert len(rows(html)) == 2
        assert 'href="/executions?collection=imagenet-val">acme/vision/imagenet-val:v1' in html
        # The group filter: the digest, its firings, the sweep's end and the metric run.
        _, html = await get(http, f"{daemon.http}/executions?group=sweep")
        assert len(rows(html)) == 5
        # Digest and GROUP_FINISHED rows name the group where they have no run.
        _, html = await get(http, f"{daemon.http}/executions?automation=sweep-done")
        [row] = rows(html)
        assert '<span class=meta>group</span> <a href="/runs?group=sweep-9">sweep-9</a>' in row
        _, html = await get(http, f"{daemon.http}/executions?automation=failed&state=FINISHED")
        [row] = rows(html)
        assert digest_id in row and '<a href="/runs?group=sweep-9">sweep-9</a>' in row


async def test_automation_page_says_digest_and_definition_hash_and_draws_firings(start_daemon):
    daemon = await start_daemon(CONFIG)
    async with daemon.client() as client:
        await client.send(run("run.state", "a1", "trial-1", state="failed"))
    await eventually(lambda: history(daemon, "failed"),
                     lambda r: any(e["state"] == "FINISHED" for e in r))
    async with daemon.console() as http:
        _, html = await get(http, f"{daemon.http}/automations/failed")
        assert ("<dt>digest</dt><dd>firings within 1s of the first are sent as one, "
                "one digest per group</dd>") in html
        assert re.search(r"<dt>definition hash</dt><dd><code>[0-9a-f]+</code></dd>", html)
        # The last 24 h per hour: 24 bars, this hour's of 2 (the firing and its digest).
        chart = html.split('<svg class="chart"')[1]
        assert chart.count("<rect x=") == 24
        assert re.search(r"<title>[A-Z][a-z]{2} \d\d:00: 2</title></rect></svg>|<title>[A-Z][a-z]{2} \d\d:00: 2</title>"
                         r"</rect><text", chart)
        _, html = await get(http, f"{daemon.http}/automations/record")
        assert "<dt>digest</dt><dd>none: each firing is sent on its own</dd>" in html
        assert '<svg class="chart"' not in html  # no executions: no picture


async def test_runs_page_shows_the_books_and_escapes(start_daemon):
    daemon = await start_daemon(CONFIG)
    async with daemon.client() as client:
        await client.send(run("run.state", "r<1>", HOSTILE, group=HOSTILE, state="running"))
        for value in (3.0, 9.0, 30.0):
            await client.send(run("run.metrics", "r<1>", HOSTILE, group=HOSTILE,
                                  values={"loss": value}))
        await client.send(run("run.metrics", "quiet-1", "quiet", values={"loss": 1.0}))
    await eventually(lambda: history(daemon, "loss-high"), lambda r: len(r) == 1)
    async with daemon.console() as http:
        status, html = await get(http, f"{daemon.http}/runs")
        assert status == 200
        assert "<script" not in html.split("</style>")[1]
        assert '<a href="/runs/r%3C1%3E">&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;' \
            in html
        [hostile] = [r for r in rows(html) if "r%3C1%3E" in r]
        assert ">running</span>" in hostile and "crashed if silent until" in hostile
        assert "<code>loss</code> 3 9 30" in hostile
        # The run filter by prefix of the name; the group's link filters by group.
        _, html = await get(http, f"{daemon.http}/runs?run=qui")
        assert len(rows(html)) == 1 and "/runs/quiet-1" in html
        _, html = await get(http, f"{daemon.http}/runs?group=%3Cscr")
        assert len(rows(html)) == 1 and "r%3C1%3E" in html
        # Its page: every fact escaped, the window drawn against the threshold.
        status, html = await get(http, f"{daemon.http}/runs/r%3C1%3E")
        assert status == 200 and "<script" not in html.split("</style>")[1]
        assert "<dt>run id</dt><dd><code>r&lt;1&gt;</code></dd>" in html
        assert "loss-high: avg(loss) over last 3 &gt; 10" in html
        assert "<dt>conditions holding</dt><dd>loss-high</dd>" in html
        chart = html.split('<svg class="chart"')[1].split("</svg>")[0]
        assert chart.count("<circle") == 3 and "threshold 10" in chart
        assert "<code>3 9 30</code>" in html
        assert 'href="/executions?run=r%3C1%3E"' in html  # its executions, all of them
        # A run the books do not hold: said so, with its executions still listed.
        status, html = await get(http, f"{daemon.http}/runs/gone")
        assert status == 200 and "Not held in memory now" in html


async def test_a_metric_execution_draws_what_its_condition_saw(start_daemon):
    daemon = await start_daemon(CONFIG)
    async with daemon.client() as client:
        for value in (9.0, 12.0, 15.0):  # avg 12 > 10
            await client.send(run("run.metrics", "m1", HOSTILE, values={"loss": value}))
        await client.send(run("run.state", "a1", "trial-1", state="failed"))
    [fired] = await eventually(lambda: history(daemon, "loss-high"), lambda r: len(r) == 1)
    grouped = await eventually(lambda: history(daemon, "failed"), lambda r: len(r) >= 1)
    async with daemon.console() as http:
        _, html = await get(http, f"{daemon.http}/executions/{fired['id']}")
        assert "<script" not in html.split("</style>")[1]
        assert ("<h2>What the condition saw <span class=meta>· loss, oldest first: "
                "avg(loss) over last 3 &gt; 10</span></h2>") in html
        chart = html.split('<svg class="chart"')[1].split("</svg>")[0]
        assert [float(v) for v in re.findall(r"<circle [^>]+><title>([^<]+)</title>", chart)] \
            == [9.0, 12.0, 15.0]
        assert "threshold 10" in chart
        assert ('<dt>about</dt><dd><a href="/runs/m1">&lt;script&gt;alert(&#x27;x&#x27;)'
                '&lt;/script&gt;</a><br><span class=meta>group</span> '
                '<a href="/runs?group=sweep-9">sweep-9</a></dd>') in html
        # A state firing saw no values: no picture.
        _, html = await get(http, f"{daemon.http}/executions/{grouped[-1]['id']}")
        assert '<svg class="chart"' not in html


async def test_a_whole_run_id_means_that_run_and_a_prefix_means_any(start_daemon):
    """`run=a1` is run a1 (its id is known: the run index answers), not also the run
    named `a1-rerun`; `run=a1-` (no such id) is a prefix of ids and names."""
    daemon = await start_daemon(CONFIG)
    async with daemon.client() as client:
        for run_id, name in (("a1", "first"), ("b9", "a1-rerun")):
            for value in (20.0, 20.0, 20.0):
                await client.send(run("run.metrics", run_id, name, group="other",
                                      values={"loss": value}))
    await eventually(lambda: history(daemon, "loss-high"), lambda r: len(r) == 2)
    async with daemon.console() as http:
        _, html = await get(http, f"{daemon.http}/executions?run=a1")
        assert [r.count('href="/runs/a1"') for r in rows(html)] == [1]
        _, html = await get(http, f"{daemon.http}/executions?run=a1-")
        assert [r.count('href="/runs/b9"') for r in rows(html)] == [1]
        _, html = await get(http, f"{daemon.http}/executions?run=f")
        assert [r.count('href="/runs/a1"') for r in rows(html)] == [1]
