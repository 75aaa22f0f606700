"""The engine behind ``Client(xedu_url=…)``: a teacher's server, ours or an old XEduLLM one.

Which it is is found on the first request (the Client's constructor does no network I/O) by
``protocols.gradio.ServerProbe`` and kept for the Client's life. Against our own server that
costs one small GET, on a connection the answer then reuses; everything after goes straight to
the OpenAI-compatible engine. An old Gradio server gets the queue engine instead.
"""
from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator, Iterator, List, Optional

from .. import errors as E
from ..protocols import adapter_for
from ..protocols.gradio import GradioApp, ServerProbe
from ..types import ChatChunk, ChatRequest, ChatResult, EmbeddingResult, HTTPRequest
from .engine import Engine
from .gradio_queue import GradioQueueEngine
from .http import HTTPEngine, _RetryPlan
from .wire import WireError


class ClassroomEngine:
    def __init__(self, openai_engine: HTTPEngine) -> None:
        self._openai = openai_engine
        # Client(xedu_url=…) points its OpenAI engine at {xedu_url}/v1.
        base = openai_engine.conn.base_url
        self.root = base[:-len("/v1")] if base.endswith("/v1") else base
        self._chosen: Optional[Engine] = None

    def _choose(self, found: object) -> Engine:
        if isinstance(found, GradioApp):
            return GradioQueueEngine(adapter_for("gradio", None), self._openai.conn, found,
                                     timeout=self._openai.timeout, max_retries=self._openai.max_retries)
        return self._openai

    def _probe_error(self, exc: WireError) -> E.LLMError:
        return self._openai._scrub(self._openai._network_error(exc))

    def _engine(self) -> Engine:
        plan = _RetryPlan(self._openai)
        while self._chosen is None:
            probe = ServerProbe(self.root)
            try:
                request = probe.next_request()
                while request is not None:
                    answer = self._openai.wire.request(request)
                    probe.receive(answer.status, answer.headers, answer.content)
                    request = probe.next_request()
                self._chosen = self._choose(probe.result)
            except WireError as exc:
                err = self._probe_error(exc)
                delay = plan.delay_after(err)
                if delay is None:
                    raise err from None
                time.sleep(delay)
        return self._chosen

    async def _aengine(self) -> Engine:
        plan = _RetryPlan(self._openai)
        while self._chosen is None:
            probe = ServerProbe(self.root)
            try:
                request: Optional[HTTPRequest] = probe.next_request()
                while request is not None:
                    answer = await self._openai.awire.request(request)
                    probe.receive(answer.status, answer.headers, answer.content)
                    request = probe.next_request()
                self._chosen = self._choose(probe.result)
            except WireError as exc:
                err = self._probe_error(exc)
                delay = plan.delay_after(err)
                if delay is None:
                    raise err from None
                await asyncio.sleep(delay)
        return self._chosen

    def chat(self, req: ChatRequest) -> ChatResult:
        return self._engine().chat(req)

    def stream(self, req: ChatRequest) -> Iterator[ChatChunk]:
        return self._engine().stream(req)

    async def achat(self, req: ChatRequest) -> ChatResult:
        return await (await self._aengine()).achat(req)

    async def astream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        chunks = (await self._aengine()).astream(req)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()

    def models(self) -> List[str]:
        return self._engine().models()

    def embed(self, texts: List[str], model: str) -> EmbeddingResult:
        return self._engine().embed(texts, model)

    async def aembed(self, texts: List[str], model: str) -> EmbeddingResult:
        return await (await self._aengine()).aembed(texts, model)

    async def amodels(self) -> List[str]:
        return await (await self._aengine()).amodels()

    def close(self) -> None:
        if self._chosen is not None and self._chosen is not self._openai:
            self._chosen.close()
        self._openai.close()

    async def aclose(self) -> None:
        if self._chosen is not None and self._chosen is not self._openai:
            await self._chosen.aclose()
        await self._openai.aclose()
