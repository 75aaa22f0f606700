"""Talking to an old XEduLLM teacher server (Gradio's queue), sync or async.

The HTTP engine's retries, timeouts, error scrubbing and connection pools are kept; only one
exchange differs: a call is a join POST then an event-stream GET, driven by
``protocols.gradio.QueueCall``. The old server reports no usage, so ``last_usage`` stays None.
"""
from __future__ import annotations

import time
from typing import AsyncIterator, Iterator, List, Optional

from .. import errors as E
from ..protocols.gradio import Conversation, GradioAdapter, GradioApp, QueueCall
from ..sse import SSEDecoder
from ..types import ChatChunk, ChatRequest, ChatResult, Connection
from .http import HTTPEngine
from .wire import WireError


class _QueueReader:
    """Event-stream bytes in, answer chunks out; waiting in the old server's line (its
    ``estimation`` updates) counts as progress, bare heartbeats do not."""

    def __init__(self, call: QueueCall, idle_timeout: float) -> None:
        self.call = call
        self.decoder = SSEDecoder()
        self.idle_timeout = idle_timeout
        self.last_progress = time.monotonic()

    def feed(self, raw: bytes) -> Iterator[ChatChunk]:
        return self._chunks(self.decoder.feed(raw))

    def close(self) -> Iterator[ChatChunk]:
        yield from self._chunks(self.decoder.close())
        self.call.end_of_stream()

    def _chunks(self, events) -> Iterator[ChatChunk]:
        # A generator: the text before an error in the same read reaches the caller first.
        produced = False
        for event in events:
            for chunk in self.call.receive_event(event):
                produced = True
                yield chunk
            if self.call.progressed:
                self.last_progress = time.monotonic()
        if not produced and not self.call.finished and time.monotonic() - self.last_progress > self.idle_timeout:
            raise E.APITimeoutError(
                provider=self.call.app.root,
                detail=f"{self.idle_timeout:g} 秒内没有收到内容（只有保活信号）/ no content for "
                       f"{self.idle_timeout:g}s (heartbeats only)")


class GradioQueueEngine(HTTPEngine):
    def __init__(self, adapter: GradioAdapter, conn: Connection, app: GradioApp, *, timeout: float = 60.0,
                 max_retries: int = 2) -> None:
        super().__init__(adapter, conn, timeout=timeout, max_retries=max_retries)
        self.app = app
        # One conversation per Client, as the old server keeps one per session (protocols/gradio.py).
        self.conversation = Conversation()

    # HTTPEngine's chat/stream/achat/astream retry around these four.
    def _chat_once(self, req: ChatRequest, token: Optional[str]) -> ChatResult:
        return self._result("".join(chunk.text for chunk in self._stream_once(req, token)))

    def _stream_once(self, req: ChatRequest, token: Optional[str]) -> Iterator[ChatChunk]:
        call = self.adapter.queue_call(self.app, req, self.conversation)
        try:
            join = call.join_request()
            answer = self.wire.request(join)
            call.receive_join(answer.status, answer.headers, answer.content)
            data = call.data_request()
            with self.wire.open(data) as reply:
                if not reply.is_success:
                    raise self.adapter.parse_error(reply.status, reply.headers, reply.read())
                reader = _QueueReader(call, self.timeout)
                # Read on after the answer (only close_stream follows), so the connection is reused.
                for raw in reply.pieces():
                    yield from reader.feed(raw)
                yield from reader.close()
        except WireError as exc:
            if not call.finished:
                raise self._network_error(exc) from None

    async def _achat_once(self, req: ChatRequest, token: Optional[str]) -> ChatResult:
        chunks = self._astream_once(req, token)
        try:
            return self._result("".join([chunk.text async for chunk in chunks]))
        finally:
            await chunks.aclose()

    async def _astream_once(self, req: ChatRequest, token: Optional[str]) -> AsyncIterator[ChatChunk]:
        call = self.adapter.queue_call(self.app, req, self.conversation)
        try:
            join = call.join_request()
            answer = await self.awire.request(join)
            call.receive_join(answer.status, answer.headers, answer.content)
            data = call.data_request()
            async with self.awire.open(data) as reply:
                if not reply.is_success:
                    raise self.adapter.parse_error(reply.status, reply.headers, await reply.read())
                reader = _QueueReader(call, self.timeout)
                async for raw in reply.pieces():
                    for chunk in reader.feed(raw):
                        yield chunk
                for chunk in reader.close():
                    yield chunk
        except WireError as exc:
            if not call.finished:
                raise self._network_error(exc) from None

    def _result(self, text: str) -> ChatResult:
        return ChatResult(text=text, finish_reason="stop", model=self.app.model)

    def models(self) -> List[str]:
        """The model the old server's page shows (it has no list)."""
        return [self.app.model] if self.app.model else []

    async def amodels(self) -> List[str]:
        return self.models()
