"""Digest windows: firings of one key that become one delivery (docs/alert-fatigue.md); pure, no I/O.

A key is the automation plus the values of its `digest.by` variables. The first
firing of a key opens a window and chooses the id its digest execution will have;
later firings of that key join it (GROUPED executions pointing at that id) until
the window's deadline in the scope's one timer heap; then `close` hands back what
the digest execution is made of. Windows are rows of `digest_windows` (opened in
the commit of their first firing, deleted in the commit of their digest), so
`restore` rebuilds them after a restart and a window whose close passed while the
daemon was down is due at once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from runhook.config.automations import DigestSpec
from runhook.core import constants
from runhook.evaluate.timers import DIGEST, Timers

_encode = msgspec.json.Encoder().encode
_decode_key = msgspec.json.Decoder(list[str]).decode
_decode_context = msgspec.json.Decoder(dict[str, Any]).decode

# Variables every firing has its own of: never shared by a digest (its own
# execution_id is the digest's; the rest would only repeat the first item's).
_OWN = frozenset({"execution_id", "event_time"})


@dataclass(slots=True)
class Window:
    id: str  # the digest execution's id, chosen when the window opens
    automation: str
    key: tuple[str, ...]  # the `by` values
    opened_at: float
    closes_at: float
    count: int = 0
    items: list[dict[str, Any]] = field(default_factory=list)  # the first DIGEST_ITEMS_KEPT

    def add(self, context: dict[str, Any]) -> None:
        self.count += 1
        if len(self.items) < constants.DIGEST_ITEMS_KEPT:
            self.items.append(context)

    def row(self, scope: str) -> tuple[Any, ...]:
        """Its digest_windows row, in OPEN_DIGEST's column order."""
        return (self.id, scope, self.automation, _encode(list(self.key)).decode(),
                self.opened_at, self.closes_at)


def key_of(spec: DigestSpec, context: Mapping[str, Any]) -> tuple[str, ...]:
    """The firing's `by` values; a variable the firing lacks counts as ""."""
    values = []
    for names in spec.reads:
        value = next((context[n] for n in names if context.get(n) is not None), "")
        values.append(value if isinstance(value, str) else _encode(value).decode())
    return tuple(values)


def digest_context(window: Window, kind: str, event_time: str) -> dict[str, Any]:
    """The digest execution's variables: those all its firings share (so a title
    `${run_group}` works in a digest by group, and `${run_name}` renders empty when
    the runs differ), then `digest_count`, `digest_items`, `digest_key` and `digest_runs`."""
    items = window.items
    shared: dict[str, Any] = {}
    if items:
        first = items[0]
        shared = {k: v for k, v in first.items()
                  if k not in _OWN and all(k in o and o[k] == v for o in items[1:])}
    shared.update({"event_type": kind, "automation_name": window.automation,
                   "execution_id": window.id, "event_time": event_time,
                   "digest_count": window.count, "digest_items": items,
                   "digest_key": "/".join(window.key), "digest_runs": runs_in_words(items)})
    return shared


def runs_in_words(items: list[dict[str, Any]]) -> str:
    """How many distinct runs the firings name, as a title says it ("1 run",
    "23 runs"), so `${digest_runs} of ${run_group} failed` reads right for one."""
    runs = {item.get("run_id") or item.get("run_name") for item in items} - {None, ""}
    return f"{len(runs)} run{'' if len(runs) == 1 else 's'}" if runs else ""


class Digests:
    """One scope's open windows, their deadlines in the actor's timer heap."""

    __slots__ = ("_by_id", "_open", "timers")

    def __init__(self, timers: Timers) -> None:
        self.timers = timers
        self._open: dict[tuple[str, tuple[str, ...]], Window] = {}
        self._by_id: dict[str, Window] = {}

    def __len__(self) -> int:
        return len(self._open)

    def join(self, automation: str, spec: DigestSpec, context: dict[str, Any], now: float,
             new_id: str) -> tuple[Window, bool]:
        """The window a firing of `automation` joins, and whether it opened now (with
        `new_id` as its digest's id, closing `spec.window` from now)."""
        key = key_of(spec, context)
        window = self._open.get((automation, key))
        opened = window is None
        if window is None:
            window = Window(new_id, automation, key, now, now + spec.window)
            self._register(window)
        window.add(context)
        return window, opened

    def is_open(self, automation: str, spec: DigestSpec, context: dict[str, Any]) -> bool:
        """Whether a firing of `automation` with `context` would join an open window."""
        return (automation, key_of(spec, context)) in self._open

    @staticmethod
    def alone(automation: str, spec: DigestSpec, context: dict[str, Any], kind: str,
              event_time: str, now: float) -> dict[str, Any]:
        """The context of a firing sent as a digest of its own (no window is opened):
        the automation's digest templates render it as they would a window of one."""
        window = Window(context["execution_id"], automation, key_of(spec, context), now, now)
        window.add(context)
        return digest_context(window, kind, event_time)

    def _register(self, window: Window) -> None:
        self._open[(window.automation, window.key)] = window
        self._by_id[window.id] = window
        self.timers.arm(DIGEST, window.id, window.closes_at)

    def close(self, window_id: str) -> Window | None:
        """The window whose deadline came, no longer open (None: already closed)."""
        window = self._by_id.pop(window_id, None)
        if window is not None:
            del self._open[(window.automation, window.key)]
        return window

    def restore(self, windows: Iterable[tuple[Any, ...]],
                items: Iterable[tuple[str, str]]) -> None:
        """Reopen the windows of `digest_windows` (id, automation, key, opened_at,
        closes_at) with their GROUPED executions' contexts (digest_id, context), in
        the order they were created; their deadlines go in the heap, past ones due."""
        for window_id, automation, key, opened_at, closes_at in windows:
            self._register(Window(window_id, automation, tuple(_decode_key(key)), opened_at,
                                  closes_at))
        for digest_id, context in items:
            found = self._by_id.get(digest_id)
            if found is not None:
                found.add(_decode_context(context))
