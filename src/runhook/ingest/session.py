"""One line session, sans I/O: bytes in, numbered lines out; answers back, released in
request order; the line, body and pipelining limits. The socket and HTTPS drive it."""

from __future__ import annotations

from runhook.core import constants


class Lines:
    """Complete lines, numbered from `first`: `data` is one block (newlines inside,
    the last newline cut off), split only when the fast decode refuses it. `tail` is
    the part of a line still arriving once these were cut off: the budget keeps it
    charged to the connection."""

    __slots__ = ("count", "data", "first", "tail")

    def __init__(self, first: int, data: bytes, tail: int) -> None:
        self.first = first
        self.data = data
        self.count = data.count(b"\n") + 1
        self.tail = tail

    @property
    def last(self) -> int:
        return self.first + self.count - 1


class TooLong:
    """Line `line_no` was over the line limit: dropped up to its end, answered as refused."""

    __slots__ = ("line_no", "tail")

    def __init__(self, line_no: int, tail: int) -> None:
        self.line_no = line_no
        self.tail = tail


class OverBody:
    """The body passed its limit: nothing after line `line_no` was read, nor will be."""

    __slots__ = ("limit", "line_no", "tail")

    def __init__(self, line_no: int, limit: int) -> None:
        self.line_no = line_no
        self.limit = limit
        self.tail = 0


Frame = Lines | TooLong | OverBody


class LineSession:
    """The framing of one connection (or one HTTP body) and the order of its answers.
    A bytearray holds the start of a line still arriving, and only the new bytes are
    searched for a newline: a 1 MiB line sent in 64-byte writes costs linear time."""

    __slots__ = ("_answers", "_discarding", "_issued", "_next", "_pending", "_total",
                 "depth", "line_no", "max_body", "max_line", "over")

    def __init__(self, max_line: int = constants.MAX_LINE_BYTES, max_body: int | None = None,
                 depth: int = constants.PENDING_CHUNKS) -> None:
        self.max_line = max_line
        self.max_body = max_body
        # Answers-to-be a reader may queue before it waits for the writer: when the
        # client does not read its answers, we stop reading its lines.
        self.depth = depth
        self.line_no = 0  # the last line framed
        self.over = False  # past max_body: nothing more is framed
        self._pending = bytearray()
        self._discarding = False  # inside a line over the limit: dropped to its end
        self._total = 0
        self._issued = 0  # answer slots handed out
        self._next = 0  # the next slot to release
        self._answers: dict[int, bytes] = {}  # answered, waiting for an earlier slot

    @property
    def tail(self) -> int:
        """Bytes of the line still arriving."""
        return len(self._pending)

    def receive(self, chunk: bytes) -> list[Frame]:
        """What `chunk` completes, in line order."""
        if self.over:
            return []
        self._total += len(chunk)
        if self.max_body is not None and self._total > self.max_body:
            self.over = True
            self._pending.clear()
            return [OverBody(self.line_no, self.max_body)]
        frames: list[Frame] = []
        if self._discarding:
            newline = chunk.find(b"\n")
            if newline < 0:
                return frames
            self._discarding = False
            self.line_no += 1
            chunk = chunk[newline + 1:]
            frames.append(TooLong(self.line_no, len(chunk)))
        last = chunk.rfind(b"\n")
        if last < 0:
            self._pending += chunk
        else:
            pending = self._pending
            block = bytes(pending) + chunk[:last] if pending else chunk[:last]
            self._pending = bytearray(chunk[last + 1:])
            lines = Lines(self.line_no + 1, block, len(self._pending))
            self.line_no = lines.last
            frames.append(lines)
        if len(self._pending) > self.max_line:
            self._pending = bytearray()
            self._discarding = True
        return frames

    def end(self, last_line: bool = True) -> list[Frame]:
        """The input ended: a line over the limit that never ended is still answered;
        a last line without its newline is still a request, unless `last_line` is
        False (the connection was cut while the client was sending it)."""
        frames: list[Frame] = []
        if self.over:
            return frames
        if self._discarding:
            frames.append(TooLong(self.line_no + 1, 0))
        elif last_line and self._pending.strip():
            frames.append(Lines(self.line_no + 1, bytes(self._pending), 0))
        self._pending = bytearray()
        self._discarding = False
        return frames

    def slot(self) -> int:
        """A place in the answer order, taken when a request's answer-to-be is queued."""
        self._issued += 1
        return self._issued - 1

    def answer(self, slot: int, data: bytes) -> bytes:
        """Record the answer of `slot` (in any order); returns what may be sent now:
        the answers of every slot up to the first still unanswered, in slot order."""
        if not self._next <= slot < self._issued or slot in self._answers:
            raise ValueError(f"slot {slot} was not given out, or is answered already")
        self._answers[slot] = data
        out = []
        while self._next in self._answers:
            out.append(self._answers.pop(self._next))
            self._next += 1
        return b"".join(out)

    @property
    def unanswered(self) -> int:
        """Slots given out and not yet released: the pipelining depth in use."""
        return self._issued - self._next
