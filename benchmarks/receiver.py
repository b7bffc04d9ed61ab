"""A webhook receiver in its own process: counts requests and, for payloads that
carry a send time `t` (time.monotonic() of the sender, same clock), latencies."""

from __future__ import annotations

import json
import sys
import time

from aiohttp import web

count = 0
latencies: list[float] = []


async def hook(request: web.Request) -> web.Response:
    global count
    body = await request.read()
    count += 1
    if b'"t"' in body:
        latencies.append(time.monotonic() - float(json.loads(body)["t"]))
    return web.Response(text="ok")


async def stats(request: web.Request) -> web.Response:
    return web.json_response({"count": count, "latencies": latencies})


async def reset(request: web.Request) -> web.Response:
    global count
    count = 0
    latencies.clear()
    return web.json_response({})


app = web.Application()
app.router.add_post("/hook", hook)
app.router.add_get("/stats", stats)
app.router.add_post("/reset", reset)

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
