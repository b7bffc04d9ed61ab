"""Inbound registry webhooks (MLflow, Hugging Face): each verified as its sender signs
it and mapped to wire events, which the ingest pipeline commits. Imports the rooms
below it (ingest and down)."""
