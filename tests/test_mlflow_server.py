"""A real MLflow 3 tracking server (SQLite backend, loopback) sends its model-registry
webhooks to a real daemon. MLflow lives in its own virtualenv, named by
$RUNHOOK_MLFLOW_PYTHON (`make test` builds it); without it this skips, except under
CI, where it fails: a test of a real counterpart never passes by not running."""

from __future__ import annotations

import asyncio
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import eventually, free_port
from test_remote import CONFIG, MLFLOW_SECRET, history, tls  # noqa: F401 - tls is a fixture

MLFLOW_PYTHON = os.environ.get("RUNHOOK_MLFLOW_PYTHON")
if not MLFLOW_PYTHON and os.environ.get("CI"):
    pytest.fail("RUNHOOK_MLFLOW_PYTHON is not set (make test sets it)", pytrace=False)
pytestmark = pytest.mark.skipif(not MLFLOW_PYTHON, reason="RUNHOOK_MLFLOW_PYTHON is not set")

DRIVER = textwrap.dedent("""
    import sys
    from mlflow import MlflowClient
    tracking, hook, secret = sys.argv[1:4]
    client = MlflowClient(tracking)
    client.create_webhook(name="runhook", url=hook, secret=secret,
                          events=["model_version.created", "model_version_alias.created"])
    client.create_registered_model("clf")
    version = client.create_model_version("clf", source="s3://bucket/clf/1")
    client.set_registered_model_alias("clf", "production", version.version)
    print(version.version)
""")


async def test_a_real_mlflow_server_links_and_aliases_through_runhook(
        start_daemon, tls, short_dir: Path):  # noqa: F811 - tls: the fixture imported above
    port = free_port()
    # Plain HTTP on loopback (allowed without TLS there): MLflow's SSRF-guarded
    # sender does not take a test CA, so HTTPS would never reach runhook.
    config = CONFIG.format(port=port).replace('tls_cert = "@DIR@/tls.crt"\n', "") \
        .replace('tls_key = "@DIR@/tls.key"\n', "")
    assert "tls_cert" not in config
    daemon = await start_daemon(config)
    mlflow_port = free_port()
    # MLflow sends only to https and public addresses unless told otherwise; its
    # own switches for both, as a user testing on one machine would set them.
    env = {**os.environ, "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
           "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https"}
    mlflow_bin = Path(MLFLOW_PYTHON).parent / "mlflow"
    server = subprocess.Popen(  # noqa: ASYNC220 - lives as long as the test; never waited on here
        [str(mlflow_bin), "server", "--backend-store-uri", f"sqlite:///{short_dir}/mlflow.db",
         "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=(short_dir / "mlflow.log").open("wb"))
    try:
        tracking = f"http://127.0.0.1:{mlflow_port}"
        probe = [MLFLOW_PYTHON, "-c", f"import urllib.request as u; u.urlopen('{tracking}/health')"]
        await eventually(lambda: asyncio.to_thread(subprocess.run, probe, capture_output=True),
                         lambda done: done.returncode == 0, timeout=120)
        done = await asyncio.to_thread(
            subprocess.run, [MLFLOW_PYTHON, "-c", DRIVER, tracking,
                             f"http://127.0.0.1:{port}/v1/hooks/mlf", MLFLOW_SECRET],
            env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        try:
            linked = await eventually(lambda: history(daemon, "linked"),
                                      lambda rows: len(rows) == 1)
        except AssertionError:
            print((short_dir / "mlflow.log").read_text()[-3000:])
            raise
        aliased = await eventually(lambda: history(daemon, "alias"), lambda rows: len(rows) == 1)
    finally:
        server.terminate()
        server.wait(30)
    assert linked[0]["context"]["artifact_collection_name"] == "clf"
    assert linked[0]["context"]["artifact_version_index"] == 1
    assert aliased[0]["context"]["alias"] == "production"
    assert aliased[0]["event_id"].startswith("mlflow:mlf:")
    assert MLFLOW_SECRET not in daemon.log_text()
