"""Scope actors (thin loops: inbox, batching, writes, deliveries after the commit)
around the evaluator (pure: what an event causes) and the run book (rings, crossing
flags, cooldowns). Imports everything below ingest."""
