"""The process's ends, seen by every open run: an uncaught exception (main thread or
another) reports `failed`, SIGTERM reports `failed` with reason `SIGTERM` and then
acts as it would have, a normal exit reports `finished`. Each hook chains to the
one it found, so a framework's or the user's own hooks still run."""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any, NoReturn, Protocol


class Finishing(Protocol):
    def finish(self, state: str = "finished", reason: str | None = None,
               timeout: float | None = None) -> bool: ...

    def at_exit(self) -> None:
        """The interpreter exits normally with the run open (`finish()`, usually)."""


_open: list[Finishing] = []
_installed = False
_exit_code = 0  # what sys.exit() was last called with, as the process will exit
_sender_threads = {"runhook-sender"}  # our own threads' failures are not the run's


def describe(error: BaseException) -> str:
    """`ValueError: loss is nan`: the reason a failed run's state carries."""
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return text[:1000]


def watch(run: Finishing) -> None:
    _install()
    _open.append(run)


def forget(run: Finishing) -> None:
    if run in _open:
        _open.remove(run)


def finish_all(state: str, reason: str | None) -> None:
    for run in _open.copy():  # finish() forgets the run: iterate over a copy
        run.finish(state, reason)


def exit_code() -> int:
    """The code the process exits with, as far as Python can tell at exit: the one
    given to sys.exit() (a `raise SystemExit(n)` of one's own is not seen)."""
    return _exit_code


def _at_exit() -> None:
    for run in _open.copy():
        run.at_exit()


def _install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    previous_excepthook = sys.excepthook
    previous_thread_hook = threading.excepthook

    def excepthook(kind: type[BaseException], error: BaseException,
                   trace: TracebackType | None) -> None:
        finish_all("failed", describe(error))
        previous_excepthook(kind, error, trace)

    def thread_excepthook(args: Any) -> None:  # threading.ExceptHookArgs
        if args.exc_value is not None and (args.thread is None
                                           or args.thread.name not in _sender_threads):
            finish_all("failed", describe(args.exc_value))
        previous_thread_hook(args)

    previous_exit = sys.exit

    def exit_with(code: str | int | None = None) -> NoReturn:
        global _exit_code
        # Python's rule: None is 0, an int is itself, anything else is printed and 1.
        _exit_code = 0 if code is None else code if isinstance(code, int) else 1
        previous_exit(code)

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
    sys.exit = exit_with
    # Runs before the interpreter stops daemon threads: the sender can still flush.
    atexit.register(_at_exit)
    if threading.current_thread() is threading.main_thread():
        _install_sigterm()


def _install_sigterm() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_IGN:
        return  # SIGTERM does nothing to this process: it says nothing about the run

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        finish_all("failed", "SIGTERM")
        if callable(previous):
            previous(signum, frame)
            return
        # The default disposition (or one set outside Python): restore it and raise
        # the signal again, so the process dies by SIGTERM as its parent expects.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, on_sigterm)
