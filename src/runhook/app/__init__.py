"""The daemon: the one lifecycle (layers of parts, each in a task group of its own) in
`lifecycle`, the shared parts in `parts`, one machine's composition in `daemon`, a
cluster node's in `cluster` (imported only with `[cluster]`), periodic work in
`housekeeping`, the typed status in `status`. Imports every room below it (web,
cluster, sources, ingest, evaluate, delivery, config, store, triggers, core) and systemd."""

from __future__ import annotations

from runhook.app.daemon import Daemon, main

__all__ = ["Daemon", "main"]
