"""Sends what adapters build, sync or async: timeouts, retries with backoff, SSE decoding,
ERNIE's token step, and key redaction of every error on its way out.

The bytes travel on the wires (``sync_wire``: urllib3, ``async_wire``: aiohttp), each opened at
the first request that needs it and imported nowhere on the path of ``from xedullm import
Client``, so the library stays quick to import.
"""
from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import TYPE_CHECKING, AsyncIterator, Dict, Iterator, List, Mapping, Optional, Tuple

from .. import errors as E
from ..keys import redact
from ..protocols.adapter import STREAM_END, Adapter
from ..sse import SSEDecoder
from ..types import ChatChunk, ChatRequest, ChatResult, Connection, EmbeddingResult
from .wire import WireError, is_stream

if TYPE_CHECKING:
    from .async_wire import AsyncWire
    from .sync_wire import SyncWire

_BACKOFF_START, _BACKOFF_CAP = 0.5, 8.0
# A Retry-After longer than this is not waited for: the caller gets the RateLimitError now.
_MAX_RETRY_AFTER = 60.0
_TOKEN_REFRESH_MARGIN = 300.0

TokenKey = Tuple[str, str, str]   # (base URL, API Key, Secret Key)


class _TokenCache:
    """ERNIE access tokens, shared by every client in the process and fetched once per
    credentials however many calls need one at the same moment.

    Callers check ``fresh`` without a lock (the common case), then take the lock for their
    credentials and check again before fetching: threads share a ``threading.Lock``; coroutines
    share an ``asyncio.Lock`` of their own event loop, since an asyncio lock works only inside
    the loop it was first used in (each ``asyncio.run`` makes a new loop).
    """

    def __init__(self) -> None:
        self._tokens: Dict[TokenKey, Tuple[str, float]] = {}
        self._guard = threading.Lock()   # for check-then-change steps; never held across I/O
        self._thread_locks: Dict[TokenKey, threading.Lock] = {}
        self._loop_locks: Dict[asyncio.AbstractEventLoop, Dict[TokenKey, asyncio.Lock]] = {}

    def fresh(self, key: TokenKey) -> Optional[str]:
        cached = self._tokens.get(key)
        if cached and cached[1] - time.time() > _TOKEN_REFRESH_MARGIN:
            return cached[0]
        return None

    def current(self, key: TokenKey) -> Optional[str]:
        """The token held for ``key``, fresh or not (for redaction)."""
        cached = self._tokens.get(key)
        return cached[0] if cached else None

    def store(self, key: TokenKey, token: str, expires_in: float) -> None:
        with self._guard:
            self._tokens[key] = (token, time.time() + expires_in)

    def forget(self, key: TokenKey, token: Optional[str]) -> None:
        """Drop ``token`` after the provider refused it (110/111), unless another call has
        already replaced it: that newer token is the refresh this call needs too."""
        with self._guard:
            cached = self._tokens.get(key)
            if cached and cached[0] == token:
                del self._tokens[key]

    def clear(self) -> None:
        self._tokens.clear()

    def thread_lock(self, key: TokenKey) -> threading.Lock:
        with self._guard:
            return self._thread_locks.setdefault(key, threading.Lock())

    def loop_lock(self, key: TokenKey) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._guard:
            locks = self._loop_locks.get(loop)
            if locks is None:
                # A closed loop will never wait on its locks again: let them go.
                for old in [old for old in self._loop_locks if old.is_closed()]:
                    del self._loop_locks[old]
                locks = self._loop_locks[loop] = {}
            return locks.setdefault(key, asyncio.Lock())


_token_cache = _TokenCache()


class _StreamReader:
    """Bytes of one 2xx streamed response in, ChatChunks out; enforces the idle timeout.

    Comment lines (keep-alives) do not count as progress: a server that only says
    ': keep-alive' for longer than the timeout gets an APITimeoutError.
    """

    def __init__(self, adapter: Adapter, idle_timeout: float) -> None:
        self.adapter = adapter
        self.decoder = SSEDecoder()
        self.idle_timeout = idle_timeout
        self.last_progress = time.monotonic()
        self.finished = False      # the provider's end marker ([DONE]) arrived
        self.saw_finish = False    # a chunk said how the answer ended (finish_reason)

    def feed(self, raw: bytes) -> Iterator[ChatChunk]:
        return self._chunks(self.decoder.feed(raw))

    def close(self) -> Iterator[ChatChunk]:
        yield from self._chunks(self.decoder.close())
        if not self.finished and not self.saw_finish:
            # The body ended (the connection closed) without [DONE] or a finish reason: the
            # answer is cut, never complete (a body delimited by connection close ends "cleanly").
            raise E.StreamInterruptedError(provider=self.adapter.provider_name)

    def _chunks(self, events) -> Iterator[ChatChunk]:
        # A generator, so that the chunks before an in-stream error (one read may bring both)
        # reach the caller before the error does: text the student has seen is never retried.
        # Pieces of plain text that arrived in the same read are joined into one chunk: a
        # caller that has fallen behind (a server under a whole class) then handles, frames
        # and sends each read once instead of once per piece; one that keeps up sees no change.
        produced = False
        held: Optional[ChatChunk] = None
        for event in events:
            try:
                result = self.adapter.parse_event(event)
            except Exception:
                if held is not None:
                    yield held
                raise
            if result is STREAM_END:
                self.finished = True
                break
            if result is None:
                continue
            self.last_progress = time.monotonic()
            produced = True
            self.saw_finish = self.saw_finish or result.finish_reason is not None
            if held is not None:
                if _plain(result) and bool(result.text) == bool(held.text):
                    held.text += result.text
                    held.reasoning += result.reasoning
                    continue
                yield held
                held = None
            if _plain(result):
                held = result
            else:
                yield result
        if held is not None:
            yield held
        if not produced and not self.finished and time.monotonic() - self.last_progress > self.idle_timeout:
            raise E.APITimeoutError(
                provider=self.adapter.provider_name,
                detail=f"{self.idle_timeout:g} 秒内没有收到内容（只有保活信号）/ no content for {self.idle_timeout:g}s (keep-alives only)",
            )


def _plain(chunk: ChatChunk) -> bool:
    """Only answer text, or only reasoning: what can be joined with its neighbour of the same kind."""
    return (bool(chunk.text) != bool(chunk.reasoning) and chunk.finish_reason is None and chunk.usage is None
            and not chunk.tool_calls and chunk.logprobs is None and chunk.provider is None)


class _AnswerBody:
    """Collects the body of a 2xx non-stream answer. Leading whitespace (DeepSeek sends
    blank lines while it works) is not progress: if nothing else arrives within ``timeout``
    it is an APITimeoutError, as for a stream that only sends keep-alives."""

    def __init__(self, provider: str, timeout: float) -> None:
        self.provider, self.timeout = provider, timeout
        self.started, self.answering = time.monotonic(), False
        self.parts: List[bytes] = []

    def feed(self, raw: bytes) -> None:
        self.parts.append(raw)
        if not self.answering:
            self.answering = bool(raw.strip())
            if not self.answering and time.monotonic() - self.started > self.timeout:
                raise E.APITimeoutError(
                    provider=self.provider,
                    detail=f"{self.timeout:g} 秒内没有收到回答（只有空行）/ no answer for {self.timeout:g}s (blank lines only)",
                )

    @property
    def body(self) -> bytes:
        return b"".join(self.parts)


class HTTPEngine:
    """One provider endpoint and credentials; the engine behind a remote ``Client``."""

    def __init__(self, adapter: Adapter, conn: Connection, *, timeout: float = 60.0,
                 max_retries: int = 2) -> None:
        self.adapter = adapter
        self.conn = conn
        self.timeout = float(timeout)
        self.max_retries = max(0, int(max_retries))
        self._wire: Optional["SyncWire"] = None
        self._awire: Optional["AsyncWire"] = None

    # -- plumbing ---------------------------------------------------------------------
    @property
    def wire(self) -> "SyncWire":
        if self._wire is None:
            from .sync_wire import SyncWire

            self._wire = SyncWire(self.timeout)
        return self._wire

    @property
    def awire(self) -> "AsyncWire":
        if self._awire is None:
            from .async_wire import AsyncWire

            self._awire = AsyncWire(self.timeout)
        return self._awire

    def close(self) -> None:
        if self._wire is not None:
            self._wire.close()
            self._wire = None

    async def aclose(self) -> None:
        if self._awire is not None:
            await self._awire.aclose()
            self._awire = None

    def _secrets(self) -> List[str]:
        secrets = self.conn.secrets()
        token = _token_cache.current(self._token_key())
        if token:
            secrets.append(token)
        return secrets

    def _scrub(self, err: E.LLMError) -> E.LLMError:
        """No key (nor ERNIE token) may leave in an error, whatever the provider echoed."""
        secrets = self._secrets()
        err.message = redact(err.message, secrets)
        err.detail = redact(err.detail, secrets) if err.detail else err.detail
        err.args = (err.message,)
        return err

    def _network_error(self, exc: WireError) -> E.LLMError:
        cls = E.APITimeoutError if exc.timed_out else E.APIConnectionError
        return cls(provider=self.adapter.provider_name, detail=str(exc))

    def _retry_delay(self, err: E.LLMError, attempt: int) -> Optional[float]:
        """Seconds to wait before the next attempt, or None to give up."""
        if not err.retryable or attempt >= self.max_retries:
            return None
        if err.retry_after is not None:
            return err.retry_after if err.retry_after <= _MAX_RETRY_AFTER else None
        backoff = min(_BACKOFF_CAP, _BACKOFF_START * (2 ** attempt))
        return backoff * random.uniform(0.75, 1.0)

    def _status_error(self, status: int, headers: Mapping[str, str], body: bytes) -> E.LLMError:
        err = self.adapter.parse_error(status, headers, body)
        should_retry = headers.get("x-should-retry")
        if should_retry in ("true", "false"):
            err.retryable = should_retry == "true"
        return err

    # -- ERNIE token ------------------------------------------------------------------
    def _token_key(self) -> TokenKey:
        return (self.conn.base_url, self.conn.api_key or "", self.conn.secret_key or "")

    def _store_token(self, status: int, content: bytes) -> str:
        token, expires_in = self.adapter.parse_token(status, content)
        _token_cache.store(self._token_key(), token, expires_in)
        return token

    def _token(self) -> Optional[str]:
        if not self.adapter.uses_token:
            return None
        key = self._token_key()
        token = _token_cache.fresh(key)
        if token is not None:
            return token
        with _token_cache.thread_lock(key):
            token = _token_cache.fresh(key)   # another thread may have fetched it meanwhile
            if token is None:
                try:
                    answer = self.wire.request(self.adapter.token_request(self.conn))
                except WireError as exc:
                    raise self._network_error(exc) from None
                token = self._store_token(answer.status, answer.content)
            return token

    async def _atoken(self) -> Optional[str]:
        if not self.adapter.uses_token:
            return None
        key = self._token_key()
        token = _token_cache.fresh(key)
        if token is not None:
            return token
        async with _token_cache.loop_lock(key):
            token = _token_cache.fresh(key)   # another task may have fetched it meanwhile
            if token is None:
                try:
                    answer = await self.awire.request(self.adapter.token_request(self.conn))
                except WireError as exc:
                    raise self._network_error(exc) from None
                token = self._store_token(answer.status, answer.content)
            return token

    # -- sync -------------------------------------------------------------------------
    def chat(self, req: ChatRequest) -> ChatResult:
        self.adapter.check_request(req)   # before a token is fetched for it
        plan = _RetryPlan(self)
        while True:
            try:
                return self._chat_once(req, plan.token())
            except E.LLMError as err:
                delay = plan.delay_after(err)
                if delay is None:
                    raise self._scrub(err) from None
                time.sleep(delay)

    def _chat_once(self, req: ChatRequest, token: Optional[str]) -> ChatResult:
        request = self.adapter.chat_request(req, self.conn, token)
        try:
            with self.wire.open(request) as reply:
                if not reply.is_success:
                    raise self._status_error(reply.status, reply.headers, reply.read())
                answer = _AnswerBody(self.adapter.provider_name, self.timeout)
                for raw in reply.pieces():
                    answer.feed(raw)
        except WireError as exc:
            raise self._network_error(exc) from None
        return self.adapter.parse_chat(answer.body)

    def stream(self, req: ChatRequest) -> Iterator[ChatChunk]:
        self.adapter.check_request(req)   # before a token is fetched for it
        plan = _RetryPlan(self)
        while True:
            yielded = False
            try:
                for chunk in self._stream_once(req, plan.token()):
                    yielded = yielded or bool(chunk.text or chunk.reasoning)
                    yield chunk
                return
            except E.LLMError as err:
                delay = plan.delay_after(err, yielded)
                if delay is None:
                    raise self._scrub(err) from None
                time.sleep(delay)

    def _stream_once(self, req: ChatRequest, token: Optional[str]) -> Iterator[ChatChunk]:
        request = self.adapter.chat_request(req, self.conn, token)
        reader = _StreamReader(self.adapter, self.timeout)
        try:
            with self.wire.open(request) as reply:
                if not reply.is_success:
                    raise self._status_error(reply.status, reply.headers, reply.read())
                if not is_stream(reply.headers):
                    # Errors on a stream request may come back as a plain JSON body (ERNIE).
                    yield _as_chunk(self.adapter.parse_chat(reply.read()))
                    return
                for raw in reply.pieces():
                    # After [DONE] the rest of the body is still read: leaving it unread closes
                    # the connection, and every answer would pay a new TLS handshake.
                    if not reader.finished:
                        yield from reader.feed(raw)
                if not reader.finished:
                    yield from reader.close()
        except WireError as exc:
            if not reader.finished:  # a hiccup after [DONE] loses nothing
                raise self._network_error(exc) from None

    def models(self) -> List[str]:
        request = self.adapter.models_request(self.conn, self._token())
        if request is None:
            return []
        try:
            answer = self.wire.request(request)
        except WireError as exc:
            raise self._scrub(self._network_error(exc)) from None
        if not answer.is_success:
            raise self._scrub(self._status_error(answer.status, answer.headers, answer.content))
        return self.adapter.parse_models(answer.content)

    def embed(self, texts: List[str], model: str) -> EmbeddingResult:
        plan = _RetryPlan(self)
        while True:
            try:
                request = self.adapter.embeddings_request(texts, model, self.conn, plan.token())
                try:
                    answer = self.wire.request(request)
                except WireError as exc:
                    raise self._network_error(exc) from None
                return self._embeddings(answer, len(texts))
            except E.LLMError as err:
                delay = plan.delay_after(err)
                if delay is None:
                    raise self._scrub(err) from None
                time.sleep(delay)

    def _embeddings(self, answer, count: int) -> EmbeddingResult:
        if not answer.is_success:
            raise self._status_error(answer.status, answer.headers, answer.content)
        result = self.adapter.parse_embeddings(answer.content)
        if len(result.vectors) != count:
            raise E.ServerError(provider=self.adapter.provider_name,
                                detail=f"要了 {count} 个向量，收到 {len(result.vectors)} 个 / asked for {count} "
                                       f"vectors, got {len(result.vectors)}")
        return result

    # -- async ------------------------------------------------------------------------
    async def aembed(self, texts: List[str], model: str) -> EmbeddingResult:
        plan = _RetryPlan(self)
        while True:
            try:
                request = self.adapter.embeddings_request(texts, model, self.conn, await plan.atoken())
                try:
                    answer = await self.awire.request(request)
                except WireError as exc:
                    raise self._network_error(exc) from None
                return self._embeddings(answer, len(texts))
            except E.LLMError as err:
                delay = plan.delay_after(err)
                if delay is None:
                    raise self._scrub(err) from None
                await asyncio.sleep(delay)

    async def achat(self, req: ChatRequest) -> ChatResult:
        self.adapter.check_request(req)   # before a token is fetched for it
        plan = _RetryPlan(self)
        while True:
            try:
                return await self._achat_once(req, await plan.atoken())
            except E.LLMError as err:
                delay = plan.delay_after(err)
                if delay is None:
                    raise self._scrub(err) from None
                await asyncio.sleep(delay)

    async def _achat_once(self, req: ChatRequest, token: Optional[str]) -> ChatResult:
        request = self.adapter.chat_request(req, self.conn, token)
        try:
            async with self.awire.open(request) as reply:
                if not reply.is_success:
                    raise self._status_error(reply.status, reply.headers, await reply.read())
                answer = _AnswerBody(self.adapter.provider_name, self.timeout)
                async for raw in reply.pieces():
                    answer.feed(raw)
        except WireError as exc:
            raise self._network_error(exc) from None
        return self.adapter.parse_chat(answer.body)

    async def astream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.adapter.check_request(req)   # before a token is fetched for it
        plan = _RetryPlan(self)
        while True:
            yielded = False
            try:
                # Closed explicitly: an abandoned async generator is only finalized later by
                # the event loop, and until then it holds the upstream connection.
                once = self._astream_once(req, await plan.atoken())
                try:
                    async for chunk in once:
                        yielded = yielded or bool(chunk.text or chunk.reasoning)
                        yield chunk
                finally:
                    await once.aclose()
                return
            except E.LLMError as err:
                delay = plan.delay_after(err, yielded)
                if delay is None:
                    raise self._scrub(err) from None
                await asyncio.sleep(delay)

    async def _astream_once(self, req: ChatRequest, token: Optional[str]) -> AsyncIterator[ChatChunk]:
        request = self.adapter.chat_request(req, self.conn, token)
        reader = _StreamReader(self.adapter, self.timeout)
        try:
            async with self.awire.open(request) as reply:
                if not reply.is_success:
                    raise self._status_error(reply.status, reply.headers, await reply.read())
                if not is_stream(reply.headers):
                    yield _as_chunk(self.adapter.parse_chat(await reply.read()))
                    return
                async for raw in reply.pieces():
                    if not reader.finished:  # after [DONE]: drain, as in _stream_once
                        for chunk in reader.feed(raw):
                            yield chunk
                if not reader.finished:
                    for chunk in reader.close():
                        yield chunk
        except WireError as exc:
            if not reader.finished:
                raise self._network_error(exc) from None

    async def amodels(self) -> List[str]:
        request = self.adapter.models_request(self.conn, await self._atoken())
        if request is None:
            return []
        try:
            answer = await self.awire.request(request)
        except WireError as exc:
            raise self._scrub(self._network_error(exc)) from None
        if not answer.is_success:
            raise self._scrub(self._status_error(answer.status, answer.headers, answer.content))
        return self.adapter.parse_models(answer.content)


class _RetryPlan:
    """After each failed attempt: whether, and after how long, to try again. It also holds
    the ERNIE token the attempt sent, so that a 110/111 drops that token and no newer one."""

    def __init__(self, engine: HTTPEngine) -> None:
        self.engine = engine
        self.attempt = 0
        self.replayed = False
        self.sent_token: Optional[str] = None

    def token(self) -> Optional[str]:
        self.sent_token = self.engine._token()
        return self.sent_token

    async def atoken(self) -> Optional[str]:
        self.sent_token = await self.engine._atoken()
        return self.sent_token

    def delay_after(self, err: E.LLMError, yielded: bool = False) -> Optional[float]:
        if yielded:
            return None  # never retry once text reached the caller
        if self.engine.adapter.is_token_expired(err) and not self.replayed:
            # ERNIE 110/111: exactly one fresh token and one replay, at once. Many calls
            # refused together share one refresh: the first to get here drops the token,
            # the rest find the new one already fetched.
            _token_cache.forget(self.engine._token_key(), self.sent_token)
            self.replayed = True
            return 0.0
        delay = self.engine._retry_delay(err, self.attempt)
        if delay is not None:
            self.attempt += 1
        return delay


def _as_chunk(result: ChatResult) -> ChatChunk:
    return ChatChunk(text=result.text, reasoning=result.reasoning,
                     finish_reason=result.finish_reason, usage=result.usage)
