"""`POST /v1/hooks/NAME`: a registry's webhook verified, mapped to wire events, committed
through the ingest pipeline, and answered 2xx only once they are committed."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable

import anyio
import msgspec
from aiohttp import web

from runhook.config.remote import HuggingFaceSource, MlflowSource
from runhook.config.settings import Settings
from runhook.core.events import ArtifactCreated, Event, TagAdded
from runhook.core.logs import LogLimit
from runhook.core.words import count
from runhook.ingest.http import HttpIngress
from runhook.sources import huggingface, mlflow
from runhook.store.database import Store, WriteFailed
from runhook.store.versions import version_of

log = logging.getLogger("runhook.sources")

# A registry's webhook is a few KiB of JSON; the line limit is plenty.
MAX_HOOK_BYTES = 1 << 20


# Seconds a webhook's whole body may take to arrive.
HOOK_BODY_S = 10.0


def _answer(status: int, body: dict[str, object]) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status,
                        content_type="application/json")


class Hooks:
    def __init__(self, settings: Callable[[], Settings], http: HttpIngress, store: Store,
                 read_s: float) -> None:
        self._settings = settings  # read per request: a reload changes secrets and sources
        self._http = http
        self._store = store
        # A webhook body is at most 1 MiB and sent at once: its whole read is
        # bounded well below the listener's idle timeout.
        self._read_s = min(read_s, HOOK_BODY_S)
        self._refusals = LogLimit()

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        settings = self._settings()
        source = settings.config.sources.get(name)
        if not isinstance(source, MlflowSource | HuggingFaceSource):  # none, or followed
            return _answer(404, {"ok": False, "error": "no such source"})
        if request.content_length is not None and request.content_length > MAX_HOOK_BYTES:
            return _answer(413, {"ok": False, "error": "body over 1 MiB"})
        secret = settings.secrets[source.secret]
        # Hugging Face's secret is a header: checked before the body is even read.
        if isinstance(source, HuggingFaceSource) and not huggingface.verify(
                secret, request.headers.get(huggingface.SECRET_HEADER)):
            self._refused(name, request, f"wrong or missing {huggingface.SECRET_HEADER}")
            return _answer(401, {"ok": False, "error": "wrong or missing X-Webhook-Secret"})
        if isinstance(source, MlflowSource):
            try:  # what can be checked without the body, before reading it
                mlflow.check_headers(request.headers, time.time())
            except mlflow.Refused as exc:
                self._refused(name, request, str(exc))
                return _answer(401, {"ok": False, "error": str(exc)})
        body = await self._body(request)
        if body is None:
            return _answer(413, {"ok": False, "error": "body over 1 MiB, or not sent in time"})
        try:
            if isinstance(source, MlflowSource):
                events = self._mlflow(name, source, secret, request, body)
            else:
                events = await self._huggingface(name, source, body)
        except mlflow.Refused as exc:
            self._refused(name, request, str(exc))
            return _answer(401, {"ok": False, "error": str(exc)})
        except ValueError as exc:
            return _answer(400, {"ok": False, "error": str(exc)})
        except WriteFailed as exc:
            return _answer(503, {"ok": False, "error": f"not recorded: {exc}; send it again"})
        if not events:
            return _answer(200, {"ok": True, "ignored": True})
        outcomes = await self._http.commit(events)
        refused = [o.error for o in outcomes if o.error is not None]
        if refused:
            # Not committed: a 5xx makes the sender retry, with the same delivery.
            log.error("source %s: delivery not committed: %s", name, refused[0])
            return _answer(503, {"ok": False, "error": refused[0]})
        duplicate = all(o.duplicate for o in outcomes)
        return _answer(200, {"ok": True, "events": len(events),
                             **({"duplicate": True} if duplicate else {})})

    def _refused(self, name: str, request: web.Request, why: str) -> None:
        held = self._refusals.allow()  # forged deliveries must not flood the log
        if held is not None:
            log.warning("source %s: refused a delivery from %s: %s%s", name, request.remote,
                        why, f" (and {count(held, 'more refusal', 'more refusals')} not logged)" if held else "")

    async def _body(self, request: web.Request) -> bytes | None:
        body = bytearray()
        with anyio.move_on_after(self._read_s):
            while chunk := await request.content.readany():
                body += chunk
                if len(body) > MAX_HOOK_BYTES:
                    return None
            return bytes(body)
        return None

    @staticmethod
    def _mlflow(name: str, source: MlflowSource, secret: str, request: web.Request,
                body: bytes) -> list[Event]:
        delivery_id = mlflow.verify(secret, request.headers, body, time.time())
        event = mlflow.event(name, source, delivery_id, body)
        return [] if event is None else [event]

    async def _huggingface(self, name: str, source: HuggingFaceSource,
                           body: bytes) -> list[Event]:
        events: list[Event] = []
        for change in huggingface.changes(body):
            version = await version_of(self._store, name, change.repo, change.sha)
            fields: dict[str, object] = {
                "entity": source.entity, "project": source.project or name,
                "collection": change.repo, "version": version, "artifact_type": change.repo_type,
                # The Hub sends no delivery id (its `webhook.id` names the webhook, the
                # same on every delivery), so the key is the move: old sha -> new sha on
                # the ref. A redelivery or a replay from the activity tab is the same
                # event; a branch moved back to a sha it pointed to before (a revert by
                # force-push) is a new one. The new sha alone dropped it as a duplicate.
                # Hashed, not cut to the id's 256 characters: a long branch name cut
                # off the sha and made every later commit a duplicate.
                "id": "hf:" + hashlib.sha256(
                    f"{name}\0{change.repo}\0{change.ref}\0{change.old or ''}\0{change.sha}"
                    .encode()).hexdigest()}
            if change.tag is None:
                events.append(msgspec.convert(
                    {**fields, "metadata": {"sha": change.sha, "ref": change.ref}},
                    ArtifactCreated))
            else:
                events.append(msgspec.convert({**fields, "tag": change.tag}, TagAdded))
        return events
