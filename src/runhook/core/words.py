"""Counts in words, for every place that prints one to people: `1 scope`, `2 scopes`."""

from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`n` (with thousands separators) and its noun agreeing (`plural` for the irregular ones)."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
