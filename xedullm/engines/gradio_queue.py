"""Talking to an old XEduLLM teacher server (Gradio's queue) over httpx, sync or async.

The HTTP engine's retries, timeouts, error scrubbing and connection pools are kept; only one
exchange differs: a call is a join POST then an event-stream GET, driven by
``protocols.gradio.QueueCall``. The old server reports no usage, so ``last_usage`` stays None.
"""
from __future__ import annotations

import time
from typing import AsyncIterator, Iterator, List, Optional

import httpx

from .. import errors as E
from ..protocols.gradio import GradioAdapter, GradioApp, QueueCall
from ..sse import SSEDecoder
from ..types import ChatChunk, ChatRequest, ChatResult, Connection
from .http import HTTPEngine


class _QueueReader:
    """Event-stream bytes in, answer chunks out; waiting in the old server's line (its
    ``estimation`` updates) counts as progress, bare heartbeats do not."""

    def __init__(self, call: QueueCall, idle_timeout: float) -> None:
        self.call = call
        self.decoder = SSEDecoder()
        self.idle_timeout = idle_timeout
        self.last_progress = time.monotonic()

    def feed(self, raw: bytes) -> List[ChatChunk]:
        return self._chunks(self.decoder.feed(raw))

    def close(self) -> List[ChatChunk]:
        chunks = self._chunks(self.decoder.close())
        self.call.end_of_stream()
        return chunks

    def _chunks(self, events) -> List[ChatChunk]:
        out: List[ChatChunk] = []
        for event in events:
            out += self.call.receive_event(event)
            if self.call.progressed:
                self.last_progress = time.monotonic()
        if not out and not self.call.finished and time.monotonic() - self.last_progress > self.idle_timeout:
            raise E.APITimeoutError(
                provider=self.call.app.root,
                detail=f"{self.idle_timeout:g} 秒内没有收到内容（只有保活信号）/ no content for "
                       f"{self.idle_timeout:g}s (heartbeats only)")
        return out


class GradioQueueEngine(HTTPEngine):
    def __init__(self, adapter: GradioAdapter, conn: Connection, app: GradioApp, *, timeout: float = 60.0,
                 max_retries: int = 2) -> None:
        super().__init__(adapter, conn, timeout=timeout, max_retries=max_retries)
        self.app = app

    # HTTPEngine's chat/stream/achat/astream retry around these four.
    def _chat_once(self, req: ChatRequest, token: Optional[str]) -> ChatResult:
        return self._result("".join(chunk.text for chunk in self._stream_once(req, token)))

    def _stream_once(self, req: ChatRequest, token: Optional[str]) -> Iterator[ChatChunk]:
        call = self.adapter.queue_call(self.app, req)
        try:
            join = call.join_request()
            response = self.client.request(join.method, join.url, **self._kwargs(join))
            call.receive_join(response.status_code, response.headers, response.content)
            data = call.data_request()
            with self.client.stream(data.method, data.url, **self._kwargs(data)) as response:
                if not response.is_success:
                    raise self.adapter.parse_error(response.status_code, response.headers, response.read())
                reader = _QueueReader(call, self.timeout)
                # Read on after the answer (only close_stream follows), so the connection is reused.
                for raw in response.iter_bytes():
                    yield from reader.feed(raw)
                yield from reader.close()
        except httpx.HTTPError as exc:
            if not call.finished:
                raise self._network_error(exc) from None

    async def _achat_once(self, req: ChatRequest, token: Optional[str]) -> ChatResult:
        chunks = self._astream_once(req, token)
        try:
            return self._result("".join([chunk.text async for chunk in chunks]))
        finally:
            await chunks.aclose()

    async def _astream_once(self, req: ChatRequest, token: Optional[str]) -> AsyncIterator[ChatChunk]:
        call = self.adapter.queue_call(self.app, req)
        try:
            join = call.join_request()
            response = await self.aclient.request(join.method, join.url, **self._kwargs(join))
            call.receive_join(response.status_code, response.headers, response.content)
            data = call.data_request()
            async with self.aclient.stream(data.method, data.url, **self._kwargs(data)) as response:
                if not response.is_success:
                    raise self.adapter.parse_error(response.status_code, response.headers, await response.aread())
                reader = _QueueReader(call, self.timeout)
                async for raw in response.aiter_bytes():
                    for chunk in reader.feed(raw):
                        yield chunk
                for chunk in reader.close():
                    yield chunk
        except httpx.HTTPError as exc:
            if not call.finished:
                raise self._network_error(exc) from None

    def _result(self, text: str) -> ChatResult:
        return ChatResult(text=text, finish_reason="stop", model=self.app.model)

    def models(self) -> List[str]:
        """The model the old server's page shows (it has no list)."""
        return [self.app.model] if self.app.model else []

    async def amodels(self) -> List[str]:
        return self.models()
