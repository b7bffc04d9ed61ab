"""`[sources.NAME] kind = "mlflow-tracking"`: an MLflow tracking server to follow
(docs/mlflow.md), as its Struct and as the checked settings its follower runs on."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Annotated

import msgspec

from runhook.config.destinations import url_problem
from runhook.core.durations import parse_duration
from runhook.core.schema import Table

Name = Annotated[str, msgspec.Meta(min_length=1)]
# Below this a look would be a busy loop against someone's tracking server.
MIN_INTERVAL_S = 0.05


class MlflowTrackingSource(Table, tag="mlflow-tracking", tag_field="kind", frozen=True):
    """An MLflow tracking server followed over its REST API: runs of `experiments`
    (names or globs; every active experiment when empty) become run events in
    `project:ENTITY/<experiment name>`. `token` (bearer) or `username`/`password`
    name secrets; the URL obeys the destinations' SSRF rules (`allow_http`,
    `allow_private`)."""

    url: Name
    entity: Name
    experiments: list[Name] = msgspec.field(default_factory=list)
    interval: str = "15s"
    group_tag: str | None = None
    token: Name | None = None
    username: Name | None = None
    password: Name | None = None
    allow_http: bool = False
    allow_private: bool = False
    timeout: Annotated[float, msgspec.Meta(gt=0)] = 30.0


@dataclass(frozen=True, slots=True)
class Tracking:
    """A tracking source, checked: what its follower needs, the secrets resolved."""

    name: str
    url: str  # without a trailing slash
    entity: str
    experiments: tuple[str, ...]
    interval: float  # also its runs' heartbeat interval (docs/mlflow.md)
    group_tag: str | None
    authorization: str | None  # the Authorization header's value; never logged
    allow_private: bool
    timeout: float

    @property
    def run_url(self) -> str:
        """`${run_url}` by default: MLflow's own run page (its UI routes /#/runs/ID to
        the run in its experiment)."""
        return self.url.replace("{", "{{").replace("}", "}}") + "/#/runs/{run_id}"


def check(name: str, source: MlflowTrackingSource, declared: set[str],
          secrets: dict[str, str]) -> tuple[list[str], Tracking | None]:
    """The problems of one tracking source (naming fields and secrets, never a value),
    and its settings when there are none."""
    where = f"sources.{name}"
    problems: list[str] = []
    problem = url_problem(source.url, source.allow_http, source.allow_private)
    if problem:
        problems.append(f"{where}.url: {problem}")
    try:
        interval = parse_duration(source.interval)
        if interval < MIN_INTERVAL_S:
            raise ValueError(f"expected at least {MIN_INTERVAL_S}s")
    except ValueError as exc:
        problems.append(f"{where}.interval: {exc}")
        interval = 0.0
    for field in ("token", "username", "password"):
        secret = getattr(source, field)
        if secret is not None and secret not in declared:
            problems.append(f"{where}.{field}: {secret!r} is not declared under [secrets]")
    if source.token is not None and (source.username or source.password):
        problems.append(f"{where}: give `token` (bearer) or `username` and `password`, not both")
    if (source.username is None) != (source.password is None):
        problems.append(f"{where}: `username` and `password` go together")
    if problems:
        return problems, None
    authorization = None
    if source.token is not None:
        authorization = f"Bearer {secrets[source.token]}"
    elif source.username is not None and source.password is not None:
        pair = f"{secrets[source.username]}:{secrets[source.password]}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode()
    return [], Tracking(name, source.url.rstrip("/"), source.entity, tuple(source.experiments),
                        interval, source.group_tag, authorization, source.allow_private,
                        source.timeout)
