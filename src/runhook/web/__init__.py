"""Loopback HTTP: health and readiness, Prometheus metrics, the status page and
the JSON API, with their connection and size limits. Imports store, config, core."""
