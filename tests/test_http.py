"""The loopback HTTP server: health, readiness and the executions API."""

from __future__ import annotations

from test_socket import GOOD, RECORD


async def test_health_ready_and_executions(start_daemon):
    daemon = await start_daemon(RECORD)
    async with daemon.client() as client:
        for version in range(3):
            await client.send({**GOOD, "version": version})
    async with daemon.console() as http:
        async with http.get(daemon.http + "/healthz") as r:
            assert r.status == 200 and await r.text() == "ok\n"
        async with http.get(daemon.http + "/readyz") as r:
            assert r.status == 200
            assert await r.json() == {"ready": True, "checks": {
                "database": True, "socket": True, "actors": True}}
        async with http.get(daemon.http + "/api/executions?automation=record&limit=2") as r:
            rows = (await r.json())["executions"]
        assert [row["context"]["artifact_version_index"] for row in rows] == [2, 1]
        assert all(row["state"] == "FINISHED" for row in rows)
        async with http.get(daemon.http + "/api/executions?state=PENDING") as r:
            assert (await r.json())["executions"] == []
        async with http.get(daemon.http + "/api/executions?automation=other") as r:
            assert (await r.json())["executions"] == []
        async with http.get(daemon.http + "/api/executions?state=DONE") as r:
            assert r.status == 400
        async with http.get(daemon.http + "/api/executions?limit=0") as r:
            assert r.status == 400
        async with http.get(daemon.http + f"/api/executions/{rows[0]['id']}") as r:
            assert (await r.json())["execution"]["id"] == rows[0]["id"]
        async with http.get(daemon.http + "/api/executions/ex_nope") as r:
            assert r.status == 404
