"""A webhook receiver in its own process: counts requests and, for payloads that
carry a send time `t` (time.monotonic() of the sender, same clock), latencies."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from aiohttp import web

count = 0
latencies: list[float] = []
# (count wanted, its event): /wait answers when the count is reached, so the
# benchmark needs no polling (which loaded the receiver and added up to 20 ms).
waiters: list[tuple[int, asyncio.Event]] = []


async def hook(request: web.Request) -> web.Response:
    global count
    body = await request.read()
    count += 1
    for wanted, reached in waiters:
        if count >= wanted:
            reached.set()
    if b'"t"' in body:
        latencies.append(time.monotonic() - float(json.loads(body)["t"]))
    return web.Response(text="ok")


async def stats(request: web.Request) -> web.Response:
    return web.json_response({"count": count, "latencies": latencies})


async def wait(request: web.Request) -> web.Response:
    """Answers once `count` requests have arrived (or after `timeout` seconds)."""
    wanted = int(request.query["count"])
    reached = asyncio.Event()
    waiters.append((wanted, reached))
    try:
        if count < wanted:
            await asyncio.wait_for(reached.wait(), float(request.query.get("timeout", "120")))
    except TimeoutError:
        pass
    finally:
        waiters.remove((wanted, reached))
    return web.json_response({"count": count})


async def reset(request: web.Request) -> web.Response:
    global count
    count = 0
    latencies.clear()
    return web.json_response({})


app = web.Application()
app.router.add_post("/hook", hook)
app.router.add_get("/stats", stats)
app.router.add_post("/reset", reset)
app.router.add_get("/wait", wait)

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
