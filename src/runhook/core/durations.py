"""Parsing of the human durations and rates the configuration uses ("24h", "10/s")."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d)\s*$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
        "h": 3600.0, "hour": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in `text` ("30s", "5m", "24h", "7d", "250ms", or "0")."""
    if text.strip() == "0":
        return 0.0
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"expected a duration like '30s', '5m', '24h' or '7d', got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_rate(text: str) -> float:
    """Events per second in `text` ("10/s", "100/min", "1000/h")."""
    match = _RATE.match(text)
    if match is None:
        raise ValueError(f"expected a rate like '10/s' or '100/min', got {text!r}")
    per_second = float(match.group(1)) / _PER[match.group(2)]
    if per_second <= 0:
        raise ValueError(f"rate must be above zero, got {text!r}")
    return per_second


def describe(seconds: float) -> str:
    """A duration as people say it: "24h", "5m", "1h30m", "12s"."""
    seconds = max(0, round(seconds))
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts[:2])
