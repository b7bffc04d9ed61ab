"""Hostile names on every console page: each comes out escaped, template syntax in a value
is printed, never evaluated; and no module of the console writes HTML by hand (its pages
are templates with autoescape, web/templates/)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from urllib.parse import quote

import aiohttp
from conftest import eventually, settled

import runhook.web

WEB = Path(runhook.web.__file__).parent
SCRIPT = "<script>alert(1)</script>"
ATTRIBUTE = '"><img src=x onerror=1>'
TEMPLATE = "{{7*7}}"
HOSTILE = f"{SCRIPT} {ATTRIBUTE} {TEMPLATE}"
# Escaped as html.escape spells it: `"` as &quot;, `'` as &#x27;.
ESCAPED = ("&lt;script&gt;alert(1)&lt;/script&gt; &quot;&gt;&lt;img src=x onerror=1&gt; "
           "{{7*7}}")
# An automation's page is /automations/NAME: aiohttp routes on the decoded path and
# its {name} matches no "/", "{" or "}" (even as %2F), so a name holding them is not
# reached there; this one keeps the rest (its description holds all of HOSTILE).
NAME = '<script>alert(1) "><img src=x onerror=1>'
NAME_ESCAPED = "&lt;script&gt;alert(1) &quot;&gt;&lt;img src=x onerror=1&gt;"
# A scope part holds no "/", ":" or whitespace.
PROJECT = "\"'><b>{{7*7}}"
PROJECT_ESCAPED = "&quot;&#x27;&gt;&lt;b&gt;{{7*7}}"

CONFIG = """
[integrations.@HOSTILE@]
kind = "webhook"
url = "@URL@"
allow_http = true
allow_private = true

[[automations]]
name = @NAME@
description = @HOSTILE@
scope = @SCOPE@
event = { kind = "RUN_STATE", states = ["failed"], run_name = '^<script>' }
action = { integration = @HOSTILE@, payload = '''{"run": "${run_name}", "tags": "${run_tags}"}''' }

[[automations]]
name = "loss"
scope = @SCOPE@
event = { kind = "RUN_METRIC_THRESHOLD", metric = "loss", agg = "avg", window = 2, cmp = ">", threshold = 1.0 }
action = { kind = "none" }

[[automations]]
name = "record"
scope = @SCOPE@
event = { kind = "CREATE_ARTIFACT" }
action = { kind = "none" }
"""


def _event(kind: str, **fields) -> dict:
    return {"type": kind, "entity": "acme", "project": PROJECT, **fields}


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url, allow_redirects=False) as r:
        return r.status, await r.text()


async def test_hostile_names_are_escaped_on_every_page(start_daemon, receiver):
    # The endpoint answers 400 with a hostile body (not retried): the attempt's response,
    # the execution's reason and the integration's last error.
    receiver.responses.append((400, HOSTILE, {}))
    # JSON strings are TOML basic strings: the quotes inside stay inside.
    toml = CONFIG.replace("@HOSTILE@", json.dumps(HOSTILE)).replace("@NAME@", json.dumps(NAME)).replace(
        "@SCOPE@", json.dumps(f"project:acme/{PROJECT}"))
    daemon = await start_daemon(toml.replace("@URL@", receiver.url))
    run_id = "r<1>\"x"  # braces would not route (see NAME)
    async with daemon.client() as client:
        assert (await client.send(_event("run.state", run_id=run_id, run_name=HOSTILE,
                                         group=HOSTILE, user=HOSTILE, tags=[HOSTILE],
                                         state="failed")))["ok"]
        for value in (2.0, 3.0):
            await client.send(_event("run.metrics", run_id=run_id, run_name=HOSTILE,
                                     values={"loss": value}))
        await client.send(_event("artifact.created", collection=PROJECT, version=1,
                                 tags=[HOSTILE], aliases=[HOSTILE]))
        silence = await client.request({"type": "command.silence_add", "all": True,
                                        "run_name": "^never$", "duration": "1h",
                                        "comment": HOSTILE})
        assert silence["ok"], silence
    execution_id = (await receiver.next()).headers["webhook-id"]
    await settled(daemon, execution_id)
    async with daemon.client() as client:
        answer = await client.request({"type": "query.history", "limit": 10})
    ids = [e["id"] for e in answer["executions"]]
    assert len(ids) == 3  # the failure, the metric's firing, the artifact's
    name = quote(NAME, safe="")
    pages = ["/", "/automations", f"/automations/{name}", "/automations/loss",
             "/executions", f"/executions?automation={name}", f"/executions?run={name}",
             f"/executions?group={name}&collection={name}&rows=x",
             *(f"/executions/{i}" for i in ids),
             "/runs", f"/runs?run={name}&group={name}", f"/runs/{quote(run_id, safe='')}",
             "/integrations", f"/automations/{name}x", f"/executions/{name}"]
    async with daemon.console() as http:
        await eventually(lambda: _get(http, daemon.http + "/integrations"),
                         lambda r: "HTTP 400" in r[1])
        for path in pages:
            status, html = await _get(http, daemon.http + path)
            assert status in (200, 400, 404), path
            assert "</style>" in html, (path, status, html[:200])
            body = html.split("</style>", 1)[1]
            # Nothing hostile became markup; each name is there, escaped, its braces kept
            # as they came ({{7*7}} printed, not evaluated).
            for raw in ("<script", "<img", "<b>{{"):
                assert raw not in body, (path, body[max(0, body.find(raw) - 200):][:400])
            assert any(e in body for e in (ESCAPED, NAME_ESCAPED, PROJECT_ESCAPED)), path
        _, html = await _get(http, f"{daemon.http}/executions/{execution_id}")
        # Run name, tags (in the variables and the request body), the response body.
        assert html.count(ESCAPED) >= 4
        assert f"<pre>{ESCAPED}</pre>" in html  # the attempt's response, as it came
        _, html = await _get(http, daemon.http + "/")
        assert f"<td>{ESCAPED}</td></tr>" in html  # the silence's comment
        assert PROJECT_ESCAPED in html  # the scope
        _, html = await _get(http, f"{daemon.http}/executions?run={name}")
        assert f'value="{NAME_ESCAPED}"' in html  # a query value back in its box


def test_no_console_module_writes_html_by_hand():
    # A page built from f-strings needs an escape() per value: one missed is an
    # injection. The pages are templates; Python hands them values only.
    found = []
    for path in sorted(WEB.rglob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef
                                    | ast.ClassDef)
                      and n.body and isinstance(n.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and id(node) not in docstrings \
                    and re.search(r"</?[a-z][a-z0-9]*[\s>/]", node.value):
                found.append(f"{path.relative_to(WEB)}:{node.lineno}: {node.value!r}")
        found += [f"{path.relative_to(WEB)}: imports escape" for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and node.module == "html"
                  and any(a.name == "escape" for a in node.names)]
    assert found == []
