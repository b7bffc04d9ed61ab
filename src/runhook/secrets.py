"""Secret values: where they come from, and keeping them out of every text we write."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import msgspec


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
    """Replaces every known secret value in a text with its name. Used on
    anything that leaves the process or reaches the database: log lines, error
    messages, stored response bodies (an endpoint may echo a token back)."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self._pairs = sorted(((v, f"[secret {k}]") for k, v in secrets.items() if len(v) >= 4),
                             key=lambda p: -len(p[0]))

    def __call__(self, text: str) -> str:
        for value, mark in self._pairs:
            if value in text:
                text = text.replace(value, mark)
        return text

    def values(self) -> Iterable[str]:
        return (value for value, _ in self._pairs)
