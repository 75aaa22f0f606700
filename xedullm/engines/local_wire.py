"""The wire between the local engine and its model worker: one JSON object per line.

JSON escapes every newline inside strings, so a line is always one whole message, and a
reader that sees end-of-file knows the other side is gone (the worker's way of learning that
its parent died, and the parent's way of learning that the worker crashed). Both sides are
Python, on every platform, through the plain stdin/stdout pipes of a child process.
"""
from __future__ import annotations

import json
from typing import IO, Any, Dict, Optional


def send(stream: IO[bytes], message: Dict[str, Any]) -> None:
    """Write one message and flush it (raises OSError if the other side is gone)."""
    stream.write(json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")
    stream.flush()


def receive(stream: IO[bytes]) -> Optional[Dict[str, Any]]:
    """The next message, or None once the other side has closed the pipe."""
    line = stream.readline()
    if not line.endswith(b"\n"):  # end of file, or the last line cut short by a crash
        return None
    return json.loads(line)
