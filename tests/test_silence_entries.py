"""A cluster's shared buckets are anyone's bytes (docs/cluster.md): an entry is applied
only as `silence add` would have made it on one machine, under its own key; a silence
whose check fails mutes nothing (pure: the checks, and the watch's reading of entries)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any, cast

import pytest

from runhook.cluster.buckets import Bounds
from runhook.cluster.bus import Bus
from runhook.cluster.shared import Shared, bounds, key_of
from runhook.config.model import decode
from runhook.config.settings import Settings, build
from runhook.core.clock import STREAM_TIME, StreamTime
from runhook.ingest import silencing
from runhook.ingest.silencing import Refused, accepted
from runhook.triggers.silences import Silence, Silences, silenced_by

CONFIG = """
[server]
max_silences = 2
max_silence_pattern = 8
max_silence_duration = "1d"

[[automations]]
name = "crashed"
scope = "project:acme/vision"
event = { kind = "RUN_STATE", states = ["crashed"] }
action = { kind = "none" }
"""
T = 1_800_000_000.0  # created_at of the entries below


@pytest.fixture(scope="module")
def settings() -> Settings:
    return build(decode(CONFIG))


def entry(key: str, value: Any, revision: int = 1, operation: str = "PUT") -> Any:
    data = value if isinstance(value, bytes) else json.dumps(value).encode()
    return SimpleNamespace(key=key, value=data, revision=revision, operation=operation)


def fields(silence_id: str, ends: float = T + 3600, run_name: str | None = None,
           comment: str = "maintenance") -> list[Any]:
    return [silence_id, None, run_name, None, None, comment, T, ends, None]


def refusal(settings: Settings, key: str, data: bytes) -> str:
    with pytest.raises(Refused) as caught:
        accepted(data, key, settings)
    return str(caught.value)


def test_an_entry_as_silence_add_makes_it_is_accepted(settings: Settings) -> None:
    silence = accepted(json.dumps(fields("si_1", run_name="^a")).encode(), "si_1", settings)
    assert (silence.id, silence.created_at, silence.ends_at, silence.comment) == \
        ("si_1", T, T + 3600, "maintenance")
    assert silence.matches("crashed", {"run_name": "abc"})
    # An expired one ends when it was expired: a duration of 0 is one.
    expired = [*fields("si_2", ends=T)[:-1], T]
    assert accepted(json.dumps(expired).encode(), "si_2", settings).expired_at == T


def test_what_silence_add_would_refuse_is_refused(settings: Settings) -> None:
    """The attacker's entries: nulls for the times, an endless one, one of 1e300,
    another key's, past max_silence_duration or max_silence_pattern, an empty comment."""
    def as_json(value: list[Any]) -> bytes:
        return json.dumps(value).encode()

    evil = as_json(["si_evil", None, None, None, None, "c", "x", "y"])
    assert refusal(settings, "si_evil", evil).startswith("not a silence: Expected `float`")
    endless = as_json(fields("si_inf", ends=math.inf))  # json writes Infinity
    assert refusal(settings, "si_inf", endless).startswith("not a silence: ")
    huge = as_json(fields("si_big", ends=1e300))
    assert refusal(settings, "si_big", huge).startswith("not a silence: Expected `float` <= ")
    assert refusal(settings, "k", as_json(fields("si_x"))) == "its id 'si_x' is not its key"
    assert refusal(settings, "si_y", as_json(fields("si_y", ends=T + 86401))) == (
        "field `duration`: 1d1s is longer than 1d, the most [server] max_silence_duration "
        "allows")
    assert refusal(settings, "si_p", as_json(fields("si_p", run_name="a" * 9))) == (
        "field `run_name`: 9 characters, more than the 8 [server] max_silence_pattern allows")
    assert refusal(settings, "si_r", as_json(fields("si_r", ends=T - 1))) == \
        "it ends before it starts"
    assert refusal(settings, "si_c", as_json(fields("si_c", comment=""))).startswith(
        "not a silence: Expected `str` of length >= 1")
    assert refusal(settings, "si_d", b"[1,2]").startswith("not a silence: ")


def shared(settings: Settings) -> Shared:
    return Shared(cast(Bus, None), Silences(), SimpleNamespace(settings=settings))


def test_the_watch_applies_what_is_accepted_and_counts_each_refusal_once(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = StreamTime()
    monkeypatch.setattr("runhook.cluster.shared.STREAM_TIME", clock)
    clock.observe(T + 60)  # the cluster's time: a minute into the silences
    node = shared(settings)
    node._silences_are([entry("si_evil", ["si_evil", None, None, None, None, "c", "x", "y"]),
                        entry("k", fields("si_x")), entry("si_a", fields("si_a")),
                        entry("si_b", fields("si_b"))])
    assert [s.id for s in node.silences.all] == ["si_a", "si_b"]
    assert node.refused == 2
    # max_silences (2) are kept: a third is refused, as `silence add` would refuse it.
    node._silence_changed(entry("si_c", fields("si_c")))
    assert [s.id for s in node.silences.all] == ["si_a", "si_b"]
    assert node.refused == 3
    # Read again whole (a re-watch): nothing counted twice.
    node._silences_are([entry("si_evil", ["si_evil", None, None, None, None, "c", "x", "y"]),
                        entry("k", fields("si_x")), entry("si_a", fields("si_a")),
                        entry("si_b", fields("si_b")), entry("si_c", fields("si_c"))])
    assert node.refused == 3
    # A key put again with what is refused holds no silence any more; deleting works.
    node._silence_changed(entry("si_a", fields("si_a", ends=math.inf), revision=2))
    node._silence_changed(entry("si_b", b"", revision=3, operation="DEL"))
    assert node.silences.all == ()
    assert node.refused == 4


def test_a_disable_under_another_key_is_not_applied(settings: Settings) -> None:
    node = shared(settings)
    node._disabled_are([entry("zz", ["hook", "forged"]), entry("hook", ["hook", "HTTP 410"]),
                        entry("x", [1, "why"]), entry(key_of("a b"), ["a b", "gone"])])
    assert node.disabled == {"hook": "HTTP 410", "a b": "gone"}
    assert node.refused == 2
    node._disabled_changed(entry("hook", b"not json", revision=2))
    assert node.disabled == {"a b": "gone"}


def test_a_silence_whose_check_raises_mutes_nothing() -> None:
    broken = Silence("si_evil", None, None, None, None, "c", cast(float, None), T + 10)
    good = Silence("si_good", "other", None, None, None, "c", T, T + 10)
    assert silenced_by([broken, good], "crashed", {}, T + 1) is None
    assert silenced_by([broken, good], "other", {}, T + 1) is good


def test_the_buckets_bounds_follow_the_silence_settings(settings: Settings) -> None:
    default = Bounds()
    assert default.silences == (6 * (1000 + 3 * 256) + 4096,
                                500 * (6 * (1000 + 3 * 256) + 4096 + 256))
    assert default.silences == (14704, 7_480_000)
    runtime = SimpleNamespace(settings=settings)
    assert bounds(cast(Any, runtime)).silences == (6 * (1000 + 24) + 4096,
                                                   2 * (6 * 1024 + 4096 + 256))


def test_a_cluster_node_takes_a_silence_s_times_from_the_stream(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Its own wall clock may be off (docs/cluster.md, Clocks); the stream's is the
    one its partitions compare silences with."""
    monkeypatch.setattr(STREAM_TIME, "_best", None)
    monkeypatch.setattr(STREAM_TIME, "_previous", None)
    STREAM_TIME.observe(T)  # the stream's time, far from this machine's
    cluster = SimpleNamespace(shared_commands=object())
    assert abs(silencing.now_of(cast(Any, cluster)) - T) < 60
    alone = SimpleNamespace(shared_commands=None)
    assert abs(silencing.now_of(cast(Any, alone)) - T) > 1e6
