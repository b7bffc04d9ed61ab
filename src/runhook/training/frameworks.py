"""A framework an adapter needs, imported, or an error that names the extra to install."""

from __future__ import annotations

import importlib
from typing import Any


class MissingFramework(ModuleNotFoundError):
    """The framework an adapter wraps is not installed; the message says which extra
    brings it. A ModuleNotFoundError still, so `except ImportError` keeps working."""


def need(names: tuple[str, ...], extra: str, framework: str) -> Any:
    """The first of `names` (module paths, tried in order) that imports. When none
    does because its package is missing, MissingFramework says
    `pip install 'runhook[extra]'`; a framework that is there but fails to import
    (a broken install, a missing dependency of its own) raises its own error."""
    missing = []
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            top = name.split(".")[0]
            if exc.name is None or exc.name.split(".")[0] != top:
                raise  # the framework is there; something it imports is not
            missing.append(top)
    tops = [f"`{m}`" for m in dict.fromkeys(missing)]
    which = f"{tops[0]} is not" if len(tops) == 1 else \
        f"neither {', '.join(tops[:-1])} nor {tops[-1]} is"
    raise MissingFramework(f"runhook.training.{extra} needs {framework}, and {which} "
                           f"installed: pip install 'runhook[{extra}]'",
                           name=missing[0]) from None
