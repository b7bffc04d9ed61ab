"""MLflow's tracking REST API as a follower reads it (`experiments/search`,
`experiments/get-by-name`, `runs/search`, `metrics/get-history`), with the field names
of mlflow/protos/service.proto and the SSRF guard of destinations."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import msgspec

from runhook.config.tracking import Tracking
from runhook.delivery.ssrf import DestinationRefused, check_url, connector, is_refusal
from runhook.sources.tracking_http import HttpError, Pipelined

API = "/api/2.0/mlflow"
# The largest page each call asks for: runs/search allows 50,000, but a page of
# 1,000 runs with their metrics, params and tags is already a few MiB.
RUNS_PAGE = 1000
HISTORY_PAGE = 10_000
# A response larger than this is refused as malformed (a history page of 10,000
# points is about 1 MiB).
MAX_RESPONSE_BYTES = 64 << 20


class ApiError(Exception):
    """A call that failed: the server down, refused, or answering what is not MLflow's
    JSON. The message names the call and the status, never a credential."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Metric(msgspec.Struct):
    key: str
    # MLflow writes NaN and the infinities as the strings "NaN", "Infinity", "-Infinity".
    value: float | str | None = None
    timestamp: int = 0
    step: int = 0

    @property
    def number(self) -> float:
        return self.value if isinstance(self.value, float | int) else float(self.value or "nan")


class KeyValue(msgspec.Struct):
    key: str
    value: str = ""


class RunInfo(msgspec.Struct):
    run_id: str
    experiment_id: str
    status: str = "RUNNING"
    run_name: str = ""
    start_time: int = 0
    end_time: int | None = None


class RunData(msgspec.Struct):
    metrics: list[Metric] = []
    params: list[KeyValue] = []
    tags: list[KeyValue] = []


class MlflowRun(msgspec.Struct):
    info: RunInfo
    data: RunData = msgspec.field(default_factory=RunData)


class _Runs(msgspec.Struct):
    runs: list[MlflowRun] = []
    next_page_token: str = ""


class Experiment(msgspec.Struct):
    experiment_id: str
    name: str
    lifecycle_stage: str = "active"


class _Experiments(msgspec.Struct):
    experiments: list[Experiment] = []
    next_page_token: str = ""


class _ExperimentByName(msgspec.Struct):
    experiment: Experiment


class _History(msgspec.Struct):
    metrics: list[Metric] = []
    next_page_token: str = ""


def offset_token(offset: int) -> str:
    """A get-history page token starting at `offset`: MLflow's own token shape
    (SearchUtils.create_page_token). The follower resumes a history where it left it
    with one; the shape is MLflow's internal, so a server that refuses it is read
    from the start instead (see tracking.py)."""
    return base64.b64encode(b'{"offset": %d}' % offset).decode()


class Api:
    """One tracking server's API over one aiohttp session; `requests` counts calls."""

    def __init__(self, source: Tracking) -> None:
        self._source = source
        self._session: aiohttp.ClientSession | None = None
        self._histories = Pipelined(source.url, source.authorization, source.allow_private,
                                    source.timeout, MAX_RESPONSE_BYTES)
        self.requests = 0

    async def close(self) -> None:
        await self._histories.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            headers = {"Accept": "application/json"}
            if self._source.authorization:
                headers["Authorization"] = self._source.authorization
            self._session = aiohttp.ClientSession(
                connector=connector(8, self._source.allow_private), headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._source.timeout))
        return self._session

    async def _call(self, method: str, path: str, kind: type[Any],
                    params: dict[str, str] | None = None, body: Any = None) -> Any:
        url = self._source.url + API + path
        self.requests += 1
        try:
            check_url(url, True, self._source.allow_private)  # the scheme was checked at load
            async with self._open().request(method, url, params=params, json=body) as response:
                # read(n) returns what has arrived, not n bytes: read to the end, capped.
                body = bytearray()
                while chunk := await response.content.read(1 << 20):
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        break
                data, status = bytes(body), response.status
        except (aiohttp.ClientError, DestinationRefused) as exc:
            refusal = is_refusal(exc)
            raise ApiError(f"{path}: {refusal or type(exc).__name__}") from None
        except TimeoutError:
            raise ApiError(f"{path}: no answer in {self._source.timeout:g}s") from None
        if status != 200:
            raise ApiError(f"{path}: HTTP {status}{_reason(data)}", status)
        if len(data) > MAX_RESPONSE_BYTES:
            raise ApiError(f"{path}: answer over {MAX_RESPONSE_BYTES >> 20} MiB")
        try:
            return msgspec.json.decode(data, type=kind)
        except msgspec.DecodeError as exc:
            raise ApiError(f"{path}: not MLflow's answer: {exc}") from None

    async def experiments(self) -> list[Experiment]:
        """Every active experiment, all pages."""
        found: list[Experiment] = []
        token = ""
        while True:
            body: dict[str, Any] = {"max_results": 1000, "view_type": "ACTIVE_ONLY"}
            if token:
                body["page_token"] = token
            page = await self._call("POST", "/experiments/search", _Experiments, body=body)
            found.extend(page.experiments)
            token = page.next_page_token
            if not token:
                return found

    async def experiment(self, name: str) -> Experiment | None:
        try:
            answer = await self._call("GET", "/experiments/get-by-name", _ExperimentByName,
                                      params={"experiment_name": name})
        except ApiError as exc:
            if exc.status == 404:
                return None  # RESOURCE_DOES_NOT_EXIST: not (yet) created
            raise
        return answer.experiment if answer.experiment.lifecycle_stage == "active" else None

    async def runs(self, experiment_ids: list[str], filter_: str) -> AsyncIterator[MlflowRun]:
        token = ""
        while True:
            body: dict[str, Any] = {"experiment_ids": experiment_ids, "filter": filter_,
                                    "max_results": RUNS_PAGE, "run_view_type": "ACTIVE_ONLY"}
            if token:
                body["page_token"] = token
            page = await self._call("POST", "/runs/search", _Runs, body=body)
            for run in page.runs:
                yield run
            token = page.next_page_token
            if not token:
                return

    async def histories(self, wanted: list[tuple[str, str, int]]
                        ) -> list[tuple[list[Metric], bool]]:
        """For each (run id, metric, offset): one page of the metric's points from the
        offset (MLflow orders them by timestamp, step, value), and whether more follow.
        Pipelined: thousands of these make a look."""
        # Built by hand, each run id and key quoted once (a run id is hex: as is); the
        # token's base64 needs only its three signs escaped. urlencode, then quote,
        # were a third of a look's CPU.
        quoted: dict[str, str] = {}
        targets = []
        for run_id, key, offset in wanted:
            if (q := quoted.get(key)) is None:
                q = quoted[key] = quote(key, safe="")
            if (r := quoted.get(run_id)) is None:
                r = quoted[run_id] = run_id if _PLAIN.fullmatch(run_id) else quote(
                    run_id, safe="")
            target = (f"{API}/metrics/get-history?run_id={r}&metric_key={q}"
                      f"&max_results={HISTORY_PAGE}")
            if offset:
                target += "&page_token=" + offset_token(offset).translate(_BASE64_QUOTED)
            targets.append(target)
        self.requests += len(targets)
        path = "/metrics/get-history"
        try:
            answers = await self._histories.get_many(targets)
        except HttpError as exc:
            raise ApiError(f"{path}: {exc}") from None
        pages = []
        for answer in answers:
            if answer.status != 200:
                raise ApiError(f"{path}: HTTP {answer.status}{_reason(answer.body)}",
                               answer.status)
            try:
                page = _history_decoder.decode(answer.body)
            except msgspec.DecodeError as exc:
                raise ApiError(f"{path}: not MLflow's answer: {exc}") from None
            pages.append((page.metrics, bool(page.next_page_token)))
        return pages


_history_decoder = msgspec.json.Decoder(_History)
_PLAIN = re.compile(r"[A-Za-z0-9_.~-]*")  # what quote leaves as it is
_BASE64_QUOTED = str.maketrans({"+": "%2B", "/": "%2F", "=": "%3D"})


def _reason(data: bytes) -> str:
    """MLflow's error code from an error body (`{"error_code": …}`), if it is one."""
    try:
        code = json.loads(data[:4096]).get("error_code")
    except (ValueError, AttributeError):
        return ""
    return f" {code}" if isinstance(code, str) and code.isidentifier() else ""
