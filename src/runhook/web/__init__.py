"""Loopback HTTP: health and readiness, Prometheus metrics, the status page and
the JSON API, with their connection and size limits. Imports ingest (the overview
it shows), store, config, core."""
