"""Hugging Face Hub webhooks: the shared secret, and repo content updates mapped to
artifact events (the payload as huggingface.co/docs/hub/webhooks documents it)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import msgspec

SECRET_HEADER = "X-Webhook-Secret"
# Repos whose content is an artifact; Spaces are apps, not versions of anything.
REPO_TYPES = ("model", "dataset")


def verify(secret: str, given: str | None) -> bool:
    """The Hub sends the secret itself. Both sides are hashed before the constant-
    time compare, so neither its length nor a prefix shows in the timing."""
    if not given:
        return False
    return hmac.compare_digest(hashlib.sha256(given.encode("utf-8", "backslashreplace")).digest(),
                               hashlib.sha256(secret.encode("utf-8")).digest())


class _Event(msgspec.Struct):
    action: str
    scope: str


class _Repo(msgspec.Struct):
    type: str
    name: str
    headSha: str | None = None


class _Ref(msgspec.Struct):
    ref: str
    oldSha: str | None = None
    newSha: str | None = None


class Payload(msgspec.Struct):
    event: _Event
    repo: _Repo
    updatedRefs: list[_Ref] = []


@dataclass(frozen=True, slots=True)
class Change:
    """One thing a delivery says happened to a repo: a branch moved from `old` to
    `sha` (`tag` None), or a tag was created on `sha`. `old` is None for a new ref."""

    repo: str
    repo_type: str
    ref: str
    sha: str
    old: str | None = None
    tag: str | None = None


def changes(body: bytes) -> list[Change]:
    """What a delivery changed, in its order; [] for events runhook does not map
    (discussions, config, Spaces, deleted refs, pull-request refs). ValueError for
    a body that is not the Hub's shape."""
    try:
        payload = msgspec.json.decode(body, type=Payload)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a Hugging Face webhook payload: {exc}") from None
    if payload.event.scope != "repo.content" or payload.repo.type not in REPO_TYPES:
        return []
    repo = payload.repo
    refs = payload.updatedRefs
    if not refs and repo.headSha:  # headSha is main's head, sent on every repo event
        refs = [_Ref("refs/heads/main", None, repo.headSha)]
    out: list[Change] = []
    for ref in refs:
        if ref.newSha is None:
            continue  # a deleted branch or tag
        if ref.ref.startswith("refs/heads/"):
            out.append(Change(repo.name, repo.type, ref.ref, ref.newSha, ref.oldSha))
        elif ref.ref.startswith("refs/tags/") and ref.oldSha is None:
            out.append(Change(repo.name, repo.type, ref.ref, ref.newSha,
                              tag=ref.ref[len("refs/tags/"):]))
    return out
