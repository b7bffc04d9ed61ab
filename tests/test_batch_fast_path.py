"""The scope actor's batch fast path (BatchWrites calling the run book's metrics hot
path itself) and the admission's range answers mean what the plain definitions do:
each event through Evaluator.evaluate, one answer per line."""

from __future__ import annotations

import asyncio
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from runhook.config.model import decode
from runhook.config.settings import build
from runhook.core.acks import Ticket
from runhook.core.events import RunHeartbeat, RunMetrics
from runhook.evaluate.caused import NOTHING, ONLY_LOGGED
from runhook.evaluate.evaluator import Evaluator
from runhook.evaluate.scope_write import BatchWrites
from runhook.ingest import protocol
from runhook.ingest.admission import Answers
from runhook.ingest.pipeline import resolve
from runhook.store.statements import INSERT_EXECUTION, LOG_METRICS

SCOPE = "project:acme/vision"


def automations(specs: list[tuple[str, int, str, float]]):
    tables = "".join(f"""
[[automations]]
name = "a{i}"
scope = "{SCOPE}"
event = {{ kind = "RUN_METRIC_THRESHOLD", metric = "{metric}", agg = "avg", window = {window}, cmp = "{cmp}", threshold = {threshold!r} }}
action = {{ kind = "none" }}
cooldown = "0"
""" for i, (metric, window, cmp, threshold) in enumerate(specs))
    return build(decode(tables)).automations_of(SCOPE)


class Clock:
    def wall(self) -> float:
        return 100.0

    def monotonic(self) -> float:
        return 100.0

    def read(self) -> tuple[float, float]:
        return 100.0, 100.0


class Writes(BatchWrites):
    def __init__(self, evaluator: Evaluator) -> None:
        self.scope = SCOPE
        self.evaluator = evaluator
        self.clock = Clock()
        self.executions = 0
        self._metrics = None
        self._deliveries = self  # type: ignore[assignment]

    def offer(self, job: object) -> None:
        pass


def seeded(specs) -> Evaluator:
    return Evaluator(SCOPE, automations(specs))


def executions(rows) -> list[tuple[str, str, str | None]]:
    return [(row.automation, row.state, row.run_id) for row in rows]


VALUE = st.one_of(st.integers(-10, 10).map(lambda n: n / 5),
                  st.sampled_from([math.inf, -math.inf, math.nan, None]))
EVENT = st.one_of(
    st.tuples(st.sampled_from(["r1", "r2"]), st.dictionaries(
        st.sampled_from(["loss", "acc", "lr"]), VALUE, min_size=1, max_size=3)),
    st.tuples(st.sampled_from(["r1", "r2"]), st.just(None)))  # a heartbeat: the other path
SPEC = st.tuples(st.sampled_from(["loss", "acc"]), st.integers(1, 3),
                 st.sampled_from([">", ">=", "<", "<="]), st.sampled_from([0.0, 0.4, -1.0]))


@settings(max_examples=150, deadline=None)
@given(st.lists(SPEC, min_size=1, max_size=3), st.lists(EVENT, max_size=30))
def test_a_batch_causes_what_each_event_evaluated_alone_does(specs, events):
    batch = [(RunMetrics(entity="acme", project="vision", run_id=run_id, run_name="prod",
                         user="u", values=values) if values is not None else
              RunHeartbeat(entity="acme", project="vision", run_id=run_id, run_name="prod",
                           user="u"), 50.0, line)
             for line, (run_id, values) in enumerate(events, 1)]
    plain = seeded(specs)
    rows, logged = [], []
    for event, event_time, _ in batch:
        caused = plain.evaluate(event, event_time, 100.0, 100.0)
        if caused is ONLY_LOGGED:
            logged.append(event)
        elif caused is not NOTHING:
            rows.extend(caused.rows)
            if caused.logged:
                logged.append(event)
    fast = Writes(seeded(specs))
    loop = asyncio.new_event_loop()
    try:
        write, after, resync = fast._prepare([(batch, Ticket(loop.create_future(), 1))], 0, 0)
    finally:
        loop.close()
    assert after is None and not resync
    statements = dict(write.statements) if write is not None else {}
    assert executions(statements.get(INSERT_EXECUTION, [])) == executions(rows)
    assert statements.get(LOG_METRICS, [(SCOPE, None)])[0][1] == \
        (plain.log(logged)[1][0][1] if logged else None)
    assert {r: (run.active, [ring.values() for ring in run.rings.values()])
            for r, run in fast.evaluator.book.runs.items()} == \
        {r: (run.active, [ring.values() for ring in run.rings.values()])
         for r, run in plain.book.runs.items()}


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 50), st.integers(1, 20), st.dictionaries(st.integers(0, 19),
       st.sampled_from(["disk full", "bad"]), max_size=3), st.booleans())
def test_range_answers_are_each_lines_own_answer(first, count, errors, whole):
    lines = range(first, first + count)

    async def both() -> tuple[list[bytes], list[bytes]]:
        loop = asyncio.get_running_loop()
        answers = []
        for results in (lines, list(lines)):  # the range, and one entry a line
            ticket = Ticket(loop.create_future(), 1)
            for offset, why in errors.items():
                if offset < count:
                    ticket.fail(first + offset, why)
            ticket.done("write failed" if whole else None)
            out = Answers(results)
            out.ticket = ticket
            answers.append(await resolve(out))
        return answers[0], answers[1]

    fast, plain = asyncio.run(both())
    assert b"".join(fast) == b"".join(plain)
    expected = [protocol.error_line(n, "write failed") if whole else
                protocol.error_line(n, errors[n - first]) if n - first in errors
                else protocol.OK for n in lines]
    assert b"".join(plain) == b"".join(expected)
