"""An incremental Server-Sent Events decoder that follows the spec (protocols.md 0.1).

Feed it bytes as they arrive; it yields complete events. It accepts \\n, \\r\\n and bare \\r
line ends (also split across chunks), comments (``: keep-alive``, ``:HTTP_STATUS/200``),
``data:`` with or without a space, multi-line data, and unknown fields. It never parses JSON:
what a payload means is the adapter's business.
"""
from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from typing import Iterator, List, Optional

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass
class SSEEvent:
    data: str = ""
    event: Optional[str] = None
    id: Optional[str] = None
    retry: Optional[int] = None
    # Comment lines seen since the previous event (DashScope puts ``HTTP_STATUS/400`` here).
    comments: List[str] = field(default_factory=list)


class SSEDecoder:
    def __init__(self) -> None:
        # Invalid UTF-8 must not kill a stream: replace it, as browsers' EventSource does.
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._pending_cr = False
        self._reset()

    def _reset(self) -> None:
        self._data: List[str] = []
        self._event: Optional[str] = None
        self._id: Optional[str] = None
        self._retry: Optional[int] = None
        self._comments: List[str] = []
        self._has_fields = False

    def feed(self, chunk: bytes) -> Iterator[SSEEvent]:
        # Not a generator itself: the bytes are taken in at once, the events come out lazily.
        text = self._utf8.decode(chunk)
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]  # the \n of a \r\n that was split across two chunks
        self._pending_cr = False
        self._buffer += text
        return self._drain_lines()

    def close(self) -> Iterator[SSEEvent]:
        """End of stream: a final event without its blank line is still delivered."""
        self._buffer += self._utf8.decode(b"", final=True)
        if self._buffer:
            self._buffer += "\n"
        yield from self._drain_lines()
        event = self._dispatch()
        if event is not None:
            yield event

    def _drain_lines(self) -> Iterator[SSEEvent]:
        buf = self._buffer
        if "\r" not in buf:
            # The common case (every provider ends lines with \n): a split instead of a regex
            # search per line, and data lines handled inline. A stream's CPU is mostly here.
            *lines, self._buffer = buf.split("\n")
            data = self._data
            for line in lines:
                if line[:5] == "data:":
                    data.append(line[6:] if line[5:6] == " " else line[5:])
                    self._has_fields = True
                elif line:
                    self._line(line)
                else:
                    event = self._dispatch()
                    if event is not None:
                        yield event
                        data = self._data   # _dispatch started a new event
            return
        start = 0
        while True:
            match = _LINE_END.search(buf, start)
            if match is None:
                break
            line = buf[start:match.start()]
            start = match.end()
            if match.group() == "\r" and start == len(buf):
                self._pending_cr = True  # maybe the first half of a \r\n split across chunks
            event = self._line(line)
            if event is not None:
                yield event
        self._buffer = buf[start:]

    def _line(self, line: str) -> Optional[SSEEvent]:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self._comments.append(line[1:].strip())
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_fields = True
        elif name == "event":
            self._event = value
            self._has_fields = True
        elif name == "id":
            self._id = value
            self._has_fields = True
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        # DashScope's SDK also honours ``status:<code>``; keep it as a comment-like hint.
        elif name == "status":
            self._comments.append(f"HTTP_STATUS/{value.strip()}")
        return None

    def _dispatch(self) -> Optional[SSEEvent]:
        if not self._has_fields:
            # A blank line after only comments: keep the comments for the next event.
            return None
        data = self._data
        event = SSEEvent(
            data=data[0] if len(data) == 1 else "\n".join(data), event=self._event, id=self._id,
            retry=self._retry, comments=self._comments,
        )
        self._reset()
        return event
