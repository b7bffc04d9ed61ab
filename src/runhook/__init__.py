"""runhook: a self-hosted automation daemon for machine-learning teams.

The bottom room: imports nothing of runhook's at import time. `runhook.init` and
`runhook.Run` are looked up on first use (PEP 562), so `import runhook` stays cheap
in a training script and loads neither the client nor any framework."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from runhook.training.run import Run, init

__all__ = ["Run", "__version__", "init"]


def __getattr__(name: str) -> Any:
    if name in ("init", "Run"):
        from runhook.training import run  # on demand: see the docstring

        return getattr(run, name)
    raise AttributeError(f"module 'runhook' has no attribute {name!r}")
