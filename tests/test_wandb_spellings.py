"""W&B's spellings (docs/wandb.md) load as their canonical twins and fire exactly as they do,
on the same events; firings worked out by hand."""

from __future__ import annotations

import pytest
from run_helpers import book, feed, state

from runhook.config.diagnose import check
from runhook.config.model import ConfigError, decode
from runhook.config.settings import build
from runhook.core.events import AliasAdded, ArtifactLinked
from runhook.evaluate.evaluator import Evaluator

# (W&B's spelling, runhook's, a series of loss values, the indices that fire)
METRIC_TWINS = [
    # avg of the last 2 > 5: (1,9)=5 F, (9,9)=9 T fire 2, (9,1)=5 F, (1,1) F
    (('{ kind = "RUN_METRIC", name = "loss", agg = "AVERAGE", window = 2, cmp = "$gt", '
     'threshold = 5 }'),
     ('{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", agg = "avg", window = 2, cmp = ">", '
     'threshold = 5 }'), [1, 9, 9, 1, 1], [2]),
    # each value >= 5: 4 F, 5 T fire 1, 6 T, 4 F, 5 T fire 4
    ('{ kind = "RUN_METRIC", name = "loss", cmp = "$gte", threshold = 5 }',
     '{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = ">=", threshold = 5 }',
     [4, 5, 6, 4, 5], [1, 4]),
    ('{ kind = "run_metric", name = "loss", cmp = "$lt", threshold = 5 }',
     '{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = "<", threshold = 5 }',
     [4, 5, 6, 4, 5], [0, 3]),
    ('{ kind = "RUN_METRIC", name = "loss", cmp = "$lte", threshold = 5 }',
     '{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = "<=", threshold = 5 }',
     [4, 5, 6, 4, 5], [0, 3]),
    ('{ kind = "RUN_METRIC", name = "loss", cmp = "$eq", threshold = 5 }',
     '{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = "==", threshold = 5 }',
     [4, 5, 6, 4, 5], [1, 4]),
    ('{ kind = "RUN_METRIC", name = "loss", cmp = "$ne", threshold = 5 }',
     '{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = "!=", threshold = 5 }',
     [4, 5, 6, 4, 5], [0, 2]),
    # max of the last 2 < 3: (5,2)=5 F, (2,2)=2 T fire 2, (2,4) F
    (('{ kind = "RUN_METRIC", name = "loss", agg = "MAX", window = 2, cmp = "$lt", '
     'threshold = 3 }'),
     ('{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", agg = "max", window = 2, cmp = "<", '
     'threshold = 3 }'), [5, 2, 2, 4], [2]),
    # relative decrease of at least 50 %: 10 -> 4 is -60 % fire 1; 4 -> 3 is -25 %;
    # 3 -> 1 is -66 % fire 3 (it was false in between)
    (('{ kind = "RUN_METRIC_CHANGE", name = "loss", change_type = "RELATIVE", '
     'change_dir = "DECREASE", change_amount = 0.5 }'),
     ('{ kind = "RUN_METRIC_CHANGE", metric = "loss", change = "relative", '
     'direction = "decrease", amount = 0.5 }'), [10, 4, 3, 1], [1, 3]),
    # absolute increase of at least 2, min over windows of 1: 1 -> 4 fire 1, 4 -> 5, 5 -> 8 fire 3
    (('{ kind = "RUN_METRIC_CHANGE", name = "loss", agg = "Min", change_type = "ABSOLUTE", '
     'change_dir = "INCREASE", change_amount = 2 }'),
     ('{ kind = "RUN_METRIC_CHANGE", metric = "loss", agg = "min", change = "absolute", '
     'direction = "increase", amount = 2 }'), [1, 4, 5, 8], [1, 3]),
    # z-score of the new value vs the 2 before, above 1 either way: 1, 3 | 5: mean 2,
    # stdev 1, z = 3 fire 2; 3, 5 | 4: mean 4, z = 0; 5, 4 | 4: mean 4.5, z = -1 fire 4
    (('{ kind = "RUN_METRIC_ZSCORE", name = "loss", window = 2, threshold = 1, '
     'change_dir = "ANY" }'),
     ('{ kind = "RUN_METRIC_ZSCORE", metric = "loss", window = 2, threshold = 1, '
     'direction = "any" }'), [1, 3, 5, 4, 4], [2, 4]),
]


@pytest.mark.parametrize("wandb, canonical, series, fired", METRIC_TWINS)
def test_metric_spellings_fire_as_their_twin(wandb, canonical, series, fired):
    assert feed(book(wandb), series) == (fired, [])
    assert feed(book(canonical), series) == (fired, [])
    twin, original = (build(decode(_automation(t))).automations[0] for t in (wandb, canonical))
    assert twin.kind == original.kind
    assert twin.run.metric.description == original.run.metric.description


def test_run_state_in_any_case():
    # running (no), failed fires, finished (no)
    for table in ('{ kind = "RUN_STATE", states = ["FAILED"] }',
                  '{ kind = "RUN_STATE", states = ["failed"] }'):
        assert state(book(table), ["running", "failed", "finished"]) == ([1], [])


def _automation(event: str, scope: str = "project:acme/vision", name: str = "a") -> str:
    return (f'[[automations]]\nname = "{name}"\nscope = "{scope}"\nevent = {event}\n'
            'action = { kind = "none" }\n')


@pytest.mark.parametrize("wandb, canonical", [
    ('{ kind = "LINK_MODEL" }', '{ kind = "LINK_ARTIFACT" }'),
    ('{ kind = "UPDATE_ARTIFACT_ALIAS", alias = "^prod" }',
     '{ kind = "ADD_ARTIFACT_ALIAS", alias = "^prod" }'),
    ('{ kind = "link_artifact" }', '{ kind = "LINK_ARTIFACT" }'),
])
def test_artifact_kind_spellings_fire_as_their_twin(wandb, canonical):
    events = [ArtifactLinked(entity="acme", registry="model", collection="c", version=1,
                             aliases=["production"]),
              AliasAdded(entity="acme", registry="model", collection="c", version=1,
                         alias="staging")]
    seen = []
    for table in (wandb, canonical):
        automations = build(decode(_automation(table, "registry:acme/model"))).automations
        evaluator = Evaluator("registry:acme/model", automations)
        seen.append([row[3] for e in events for row in evaluator.evaluate(e, 0.0, 0.0).rows])
    # LINK_ARTIFACT fires on the link only; the alias kind on the link's "production"
    # alias (which matches ^prod), not on "staging"
    expected = ["LINK_ARTIFACT"] if "LINK" in canonical else ["ADD_ARTIFACT_ALIAS"]
    assert seen == [expected, expected]


def test_severity_in_any_case():
    text = """
[secrets]
SLACK = { env = "RUNHOOK_TEST_SLACK_URL" }
[integrations.alerts]
kind = "slack"
url_secret = "SLACK"
[[automations]]
name = "a"
scope = "project:acme/vision"
event = { kind = "RUN_STATE", states = ["failed"] }
action = { integration = "alerts", severity = "error" }
"""
    assert decode(text).automations[0].action.severity == "ERROR"


def test_a_field_under_both_names_is_refused():
    text = _automation('{ kind = "RUN_METRIC", name = "loss", metric = "acc", cmp = ">", '
                       'threshold = 1 }')
    with pytest.raises(ConfigError) as caught:
        decode(text)
    assert caught.value.problems == [
        ("automations[0].event.name: W&B's name for `metric`, which is given too; give one "
        "(automation 'a')")]
    assert check(text.encode(), "<config>") == caught.value.problems


def test_did_you_mean_prefers_the_wandb_name():
    # RUN_METRICS is nearer RUN_METRIC_ZSCORE by edit distance; W&B's RUN_METRIC is meant
    text = _automation('{ kind = "RUN_METRICS", name = "loss", cmp = ">", threshold = 1 }')
    problems = check(text.encode(), "<config>")
    assert len(problems) == 1
    assert problems[0].endswith("did you mean 'RUN_METRIC_THRESHOLD'? (automation 'a')")
    # and RUN_METRIC itself is simply accepted
    assert check(_automation('{ kind = "RUN_METRIC", name = "loss", cmp = ">", '
                             'threshold = 1 }').encode(), "<config>") == []
