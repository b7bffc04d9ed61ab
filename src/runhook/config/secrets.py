"""Secret values: where they come from, and keeping them out of every text we write."""

from __future__ import annotations

import base64
import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import msgspec
from yarl import URL


class SecretSource(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Exactly one of: an environment variable, a file, or a systemd credential
    (LoadCredential=, read from $CREDENTIALS_DIRECTORY)."""

    env: str | None = None
    file: str | None = None
    credential: str | None = None


def resolve(name: str, source: SecretSource) -> str:
    """The secret's value; raises ValueError naming the source (never the value)."""
    given = [k for k in ("env", "file", "credential") if getattr(source, k) is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of env, file, credential")
    if source.env is not None:
        value = os.environ.get(source.env)
        if value is None:
            raise ValueError(f"environment variable {source.env} is not set")
        return value
    if source.file is not None:
        path = Path(source.file)
    else:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise ValueError(
                f"credential {source.credential!r} needs $CREDENTIALS_DIRECTORY "
                "(systemd LoadCredential=)")
        path = Path(directory) / str(source.credential)
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        # Its message would quote a byte of the secret and where it sits.
        raise ValueError(f"{path} is not UTF-8 text") from None
    if not value:
        raise ValueError(f"{path} is empty")
    return value


class Redactor:
    """Replaces every known secret value in a text with its name. Used on anything
    that leaves the process or reaches the database: log lines, error messages,
    stored response bodies (an endpoint may echo a token back).

    A secret is matched in every form it takes on the way out: as configured,
    percent-encoded and decoded, and a URL also as the HTTP client rewrites it
    (yarl lowercases the host, drops a default port, normalises escapes) and its
    path alone, which is what a receiver quotes back."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        self._marks: dict[str, str] = {}
        for name, value in secrets.items():
            for form in _forms(value):
                self._marks.setdefault(form, f"[secret {name}]")
        # Longest first, so a secret that contains another is replaced whole; one
        # pass, so a mark already written is never matched again.
        forms = sorted(self._marks, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, forms))) if forms else None
        # How far past a cut a text must reach for `keep` to see a secret whole.
        self.margin = max((len(form.encode()) for form in forms), default=0)

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(self._mark, text)

    def keep(self, text: str, limit: int) -> str:
        """The first `limit` bytes of `text`, redacted before the cut: a secret that
        starts before it is replaced whole, and nothing after it is kept, even where
        replacements made room. `text` should run `margin` bytes past the cut."""
        cut = len(text.encode()[:limit].decode("utf-8", "ignore"))
        out: list[str] = []
        position = 0
        for match in self._pattern.finditer(text) if self._pattern is not None else ():
            if match.start() >= cut:
                break
            out += (text[position:match.start()], self._mark(match))
            position = match.end()
        out.append(text[position:cut])
        return "".join(out)

    def _mark(self, match: re.Match[str]) -> str:
        return self._marks[match.group()]


def _forms(value: str) -> set[str]:
    """The texts a secret value can appear as; none empty, whatever its length (a
    minimum length is the configuration's rule, not an exemption here)."""
    if not value:
        return set()
    forms = {value, unquote(value), quote(value, safe=""), quote(value, safe="/")}
    try:
        url = URL(value)
    except ValueError:
        return forms
    if url.scheme in ("http", "https") and url.raw_host:
        configured = urlsplit(value)
        paths = {url.raw_path_qs, url.path_qs, url.raw_path, url.path, configured.path,
                 f"{configured.path}?{configured.query}" if configured.query else ""}
        forms |= {str(url), url.human_repr()}
        forms |= {path for path in paths if len(path) > 1}  # "/" alone is nobody's secret
    return forms | {unquote(form) for form in forms}


_PREFIX = "whsec_"


@functools.lru_cache(maxsize=64)  # every signed request asks again for the same few
def signing_key(secret: str) -> bytes:
    """The HMAC key a secret stands for: `whsec_<base64>` as Standard Webhooks
    issues them (decoded), anything else used as its UTF-8 bytes."""
    if secret.startswith(_PREFIX):
        try:
            return base64.b64decode(secret[len(_PREFIX):], validate=True)
        except ValueError:
            raise ValueError("signing secret starts with whsec_ but is not base64") from None
    return secret.encode()
