"""What every fake shares: lifecycle, request/usage records, counters, the deterministic
answer, and delivery of an answer through the fault switches.

A protocol module supplies a ``Wire`` (how its answer and errors look as bytes); the
``FakeServer`` decides when and how those bytes go out.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Tuple, Union

from .faults import Fault
from .server_thread import ServerThread

Reply = Union[None, str, Callable[[List[Dict[str, Any]]], str]]

PIECE_CHARS = 4
# Placeholder a Wire puts where invalid UTF-8 must go; ``corrupt`` swaps in the bad bytes.
BAD_UTF8_MARK = "\ue000"
_BAD_BYTES = b"\xff\xfe"
_ABORT = object()
# Sleeps up to this long are plain asyncio sleeps (see FakeServer._sleep).
_SHORT_SLEEP = 1.0


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def corrupt(data: bytes) -> bytes:
    return data.replace(BAD_UTF8_MARK.encode("utf-8"), _BAD_BYTES)


def content_text(content: Any) -> str:
    """Text of a message ``content``: a string, or OpenAI-style parts with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


# What a picture costs in prompt tokens at the fakes (OpenAI's price of one low-detail image).
IMAGE_TOKENS = 85
EMBEDDING_DIMS = 64


def content_images(content: Any) -> int:
    """Pictures in a message ``content``: OpenAI's ``image_url`` parts or DashScope's ``image``."""
    if not isinstance(content, list):
        return 0
    return sum(1 for p in content if isinstance(p, dict) and (p.get("type") == "image_url" or "image" in p))


def fake_embedding(text: str, dims: int = EMBEDDING_DIMS) -> List[float]:
    """A deterministic unit vector from the text's characters and character pairs, so that
    texts sharing words come out close (cosine similarity works as with a real model)."""
    import zlib

    vector = [0.0] * dims
    grams = list(text) + [text[i:i + 2] for i in range(len(text) - 1)]
    for gram in grams:
        if gram.strip():
            vector[zlib.crc32(gram.encode("utf-8")) % dims] += 1.0
    norm = sum(x * x for x in vector) ** 0.5 or 1.0
    return [x / norm for x in vector]


def split_pieces(text: str, size: int = PIECE_CHARS) -> List[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


@dataclass
class Answer:
    """The deterministic reply to one request, and the usage it reports."""

    pieces: List[str]
    reasoning: List[str]
    prompt_tokens: int
    # OpenAI-shaped calls ({id, type, function: {name, arguments}}) when the fake answers a
    # request that offered tools by calling them (openai_fake.py); then there are no pieces.
    tool_calls: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def reasoning_text(self) -> str:
        return "".join(self.reasoning)

    @property
    def completion_tokens(self) -> int:
        calls = sum(len(split_pieces(c["function"]["arguments"])) for c in self.tool_calls)
        return len(self.pieces) + len(self.reasoning) + calls

    def usage(self, completion: Optional[int] = None) -> Dict[str, int]:
        done = self.completion_tokens if completion is None else completion
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": done,
                "total_tokens": self.prompt_tokens + done}


class Wire:
    """How one protocol renders an answer and its errors. ``ctx`` is the protocol's own
    per-request context; ``usage`` values are unified ``prompt/completion/total`` dicts."""

    stream_media_type = "text/event-stream"
    # ERNIE answers a stream request that fails at once with a JSON body, not SSE.
    stream_error_as_body = False

    def preamble(self, ctx: Any) -> List[bytes]:
        return []

    def comment(self, ctx: Any) -> bytes:
        return b": keep-alive\n\n"

    def done(self, ctx: Any) -> Optional[bytes]:
        return None

    def headers(self, ctx: Any) -> Dict[str, str]:
        return {}

    def stream_frames(self, ctx: Any, answer: Answer) -> List[Tuple[bytes, Optional[dict]]]:
        raise NotImplementedError

    def malformed_frame(self, ctx: Any, index: int) -> bytes:
        raise NotImplementedError

    def invalid_utf8_frame(self, ctx: Any, index: int) -> bytes:
        raise NotImplementedError

    def error_frame(self, ctx: Any, index: int, code: Any, message: Optional[str]) -> bytes:
        raise NotImplementedError

    def body(self, ctx: Any, answer: Answer) -> bytes:
        raise NotImplementedError

    def error_body(self, ctx: Any, code: Any, message: Optional[str]) -> bytes:
        """An HTTP 200 body that carries an error."""
        raise NotImplementedError

    def error_response(self, ctx: Any, kind: str,
                       status: Optional[int]) -> Tuple[int, Any, Dict[str, str]]:
        """(status, JSON body, headers) for kind 'status' | 'quota' | 'rate_limited'."""
        raise NotImplementedError


class _Abort(Exception):
    """Raised after the response started: uvicorn then closes the transport without
    ending the body, which is exactly a mid-stream disconnect."""


class _HideAbort(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _Abort)


_filter_lock = threading.Lock()
_filter_installed = False


def _install_log_filter() -> None:
    global _filter_installed
    with _filter_lock:
        if not _filter_installed:
            logging.getLogger("uvicorn.error").addFilter(_HideAbort())
            _filter_installed = True


class WireResponse:
    """An ASGI response fed by an async generator of bytes (``_ABORT`` drops the
    connection). It watches for the client going away and then cancels the generator."""

    def __init__(self, fake: "FakeServer", status: int, headers: Dict[str, str],
                 body: AsyncIterator[Any], *, stream: bool = False,
                 content_length: Optional[int] = None) -> None:
        self.fake = fake
        self.status = status
        items = dict(headers)
        if content_length is not None:
            items["content-length"] = str(content_length)
        self.raw_headers = [(k.lower().encode("latin-1"), str(v).encode("latin-1"))
                            for k, v in items.items()]
        self.body = body
        self.stream = stream

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        started = False

        async def start() -> None:
            nonlocal started
            started = True
            if self.stream:
                self.fake._stream_opened()
            await send({"type": "http.response.start", "status": self.status,
                        "headers": self.raw_headers})

        async def pump() -> None:
            try:
                async for item in self.body:
                    if item is _ABORT:
                        raise _Abort()
                    if not started:
                        await start()
                    if item:
                        await send({"type": "http.response.body", "body": item,
                                    "more_body": True})
                if not started:
                    await start()
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                await self.body.aclose()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        pump_task = asyncio.ensure_future(pump())
        watch_task = asyncio.ensure_future(watch())
        outcome = "aborted"
        try:
            await asyncio.wait({pump_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
            if pump_task.done():
                pump_task.result()
                outcome = "completed"
            else:
                outcome = "cancelled"
        finally:
            for task in (pump_task, watch_task):
                task.cancel()
            await asyncio.gather(pump_task, watch_task, return_exceptions=True)
            if started and self.stream:
                self.fake._stream_closed(outcome)


def _encode(body: Any) -> bytes:
    """dict/list -> JSON; str/bytes are sent as given (a fault's raw body)."""
    if isinstance(body, bytes):
        return body
    return body.encode("utf-8") if isinstance(body, str) else dumps(body)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class FakeServer:
    """Base of the fakes. See ``xedullm.testing`` for the public API."""

    _base_path = ""

    def __init__(self, *, reply: Reply = None, token_delay: float = 0.0,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.reply = reply
        self.token_delay = token_delay
        self.host = host
        self.port_requested = port
        self.faults: List[Fault] = []
        self.requests: List[Dict[str, Any]] = []
        self.usage_log: List[Dict[str, int]] = []
        self.active_streams = 0
        self.max_active_streams = 0
        self.streams_completed = 0
        self.streams_cancelled = 0
        self._runner: Optional[ServerThread] = None
        self._closing: Optional[asyncio.Event] = None
        self._cond = threading.Condition()
        self._counter = 0

    # -- lifecycle ---------------------------------------------------------------------
    def _routes(self) -> list:
        raise NotImplementedError

    def _is_chat(self, path: str) -> bool:
        raise NotImplementedError

    def start(self) -> "FakeServer":
        from starlette.applications import Starlette

        _install_log_filter()
        self._closing = None
        app = Starlette(routes=self._routes())
        self._runner = ServerThread(app, host=self.host, port=self.port_requested).start()
        return self

    def stop(self) -> None:
        if self._runner is None:
            return
        # Wake every fault sleep so in-flight responses finish and shutdown is quick.
        self._runner.call_soon(lambda: self._closing_event().set())
        self._runner.stop()

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._runner is None:
            raise RuntimeError("fake server not started / 假服务器尚未启动：先调用 start()")
        return self._runner.port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (host root)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + self._base_path

    # -- records and counters ----------------------------------------------------------
    @property
    def active_connections(self) -> int:
        return self._runner.connections if self._runner is not None else 0

    @property
    def chat_requests(self) -> List[Dict[str, Any]]:
        return [r for r in list(self.requests) if self._is_chat(r["path"])]

    def reset(self) -> None:
        """Forget records, pending faults and finished-stream counters."""
        self.faults.clear()
        self.requests.clear()
        self.usage_log.clear()
        self.max_active_streams = self.active_streams
        self.streams_completed = 0
        self.streams_cancelled = 0

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Block until ``predicate()`` is true (re-checked on every server event and at
        least every 20 ms); False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.02))
        return True

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _stream_opened(self) -> None:
        self.active_streams += 1
        self.max_active_streams = max(self.max_active_streams, self.active_streams)
        self._notify()

    def _stream_closed(self, outcome: str) -> None:
        self.active_streams -= 1
        if outcome == "completed":
            self.streams_completed += 1
        elif outcome == "cancelled":
            self.streams_cancelled += 1
        self._notify()

    def _report_usage(self, entry: Optional[Dict[str, int]],
                      usage: Dict[str, int]) -> Dict[str, int]:
        """Log usage as it goes on the wire; a request's later reports (DashScope and ERNIE
        repeat running totals) update its one entry in place."""
        if entry is None:
            entry = dict(usage)
            self.usage_log.append(entry)
        else:
            entry.update(usage)
        self._notify()
        return entry

    async def _record(self, request: Any) -> Tuple[Dict[str, Any], Any]:
        """Record the request; return it and its JSON body (None if absent or invalid)."""
        raw = await request.body()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        record = {"method": request.method, "path": request.url.path,
                  "query": dict(request.query_params), "headers": dict(request.headers),
                  "json": data, "body": raw,
                  # (host, port) of the caller: equal ports mean a reused connection
                  "client": tuple(request.client) if request.client else None}
        self.requests.append(record)
        self._notify()
        return record, data

    def _take_fault(self) -> Fault:
        try:
            return self.faults.pop(0)
        except IndexError:
            return Fault()

    def _next_id(self) -> int:
        self._counter += 1
        return self._counter

    # -- the answer ----------------------------------------------------------------------
    def _answer(self, messages: List[Dict[str, Any]], fault: Fault,
                reasoning: bool = False) -> Answer:
        last_user, pictures = "", 0
        for m in messages:
            if isinstance(m, dict) and m.get("role") == "user":
                last_user = content_text(m.get("content"))
                pictures = content_images(m.get("content"))
        if fault.huge_chars is not None:
            text = ("很长的回答。long answer. " * (fault.huge_chars // 10 + 1))[:fault.huge_chars]
            pieces = split_pieces(text, max(1, fault.huge_piece_chars))
        else:
            if callable(self.reply):
                text = self.reply(messages)
            elif isinstance(self.reply, str):
                text = self.reply
            else:
                text = "你好！你刚才说：" + last_user
                if pictures:
                    text = f"我看到了 {pictures} 张图片。" + text
            pieces = split_pieces(text)
        thoughts = split_pieces("（思考）用户说：" + last_user) if reasoning else []
        prompt = sum(len(content_text(m.get("content"))) + IMAGE_TOKENS * content_images(m.get("content"))
                     for m in messages if isinstance(m, dict))
        return Answer(pieces=pieces, reasoning=thoughts, prompt_tokens=prompt)

    # -- delivery --------------------------------------------------------------------------
    def _closing_event(self) -> asyncio.Event:
        if self._closing is None:
            self._closing = asyncio.Event()
        return self._closing

    async def _sleep(self, seconds: float) -> None:
        """asyncio sleep that ends early when the server stops."""
        if seconds <= 0:
            return
        closing = self._closing_event()
        if closing.is_set():
            return
        if seconds <= _SHORT_SLEEP:
            # A stream's pace between tokens: a plain sleep, several times cheaper than racing
            # the closing event, and a stopping server waits at most this long for it.
            await asyncio.sleep(seconds)
            return
        try:
            await asyncio.wait_for(closing.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def json_response(self, status: int, body: Any,
                      headers: Optional[Dict[str, str]] = None) -> WireResponse:
        data = _encode(body)
        all_headers = {"content-type": "application/json"}
        all_headers.update(headers or {})
        return WireResponse(self, status, all_headers, _once(data), content_length=len(data))

    def respond(self, wire: Wire, ctx: Any, answer: Answer, fault: Fault,
                stream: bool) -> WireResponse:
        """Deliver ``answer`` (or the fault's error) the way ``fault`` says."""
        if fault.error is not None:
            return self._error_reply(wire, ctx, fault)
        if stream and not (wire.stream_error_as_body and fault.error_frame_at == 0):
            return self._stream_reply(wire, ctx, answer, fault)
        return self._body_reply(wire, ctx, answer, fault)

    def _error_reply(self, wire: Wire, ctx: Any, fault: Fault) -> WireResponse:
        status, body, headers = wire.error_response(ctx, fault.error, fault.status_code)
        if fault.body is not None:
            body = fault.body
        headers = dict(headers)
        headers.update(fault.headers or {})
        data = _encode(body)
        all_headers = {"content-type": "application/json"}
        all_headers.update(headers)

        async def gen() -> AsyncIterator[Any]:
            await self._sleep(fault.stall_seconds)
            yield data

        return WireResponse(self, status, all_headers, gen(), content_length=len(data))

    def _body_reply(self, wire: Wire, ctx: Any, answer: Answer, fault: Fault) -> WireResponse:
        if fault.invalid_utf8_at is not None:
            pieces = list(answer.pieces)
            pieces.insert(min(fault.invalid_utf8_at, len(pieces)), "坏" + BAD_UTF8_MARK + "字")
            answer = Answer(pieces=pieces, reasoning=answer.reasoning,
                            prompt_tokens=answer.prompt_tokens)
        usage: Optional[Dict[str, int]] = answer.usage()
        if fault.error_frame_at is not None:
            body, usage = wire.error_body(ctx, fault.error_code, fault.error_message), None
        else:
            body = wire.body(ctx, answer)
            if fault.invalid_utf8_at is not None:
                body = corrupt(body)
            if fault.malformed_at is not None:
                body, usage = body[:len(body) // 2], None
        body = b"\n" * fault.blank_lines + body
        newline = b"\r\n" if fault.crlf_lines else b"\n"
        body = body.replace(b"\n", newline)
        keepalive = fault.keepalive_seconds > 0

        async def gen() -> AsyncIterator[Any]:
            await self._sleep(fault.stall_seconds)
            await self._sleep(self.token_delay * len(answer.pieces))
            if keepalive:
                deadline = time.monotonic() + fault.keepalive_seconds
                while time.monotonic() < deadline:
                    yield newline
                    await self._sleep(min(fault.keepalive_interval, deadline - time.monotonic()))
            if fault.pause is not None:
                yield b""
                await self._sleep(fault.pause[0])
            if fault.disconnect_at is not None:
                yield body[:len(body) // 2]
                yield _ABORT
            if usage is not None:
                self._report_usage(None, usage)
            yield body

        headers = {"content-type": "application/json"}
        headers.update(wire.headers(ctx))
        length = None if keepalive else len(body)
        return WireResponse(self, 200, headers, gen(), content_length=length)

    def _stream_reply(self, wire: Wire, ctx: Any, answer: Answer, fault: Fault) -> WireResponse:
        frames: List[Tuple[Any, Optional[dict]]] = list(wire.stream_frames(ctx, answer))
        done = None if fault.omit_done else wire.done(ctx)
        if fault.invalid_utf8_at is not None:
            at = min(fault.invalid_utf8_at, len(frames))
            frames.insert(at, (wire.invalid_utf8_frame(ctx, at), None))
        if fault.malformed_at is not None:
            at = min(fault.malformed_at, len(frames))
            frames.insert(at, (wire.malformed_frame(ctx, at), None))
        if fault.error_frame_at is not None:
            at = min(fault.error_frame_at, len(frames))
            frames = frames[:at] + [(wire.error_frame(ctx, at, fault.error_code,
                                                      fault.error_message), None)]
            done = None
        if fault.disconnect_at is not None:
            frames = frames[:fault.disconnect_at] + [(_ABORT, None)]
            done = None

        def wire_bytes(data: bytes) -> bytes:
            return data.replace(b"\n", b"\r\n") if fault.crlf_lines else data

        async def gen() -> AsyncIterator[Any]:
            reported: Optional[Dict[str, int]] = None
            await self._sleep(fault.stall_seconds)
            yield b""
            if fault.blank_lines:
                yield wire_bytes(b"\n" * fault.blank_lines)
            for comment in wire.preamble(ctx):
                yield wire_bytes(comment)
            if fault.keepalive_seconds > 0:
                deadline = time.monotonic() + fault.keepalive_seconds
                while time.monotonic() < deadline:
                    yield wire_bytes(wire.comment(ctx))
                    await self._sleep(min(fault.keepalive_interval,
                                          deadline - time.monotonic()))
            # Tokens come on the provider's own clock: event i is due token_delay * i after the
            # first, however late this process got to the previous one. A real provider's pace
            # does not slow down when the proxy in front of it is busy; a fake that shares the
            # proxy's CPU (benchmarks on one machine) would otherwise let lag add up per token.
            paced_from = time.monotonic()
            for index, (frame, usage) in enumerate(frames):
                if fault.pause is not None and index == fault.pause[1]:
                    await self._sleep(fault.pause[0])
                    paced_from += fault.pause[0]
                if index and self.token_delay:
                    await self._sleep(paced_from + index * self.token_delay - time.monotonic())
                if usage is not None:
                    reported = self._report_usage(reported, usage)
                yield frame if frame is _ABORT else wire_bytes(frame)
            if done is not None:
                yield wire_bytes(done)

        headers = {"content-type": wire.stream_media_type, "cache-control": "no-cache"}
        headers.update(wire.headers(ctx))
        return WireResponse(self, 200, headers, gen(), stream=True)
