"""Filter regular expressions (run_name, collection, alias, tag), compiled by RE2."""

from __future__ import annotations

import re2  # type: ignore[import-untyped]

from runhook.core.schema import FieldError

# Python's re backtracks: `^(a+)+$` against forty a's and a `!` takes hours, and a
# filter runs on the event loop, so one such name would stall every scope, the
# socket and /healthz. RE2 matches in time linear in the name, whatever the
# pattern, at the price of backreferences and lookaround, which it refuses at load.
_OPTIONS = re2.Options()
_OPTIONS.never_capture = True  # a filter only asks "is there a match": no groups to track
_OPTIONS.log_errors = False  # RE2 would print a refused pattern to stderr; we report it

# RE2's Python wrapper costs a few microseconds a call (it re-encodes the text and
# builds a match object) where re took 0.1 µs; names repeat, so answers are
# remembered. Distinct names remembered per pattern before the memo starts afresh,
# and the longest name remembered, so the memo stays under a megabyte per pattern.
MEMO_SIZE = 4096
MEMO_LONGEST = 256


class Pattern:
    """One filter: `search(text)` says whether the pattern occurs anywhere in `text`
    (re.search semantics; anchor it with ^…$ for a whole name)."""

    __slots__ = ("_memo", "_regexp", "source")

    def __init__(self, field: str, source: str) -> None:
        self.source = source
        try:
            self._regexp = re2.compile(source, _OPTIONS)
        except re2.error as exc:
            reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) \
                else str(exc)
            raise FieldError(field, f"bad regular expression {source!r}: {reason} (filters use "
                                    "RE2 syntax, which matches in linear time: no "
                                    "backreferences or lookaround)") from None
        self._memo: dict[str, bool] = {}

    def search(self, text: str) -> bool:
        found = self._memo.get(text)
        if found is None:
            found = self._regexp.search(text) is not None
            if len(text) <= MEMO_LONGEST:
                if len(self._memo) >= MEMO_SIZE:
                    self._memo.clear()
                self._memo[text] = found
        return found

    def __repr__(self) -> str:
        return f"Pattern({self.source!r})"


def compile_filter(field: str, source: str | None) -> Pattern | None:
    """A filter's pattern, or None when the filter is not set; FieldError names `field`."""
    return None if source is None else Pattern(field, source)
