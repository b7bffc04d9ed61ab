"""What actors read from the running daemon: the current settings and the metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from runhook.config.settings import Settings
    from runhook.core.metrics import Metrics


class Runtime(Protocol):
    """Settings are read through this on every use, so a reload reaches every actor."""

    @property
    def settings(self) -> Settings: ...

    @property
    def metrics(self) -> Metrics: ...
