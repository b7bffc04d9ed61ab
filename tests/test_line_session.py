"""The line session alone (no socket, no loop): framing across chunks, the limits,
answers released in request order whatever order they come back in."""

from __future__ import annotations

import pytest

from runhook.ingest.session import Lines, LineSession, OverBody, TooLong


def shape(frames: list[object]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for frame in frames:
        if isinstance(frame, Lines):
            out.append(("lines", frame.first, frame.data, frame.tail))
        elif isinstance(frame, TooLong):
            out.append(("too long", frame.line_no, frame.tail))
        else:
            assert isinstance(frame, OverBody)
            out.append(("over body", frame.line_no, frame.limit))
    return out


def test_a_line_split_across_chunks_is_framed_once_whole() -> None:
    session = LineSession()
    assert session.receive(b'{"a"') == []
    assert session.tail == 4
    # The first line completes, a second whole one follows, a third starts.
    frames = session.receive(b':1}\n{"b":2}\n{"c"')
    assert shape(frames) == [("lines", 1, b'{"a":1}\n{"b":2}', 4)]
    assert frames[0].count == 2  # type: ignore[union-attr]
    assert session.line_no == 2
    assert shape(session.receive(b":3}\n")) == [("lines", 3, b'{"c":3}', 0)]


def test_lines_are_numbered_across_chunks_and_blank_lines_count() -> None:
    session = LineSession()
    first = session.receive(b"a\n\nb")
    second = session.receive(b"\nc\n")
    assert shape(first) == [("lines", 1, b"a\n", 1)]
    assert shape(second) == [("lines", 3, b"b\nc", 0)]
    assert session.line_no == 4
    assert session.end() == []


def test_a_last_line_without_newline_is_a_request_unless_cut() -> None:
    kept = LineSession()
    kept.receive(b"a\nlast")
    assert shape(kept.end()) == [("lines", 2, b"last", 0)]
    cut = LineSession()
    cut.receive(b"a\nlast")
    assert cut.end(last_line=False) == []
    blank = LineSession()
    blank.receive(b"a\n  ")
    assert blank.end() == []  # whitespace is no request


def test_a_line_over_the_limit_is_dropped_to_its_end_and_answered() -> None:
    session = LineSession(max_line=10)
    assert session.receive(b"x" * 11) == []
    assert session.tail == 0  # nothing of the long line is held
    assert session.receive(b"y" * 100) == []
    # The long line ends: it is line 1; what follows is framed as usual, from line 2.
    frames = session.receive(b"yy\nok\nne")
    assert shape(frames) == [("too long", 1, 5), ("lines", 2, b"ok", 2)]
    assert session.receive(b"x" * 20) == []
    # It never ended: still answered, as line 3.
    assert shape(session.end()) == [("too long", 3, 0)]


def test_a_long_line_completed_within_one_chunk_is_left_to_the_decoder() -> None:
    session = LineSession(max_line=10)
    frames = session.receive(b"x" * 30 + b"\n")
    assert shape(frames) == [("lines", 1, b"x" * 30, 0)]


def test_the_body_limit_stops_the_framing() -> None:
    session = LineSession(max_body=10)
    assert shape(session.receive(b"a\nb\nc")) == [("lines", 1, b"a\nb", 1)]
    assert shape(session.receive(b"\nd\ne\nf")) == [("over body", 2, 10)]  # 11 bytes
    assert session.over
    assert session.receive(b"f\n") == []
    assert session.end() == []  # the partial "c" is not a request: it was cut


def test_answers_come_out_in_request_order_whatever_order_they_come_back() -> None:
    session = LineSession()
    slots = [session.slot() for _ in range(4)]
    assert slots == [0, 1, 2, 3]
    assert session.answer(2, b"c\n") == b""
    assert session.answer(3, b"d\n") == b""
    assert session.unanswered == 4
    assert session.answer(0, b"a\n") == b"a\n"
    assert session.unanswered == 3
    assert session.answer(1, b"b\n") == b"b\nc\nd\n"
    assert session.unanswered == 0
    # A skipped answer (a read-only query nobody reads) keeps the order too.
    s = session.slot()
    assert session.answer(s, b"") == b""
    t = session.slot()
    assert session.answer(t, b"e\n") == b"e\n"


def test_an_answer_twice_or_for_no_slot_is_refused() -> None:
    session = LineSession()
    slot = session.slot()
    session.slot()
    session.answer(1, b"b\n")
    with pytest.raises(ValueError):
        session.answer(1, b"again\n")
    with pytest.raises(ValueError):
        session.answer(7, b"never given\n")
    assert session.answer(slot, b"a\n") == b"a\nb\n"
    with pytest.raises(ValueError):
        session.answer(slot, b"released already\n")
