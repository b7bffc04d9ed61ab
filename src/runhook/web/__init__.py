"""Loopback HTTP: health and readiness, Prometheus metrics, the status page and
the JSON API, with their connection and size limits; and, as a server of its own,
the remote listener (`[ingest]`: TLS, tokens, HTTP ingest and registry webhooks).
Imports sources, ingest (the overview it shows), store, config, core."""
