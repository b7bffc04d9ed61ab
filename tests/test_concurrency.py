"""One concurrency model: anyio. asyncio appears in src/ only where an I/O API asks for
it, each such use listed here with its reason, so the two models do not mix again."""

from __future__ import annotations

import ast
from pathlib import Path

import anyio

from runhook.core.flag import Flag

SRC = Path(__file__).resolve().parent.parent / "src" / "runhook"

STREAMS = "asyncio's streams: the line and HTTP answers are read with readline/readuntil"
PROTOCOL = "aiohttp's server is an asyncio.Protocol; the gate wraps it at that layer"
# (module under src/runhook, asyncio name) -> why asyncio there.
ALLOWED = {
    ("client.py", "StreamReader"): STREAMS,
    ("client.py", "StreamWriter"): STREAMS,
    ("client.py", "open_unix_connection"): STREAMS,
    ("sources/tracking_http.py", "StreamReader"): STREAMS,
    ("sources/tracking_http.py", "StreamWriter"): STREAMS,
    ("sources/tracking_http.py", "open_connection"): STREAMS,
    ("sources/tracking_http.py", "IncompleteReadError"): STREAMS,
    ("sources/tracking_http.py", "get_running_loop"):
        "loop.getaddrinfo: every address is checked before open_connection dials one",
    ("delivery/smtp.py", "get_running_loop"):
        "loop.getaddrinfo/sock_connect: aiosmtplib takes a connected socket, not a stream",
    ("web/listen.py", "get_running_loop"): "loop.create_server: " + PROTOCOL,
    ("web/listen.py", "Server"): "what loop.create_server returns",
    ("web/limits.py", "Protocol"): PROTOCOL,
    ("web/limits.py", "BaseTransport"): PROTOCOL,
    ("web/limits.py", "Transport"): PROTOCOL,
    ("web/limits.py", "get_running_loop"):
        "connection_made is a sync callback: call_later, create_future, the TLS protocol",
    ("web/limits.py", "TimerHandle"): "loop.call_later from connection_made (no task there)",
    ("web/limits.py", "Future"): "the TLS handshake's waiter, as SSLProtocol wants it",
    ("web/limits.py", "AbstractEventLoop"): "the loop's own SSLProtocol class (uvloop's or asyncio's)",
    ("web/limits.py", "sslproto"): "asyncio's SSLProtocol when the loop is not uvloop",
    ("core/acks.py", "Future"):
        "a Ticket per chunk: a Future with done callbacks (0.3 us) where an anyio.Event "
        "and callbacks cost 2-5 us; cluster/partition.py makes Tickets too",
    ("ingest/admission.py", "get_running_loop"): "loop.create_future for a Ticket (core/acks.py)",
    ("ingest/admission.py", "shield"):
        "a copy waits on another chunk's Ticket future: its cancellation must not cancel it",
}
# Rewritten with issue 30 (they use anyio in what they rewrite): any use, for now.
CLUSTER_REWRITE = "cluster: converted with issue 30's rewrite"
REWRITTEN = {f"cluster/{name}.py" for name in (
    "partition", "publish", "scopes", "positions", "checkpoint", "leases", "mirror",
    "deliver", "outbox")}


def asyncio_names(path: Path) -> set[str]:
    """Every asyncio name a module uses: `asyncio.X`, `from asyncio import X`,
    `import asyncio.X`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == "asyncio"):
            names.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "asyncio":
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name.removeprefix("asyncio.") for alias in node.names
                         if alias.name.startswith("asyncio."))
    return names


def uses() -> set[tuple[str, str]]:
    return {(path.relative_to(SRC).as_posix(), name) for path in sorted(SRC.rglob("*.py"))
            for name in asyncio_names(path)}


def test_asyncio_is_used_only_where_an_io_api_asks_for_it():
    found = uses()
    stray = sorted(use for use in found if use not in ALLOWED and use[0] not in REWRITTEN)
    assert not stray, ("asyncio used outside the allowlist (use anyio's task groups, Event, "
                       f"Lock, fail_after, sleep; or list it with why): {stray}")
    stale = sorted(use for use in ALLOWED if use not in found)
    assert not stale, f"allowed but no longer used (drop them): {stale}"


def test_the_scan_sees_every_way_of_naming_asyncio(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import asyncio\nimport asyncio.sslproto\n"
                      "from asyncio import gather\nasyncio.sleep(0)\n")
    assert asyncio_names(module) == {"sslproto", "gather", "sleep"}


async def test_a_flag_wakes_its_waiters_and_can_be_set_again():
    flag = Flag()
    woke: list[int] = []

    async def waiter(n: int) -> None:
        await flag.wait()
        woke.append(n)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, 1)
        tg.start_soon(waiter, 2)
        await anyio.wait_all_tasks_blocked()
        assert woke == []
        flag.set()
        flag.clear()  # too late to take back the wake-up of those waiting
    assert sorted(woke) == [1, 2]
    assert not flag.is_set()
    async with anyio.create_task_group() as tg:  # cleared: a new wait waits again
        tg.start_soon(waiter, 3)
        await anyio.wait_all_tasks_blocked()
        assert sorted(woke) == [1, 2]
        flag.set()
    assert 3 in woke
    await flag.wait()  # set: returns at once
