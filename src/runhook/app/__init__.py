"""The daemon: lifecycle (start order, signals, shutdown: the task groups) in `daemon`,
periodic work in `housekeeping`, the typed status in `status`. Imports every room
below it (web, ingest, evaluate, delivery, config, store, triggers, core) and systemd."""

from __future__ import annotations

from runhook.app.daemon import Daemon, main

__all__ = ["Daemon", "main"]
