"""runhook: a self-hosted automation daemon for machine-learning teams."""

from __future__ import annotations

__version__ = "0.1.0"
