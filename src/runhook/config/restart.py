"""What a reload cannot apply: the settings read once, when the daemon binds or opens."""

from __future__ import annotations

from runhook.config.model import Config

# The daemon binds the socket and its HTTP listeners, opens the database and sizes
# the ingest budget at start (docs/operations.md, "Reload"); everything else a
# reload applies at once.
START_ONLY = {
    "server": ("socket", "socket_mode", "http", "database", "ingest_budget_mib"),
    "ingest": ("listen", "tls_cert", "tls_key", "insecure", "max_connections",
               "header_timeout", "idle_timeout"),
}


def needs_restart(running: Config, new: Config) -> list[str]:
    """The start-only settings that differ between the configuration the daemon
    started with and `new`, as `[table].field` (only names: a value may be secret)."""
    changed = [f"[{table}].{field}" for table, fields in START_ONLY.items()
               for field in fields
               if getattr(getattr(running, table), field) != getattr(getattr(new, table), field)]
    if running.cluster != new.cluster:  # the NATS connection and the partitions
        changed.append("[cluster]")
    return changed


def restart_note(changed: list[str]) -> str:
    """"; [ingest].listen changed: takes effect at restart" (or "" when none did)."""
    if not changed:
        return ""
    verb = "takes" if len(changed) == 1 else "take"
    return f"; {', '.join(changed)} changed: {verb} effect at restart"
