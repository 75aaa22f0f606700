"""``POST /v1/responses``: OpenAI's Responses API (text subset) through the same door, limits
and ledger as ``/v1/chat/completions``: the request is turned into a chat body
(responses_format.chat_body), answered by the very same chat call, and the call's output is
rewritten on its way out (a Response object, or the Responses stream events).
"""
from __future__ import annotations

import json
from typing import Any, Callable, Dict, List

from starlette.requests import Request

from .body import load_json
from .chat_call import ChatCall
from .connection_guard import SEND_BODY
from .responses_format import EventWriter, Shape, chat_body


async def responses(request: Request) -> Any:
    from .openai_routes import start_chat

    seen: Dict[str, Any] = {}

    def parse(raw: bytes) -> Dict[str, Any]:
        seen["request"] = load_json(raw)
        return chat_body(seen["request"])

    answer = await start_chat(request, parse)
    if not isinstance(answer, ChatCall):   # an error reply: OpenAI's error JSON either way
        return answer
    shape = Shape(seen["request"], answer.model)
    return _AsResponses(answer, shape, bool(seen["request"].get("stream") is True))


class _AsResponses:
    """Runs a chat call, rewriting what it sends (the start through ``send``, the body frames
    through the connection guard's ``SEND_BODY`` shortcut, as the chat call sends them)."""

    def __init__(self, call: Any, shape: Shape, stream: bool) -> None:
        self._call = call
        self._shape = shape
        self._stream = stream

    async def __call__(self, scope: Dict[str, Any], receive: Callable, send: Callable) -> None:
        extensions = dict(scope.get("extensions") or {})
        send_body = extensions.get(SEND_BODY, send)
        rewrite = _StreamRewrite(self._shape, send, send_body) if self._stream else \
            _JsonRewrite(self._shape, send, send_body)
        extensions[SEND_BODY] = rewrite.body
        await self._call(dict(scope, extensions=extensions), receive, rewrite.start)


class _JsonRewrite:
    def __init__(self, shape: Shape, send: Callable, send_body: Callable) -> None:
        self._shape, self._send, self._send_body = shape, send, send_body
        self._start: Dict[str, Any] = {}
        self._pieces: List[bytes] = []

    async def start(self, message: Dict[str, Any]) -> None:
        if message["type"] != "http.response.start":
            await self.body(message)
            return
        self._start = message

    async def body(self, message: Dict[str, Any]) -> None:
        self._pieces.append(message.get("body", b""))
        if message.get("more_body"):
            return
        data = b"".join(self._pieces)
        if self._start.get("status") == 200:
            data = json.dumps(self._shape.from_completion(json.loads(data)), ensure_ascii=False).encode("utf-8")
        headers = [(k, v) for k, v in self._start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(data)).encode()))
        await self._send(dict(self._start, headers=headers))
        await self._send_body({"type": "http.response.body", "body": data, "more_body": False})


class _StreamRewrite:
    def __init__(self, shape: Shape, send: Callable, send_body: Callable) -> None:
        self._writer = EventWriter(shape)
        self._send, self._send_body = send, send_body
        self._passing = False       # an error answered before the stream: passed on as it is
        self._pending = b""

    async def start(self, message: Dict[str, Any]) -> None:
        if message["type"] != "http.response.start":
            await self.body(message)
            return
        self._passing = message.get("status") != 200
        await self._send(message)
        if not self._passing:
            await self._send_body({"type": "http.response.body", "body": self._writer.start(), "more_body": True})

    async def body(self, message: Dict[str, Any]) -> None:
        if self._passing:
            await self._send_body(message)
            return
        self._pending += message.get("body", b"")
        frames = self._pending.split(b"\n\n")
        self._pending = frames.pop()
        out = b"".join(self._frame(frame) for frame in frames)
        more = bool(message.get("more_body"))
        if not more and not self._writer.ended:
            out += self._writer.fail({"message": "回答没有正常结束 / the answer did not end properly",
                                      "code": "stream_interrupted"})
        if out or not more:
            await self._send_body({"type": "http.response.body", "body": out, "more_body": more})

    def _frame(self, frame: bytes) -> bytes:
        if self._writer.ended:
            return b""
        for line in frame.split(b"\n"):
            if line.startswith(b"data: "):
                data = line[6:].strip()
                if data == b"[DONE]":
                    return self._writer.done()
                return self._writer.chunk(json.loads(data))
            if line.startswith(b":"):
                return frame + b"\n\n"          # a keep-alive comment stays one
        return b""
