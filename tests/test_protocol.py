"""The line decoder's answers, which clients read: the same words whatever msgspec says."""

from __future__ import annotations

import pytest

from runhook.ingest.protocol import BadLine, decode

GOOD = b'{"type":"run.metrics","entity":"acme","project":"vision","run_id":"r1","values":{"loss":1.0}}'


@pytest.mark.parametrize("line", [
    GOOD.replace(b"vision", b"vis\xffion"),        # an invalid byte inside a string
    GOOD.replace(b"acme", b"\xc3"),                 # a truncated two-byte sequence
    GOOD.replace(b'"r1"', b'"r1\xed\xa0\x80"'),     # an encoded surrogate (not UTF-8)
    b"\xfe" + GOOD,                                 # garbage before the document
    GOOD.replace(b"1.0", b"NaN").replace(b"acme", b"ac\xffme"),  # the json fallback's path
])
def test_bad_utf8_is_named_as_such(line: bytes) -> None:
    # msgspec before 0.23 raised UnicodeDecodeError here and 0.23 a DecodeError; the
    # answer must not depend on which one is installed.
    with pytest.raises(BadLine) as caught:
        decode(line)
    assert str(caught.value) == "not valid UTF-8"


def test_bad_json_in_valid_utf8_is_still_bad_json() -> None:
    with pytest.raises(BadLine) as caught:
        decode(GOOD[:-1])
    assert str(caught.value).startswith("not valid JSON: ")
