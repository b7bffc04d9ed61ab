"""/readyz after a failed write: it probes the database, so it turns ready as soon as a
write can commit again, not only after some client's write happened to succeed."""

from __future__ import annotations

import sqlite3

import aiohttp
import anyio
from test_disk_full import tiny_disk  # noqa: F401 - the fixture
from test_socket import GOOD, RECORD

from runhook.store.database import Store, Write


async def ready(daemon) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http, http.get(daemon.http + "/readyz") as r:
        return r.status, await r.json()


async def test_readyz_turns_ready_once_the_disk_has_room_without_any_client_write(
        start_daemon, tiny_disk):  # noqa: F811
    filler = tiny_disk / "filler"
    filler.write_bytes(b"\0" * (1200 * 1024))
    first = await start_daemon(RECORD)
    assert await first.stop() == 0
    first.config.write_text(first.config.read_text().replace(
        f'database = "{first.directory}/runhook.db"', f'database = "{tiny_disk}/runhook.db"'))
    daemon = await start_daemon(config=first.config)
    async with daemon.client() as client:
        for version in range(400):  # fill the disk
            if not (await client.request({**GOOD, "version": version,
                                          "metadata": {"blob": "x" * 20_000}}))["ok"]:
                break
        else:
            raise AssertionError("the disk never filled")
    status, body = await ready(daemon)
    assert status == 503 and body["checks"]["database"] is False

    filler.unlink()  # room again; no client writes anything
    status, body = await ready(daemon)
    assert status == 200, body
    assert body == {"ready": True, "checks": {"database": True, "socket": True, "actors": True}}
    assert (await ready(daemon))[0] == 200



async def _commit(store: Store, write: Write) -> str | None:
    outcome: list[str | None] = []
    done = anyio.Event()
    write.on_commit = lambda error: (outcome.append(error), done.set())
    await store.submit(write)
    await done.wait()
    return outcome[0]


async def test_only_a_write_that_changes_rows_clears_the_error_and_the_probe_is_one(tmp_path):
    store = Store(tmp_path / "r.db")
    await store.open()
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.run)
        assert await _commit(store, Write([("INSERT INTO no_such_table VALUES (?)", [(1,)])]))
        assert store.last_error is not None
        # The watchdog's heartbeat commits even on a full disk: it proves nothing.
        assert await _commit(store, Write([])) is None
        assert store.last_error is not None
        # Not enough room on the disk: not writable, and nothing is probed.
        assert await store.writable(5.0, room=1 << 62) is False
        assert store.last_error is not None
        # Room: the probe write commits and clears the error, and leaves no row.
        assert await store.writable(5.0, room=0) is True
        assert store.last_error is None
        store.finish()
    await store.close()
    with sqlite3.connect(tmp_path / "r.db") as db:
        assert db.execute("SELECT count(*) FROM schema_migrations WHERE name = ''"
                          ).fetchone() == (0,)
