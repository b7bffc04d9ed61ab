"""How the client commands print for people: times with their zone, counts, attempts, tables."""

from __future__ import annotations

from collections.abc import Sequence

from runhook.core.clock import local_time
from runhook.core.words import count

__all__ = ["attempt", "count", "cut", "table", "when"]


def when(ts: float) -> str:
    """Every CLI time in the same form: local, with the zone said (`… UTC`, `… UTC+01:00`)."""
    return local_time(ts)


def attempt(status: int | None, error: str | None, duration_ms: float) -> str:
    """What an attempt got, in words: an HTTP status, or no answer and why (an email
    sent has no HTTP status and no error)."""
    took = f"{duration_ms:.0f} ms"
    if status is not None:
        return f"HTTP {status} in {took}" + (f" ({error})" if error else "")
    if error:
        return f"no answer after {took} ({error})"
    return f"sent in {took}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell; the last column is left as it is."""
    everything = [list(header)] + [list(row) for row in rows]
    widths = [max(len(row[i]) for row in everything) for i in range(len(header) - 1)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1]
            for row in everything]


def cut(text: str, width: int) -> str:
    """At most `width` characters, cut at a word boundary with an ellipsis."""
    if len(text) <= width:
        return text
    cut = text[:width - 1].rsplit(" ", 1)[0] if " " in text[:width - 1] else text[:width - 1]
    return cut.rstrip(" ,;:") + "…"
