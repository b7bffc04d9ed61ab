"""A stranger's string in a log line (an execution id taken from NATS, a refused
history record's field) cannot forge another line: one record is one line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from runhook.cluster.deliver import Workers
from runhook.core import logs

FORGED = "ex_1\n2026-12-08 03:00:00,000 INFO runhook.cluster: execution ex_2 delivered\r"


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """The root logger as logs.setup leaves it, put back as pytest had it after."""
    logger = logging.getLogger()
    handlers, level = logger.handlers[:], logger.level
    try:
        yield logger
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)


async def test_a_newline_in_a_logged_string_is_escaped_not_a_new_line(
        root: logging.Logger, capsys: pytest.CaptureFixture[str]) -> None:
    """deliver.py's line for an execution not in this node's configuration, with an
    id (from the executions message) that holds a forged line: one line, the forged
    one visible as escapes (by hand: repr quotes the id). A string passed as %s (an
    exception's message: msgspec quotes the value as given) is escaped alike, and a
    JSON line keeps it whole in its encoding."""
    logs.setup("info", "text", lambda text: text)
    job = SimpleNamespace(id=FORGED, automation="a\u2028b", integration="hook\tx")
    settings = SimpleNamespace(integrations={}, automation=lambda name: None)
    msg = SimpleNamespace(metadata=SimpleNamespace(num_delivered=1), nak=_nak)
    assert await Workers._unknown(None, msg, job, settings)  # type: ignore[arg-type]
    out = capsys.readouterr().err
    assert out.count("\n") == 1 and "\r" not in out and "\u2028" not in out, out
    assert out.endswith(
        "INFO runhook.cluster.delivery: cluster: execution 'ex_1\\n2026-12-08 03:00:00,000 INFO "
        "runhook.cluster: execution ex_2 delivered\\r': automation 'a\\u2028b' or "
        "integration 'hook\\tx' is not in this node's configuration (delivery 1); back on "
        "the queue for a node that has them\n"), out
    logging.getLogger("runhook.cluster").error("cluster: a history record is not one of "
                                               "ours: %s", f"Invalid enum value {FORGED}")
    out = capsys.readouterr().err
    assert out.count("\n") == 1 and out.endswith(
        "ours: Invalid enum value ex_1\\n2026-12-08 03:00:00,000 INFO runhook.cluster: "
        "execution ex_2 delivered\\r\n"), out

    logs.setup("info", "json", lambda text: text)
    logging.getLogger("runhook.cluster").error("refused: %s", FORGED)
    out = capsys.readouterr().err
    assert out.count("\n") == 1
    assert json.loads(out)["message"] == f"refused: {FORGED}"


async def _nak(delay: float) -> None:
    pass
