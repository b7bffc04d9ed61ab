"""Scope actors: one per scope, evaluating its automations in event order over
the run book (rings, crossing flags, cooldowns). Imports everything below ingest."""
