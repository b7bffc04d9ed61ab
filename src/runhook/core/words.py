"""Words for people: counts whose nouns agree (`1 scope`), and the name a typo meant."""

from __future__ import annotations

import difflib


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`n` (with thousands separators) and its noun agreeing (`plural` for the irregular ones)."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def closest(given: str, names: list[str], value: bool = True) -> str | None:
    """The name `given` was probably meant to be: the same but for case ('info' for
    `INFO`); for a value, the one allowed value it begins ('min' for `minimize`: a
    field name's prefix is as often another field) or the one with its characters in
    another order; else the nearest spelling."""
    folded = given.casefold()
    same = [n for n in names if n.casefold() == folded]
    if same:
        return same[0]
    begun = [n for n in names if folded and n.casefold().startswith(folded)]
    if value and len(begun) == 1:
        return begun[0]
    # The same characters in another order: `=>` meant `>=`, not the nearer `>`.
    shuffled = [n for n in names if sorted(n.casefold()) == sorted(folded)]
    if value and len(shuffled) == 1:
        return shuffled[0]
    match = difflib.get_close_matches(folded, [n.casefold() for n in names], n=1, cutoff=0.6)
    return next(n for n in names if n.casefold() == match[0]) if match else None
