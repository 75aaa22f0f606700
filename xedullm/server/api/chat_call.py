"""One ``/v1/chat/completions`` call, from the waiting line to the ledger.

It is an ASGI app of its own rather than a Starlette response because it must own the
whole exchange: wait for the first upstream chunk before choosing the HTTP status, watch
for the student leaving (and then cancel the upstream call, even while upstream is silent),
and always give back its gate slot and write its ledger entry.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import traceback
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import anyio

from ... import catalog
from ...errors import ConfigurationError, ContentFilterError, LLMError, StreamInterruptedError
from ...keys import redact
from ...types import ChatChunk, ChatRequest, Usage
from .body import ChatBody
from .connection_guard import ON_DISCONNECT, SEND_BODY
from ..classroom.blocked_words import StreamMasker
from ..classroom.gate import CallerBusy, ServerBusy
from ..classroom.ledger import REQUEST_ID, LedgerEntry
from .openai_format import (BlockedQuestion, ChunkWriter, ServerStopping, completion, error_frame, error_reply,
                            new_completion_id)
from ..classroom.open_policy import Admission

if TYPE_CHECKING:
    from ..state import ServerState

log = logging.getLogger("xedullm.server")

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # Reverse proxies (nginx) would otherwise buffer the stream and the answer arrives at once.
    (b"x-accel-buffering", b"no"),
]


class ChatCall:
    def __init__(self, state: "ServerState", body: ChatBody, admission: Admission, chat: ChatRequest,
                 started: float) -> None:
        self._state = state
        self._body = body
        self._admission = admission
        # The model the policy chose, and the teacher's cap per answer, in one copy of the request.
        self._chat = dataclasses.replace(chat, model=admission.model, max_tokens=(
            chat.max_tokens if admission.max_tokens is None else admission.max_tokens))
        self._started = started
        self._status = 499
        self._outcome = "disconnected"
        self._usage: Optional[Usage] = None
        self._answer: List[str] = []   # text the student has been sent
        self._reasoning: List[str] = []   # and reasoning
        self._upstream = False         # handed to the provider: from then on it may bill it
        self._phase = "waiting"        # -> 'streaming' once headers are out -> 'done'
        self._server_stopped = False
        self._task: Optional["asyncio.Task[Any]"] = None
        self._cancellable = False      # a disconnect or the server stopping may still end the call
        self._cancelled = False        # and one has (see _serve_cancellably)
        self._recorded = False         # the ledger has been handed this call's entry
        self._request_id: Optional[str] = None
        self._flagged = False          # a blocked word, or the provider's own moderation
        self._provider: Optional[str] = None   # who answered (the Client says)
        self._fallback_reason: Optional[str] = None   # why the primary did not, when a fallback did
        # Answers (and the reasoning the page shows) are masked as they pass, when words are blocked.
        blocked = state.blocked
        self._maskers = (StreamMasker(blocked), StreamMasker(blocked)) if blocked else None

    @property
    def model(self) -> str:
        """The model the answer is asked of, as the caller is told."""
        return self._admission.model

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        state = self._state
        extensions = scope.get("extensions") or {}
        # A response's start goes through the app's middleware (its CORS headers); under our
        # connection guard the frames after it skip the wrappers, which only pass them on.
        self._send_body = extensions.get(SEND_BODY, send)
        self._request_id = scope.get(REQUEST_ID)
        self._task = asyncio.current_task()
        try:
            if state.stopping().is_set():
                self._server_stopped = True
            else:
                await self._serve_cancellably(state, extensions.get(ON_DISCONNECT), receive, send)
            if self._server_stopped and self._phase != "done":
                await self._say_server_stopped(send)
        finally:
            await self._record()

    async def _serve_cancellably(self, state: "ServerState", on_disconnect: Optional[List[Any]],
                                 receive: Any, send: Any) -> None:
        """Serve, cancelled as a whole (the upstream request with it) when the student leaves
        (told by our connection guard, else by receive()) or the server stops.

        Cancellation is this task's own asyncio one, asked for at most once, and only while
        the answer may still be abandoned: once its last bytes are on their way nothing is
        left to cut short, so nothing after that point, the ledger row included, can be
        interrupted. (anyio's cancel scopes would do the same at a cost that showed on every
        request's profile.)"""
        self._cancellable = True
        if on_disconnect is not None:
            on_disconnect.append(self._cancel)
            watcher = None
        else:
            watcher = asyncio.ensure_future(self._watch_disconnect(receive))
        state.on_stop.add(self._stop)
        try:
            await self._serve(send)
        except asyncio.CancelledError:
            if not self._cancelled:
                raise   # not ours: the server itself is cancelling its tasks
            uncancel = getattr(self._task, "uncancel", None)   # Python 3.11+ counts cancellations
            if uncancel is not None:
                uncancel()
        finally:
            self._cancellable = False   # before any await: a late cancel now must not land
            state.on_stop.discard(self._stop)
            if watcher is not None:
                watcher.cancel()

    def _cancel(self) -> None:
        if self._cancellable and not self._cancelled and self._task is not None:
            self._cancelled = True
            self._task.cancel()

    def _stop(self) -> None:
        if self._cancellable:
            self._server_stopped = True
            self._cancel()

    async def _watch_disconnect(self, receive: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._cancel()

    async def _record(self) -> None:
        """Write the ledger entry, once, when the call ends: after the last bytes are out, so
        the student is not kept waiting for it. A student's next request still sees this
        one's usage: the last send returns as soon as the bytes are written, and the row is
        handed over at once, before the event loop can take up anything the student sends
        next (the classroom's own ledger only queues it: StoreLedger.record)."""
        if self._recorded:
            return
        self._recorded = True
        try:
            await self._state.ledger.record(self._entry())
        except Exception:  # noqa: BLE001 - a ledger given in ServerSettings may fail in any way
            log.error("记录用量失败 / Recording usage failed:\n%s",
                      redact(traceback.format_exc(), self._state.secrets))

    def _entry(self) -> LedgerEntry:
        return LedgerEntry(
            started=self._started, latency=time.time() - self._started,
            who=self._admission.who, model=self._admission.model, stream=self._body.stream,
            status=499 if self._outcome == "disconnected" else self._status,
            outcome=self._outcome, usage=self._usage, ticket=self._admission.ticket,
            messages=self._chat.messages, answer="".join(self._answer), name=self._admission.name,
            flagged=self._flagged, provider=self._provider, fallback_reason=self._fallback_reason,
            reasoning="".join(self._reasoning), upstream=self._upstream, request_id=self._request_id)

    async def _say_server_stopped(self, send: Any) -> None:
        # Ending the answer ourselves lets the server stop at once instead of waiting out
        # its shutdown timeout and then cutting the student off without a word.
        err = ServerStopping()
        try:
            if self._phase == "streaming":
                await self._send_body({"type": "http.response.body", "body": error_frame(err), "more_body": False})
                self._settle(err)
            else:
                await self._send_error(send, err)
        except OSError:
            return

    async def _serve(self, send: Any) -> None:
        gate = self._state.gate
        # Open servers (no classroom controls) know no one apart: every caller is 'anonymous'.
        caller = None if self._admission.who == "anonymous" else self._admission.who
        try:
            blocked = self._state.blocked
            if blocked and blocked.found_in(_texts(self._body.messages, self._body.options)):
                await self._send_error(send, BlockedQuestion())
                self._outcome, self._flagged = "flagged", True
                return
            try:
                await gate.acquire(caller)
            except (ServerBusy, CallerBusy) as err:
                await self._send_error(send, err)
                return
            try:
                if self._body.stream:
                    await self._stream(send)
                else:
                    await self._complete(send)
            finally:
                gate.release(caller)
        except OSError:
            # The student went away while we were writing; nothing is left to tell them.
            self._status, self._outcome = 499, "disconnected"

    async def _complete(self, send: Any) -> None:
        try:
            self._upstream = True
            result = await self._state.client_for(self._admission).achat(self._chat)
        except Exception as err:  # noqa: BLE001 - every failure must become an OpenAI error
            await self._send_error(send, self._note(err))
            return
        self._usage = result.usage
        self._provider, self._fallback_reason = result.provider, result.fallback_reason
        if self._state.blocked:
            text, in_text = self._state.blocked.mask(result.text or "")
            reasoning, in_reasoning = self._state.blocked.mask(result.reasoning or "")
            if in_text or in_reasoning:
                self._flagged = True
                result = dataclasses.replace(result, text=text, reasoning=reasoning)
        body = completion(result, completion_id=new_completion_id(), model=self._admission.model,
                          answered_by=self._answered_by(result.provider))
        self._answer.append(result.text)
        self._status, self._outcome = 200, "ok"
        self._cancellable = False   # the answer is whole: nothing is left to cut short
        await _send_json(send, self._send_body, 200, body, {})
        self._phase = "done"

    async def _stream(self, send: Any) -> None:
        chunks = self._state.client_for(self._admission).achat_stream(self._chat)
        self._upstream = True
        try:
            try:
                first = await chunks.__anext__()
            except StopAsyncIteration:
                first = None
            except Exception as err:  # noqa: BLE001
                await self._send_error(send, self._note(err))
                return
            await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            self._phase = "streaming"
            writer = ChunkWriter(completion_id=new_completion_id(), model=self._admission.model,
                                 include_usage=self._body.include_usage)
            if first is not None:
                self._provider, self._fallback_reason = first.provider, first.fallback_reason
                writer.answered_by = self._answered_by(first.provider)
            try:
                if first is not None:
                    await self._relay(send, writer, first)
                    async for chunk in chunks:
                        await self._relay(send, writer, chunk)
                await self._flush_held(send, writer)
            except OSError:
                raise
            except Exception as err:  # noqa: BLE001
                self._settle(self._note(err))
                await self._flush_held(send, writer)   # what arrived before the error stays the student's
                self._usage = writer.usage
                await self._send_body({"type": "http.response.body", "body": error_frame(err), "more_body": False})
                self._phase = "done"
                return
            self._usage = writer.usage
            self._status, self._outcome = 200, "ok"
            self._cancellable = False   # the answer is whole: nothing is left to cut short
            await self._send_body({"type": "http.response.body", "body": writer.end(), "more_body": False})
            self._phase = "done"
        finally:
            with anyio.CancelScope(shield=True):
                await chunks.aclose()

    async def _relay(self, send: Any, writer: ChunkWriter, chunk: Any) -> None:
        if self._maskers is not None:
            text_masker, reasoning_masker = self._maskers
            text, reasoning = text_masker.feed(chunk.text or ""), reasoning_masker.feed(chunk.reasoning or "")
            if chunk.finish_reason:   # nothing may be held back past the last frame with text
                text, reasoning = text + text_masker.close(), reasoning + reasoning_masker.close()
            self._flagged = self._flagged or bool(text_masker.masked or reasoning_masker.masked)
            chunk = dataclasses.replace(chunk, text=text, reasoning=reasoning)
        await self._pass_on(send, writer, chunk)

    async def _pass_on(self, send: Any, writer: ChunkWriter, chunk: ChatChunk) -> None:
        frame = writer.chunk(chunk)
        if frame:
            await self._send_body({"type": "http.response.body", "body": frame, "more_body": True})
        if chunk.text:
            self._answer.append(chunk.text)
        if chunk.reasoning:
            self._reasoning.append(chunk.reasoning)

    async def _flush_held(self, send: Any, writer: ChunkWriter) -> None:
        """The text the maskers still hold back, once the answer has ended."""
        if self._maskers is None:
            return
        text, reasoning = (m.close() for m in self._maskers)
        self._flagged = self._flagged or any(m.masked for m in self._maskers)
        if text or reasoning:
            await self._pass_on(send, writer, ChatChunk(text=text, reasoning=reasoning))

    def _answered_by(self, provider: Optional[str]) -> Optional[Dict[str, str]]:
        """Who answered, for the page, when it was a fallback rather than the teacher's provider."""
        client = self._state.client
        if provider is None or provider == client.label:
            return None
        found = next((f.provider for f in client.fallbacks if f.label == provider), None)
        if found is None:
            try:
                found = catalog.find_provider(provider)
            except ConfigurationError:
                return {"provider": provider, "provider_label": provider, "provider_label_en": provider}
        return {"provider": provider, "provider_label": found.label_zh, "provider_label_en": found.label_en}

    def _note(self, err: BaseException) -> BaseException:
        """Tell the teacher what went wrong, key-free (the student gets the class's message)."""
        secrets = self._state.secrets
        if isinstance(err, LLMError):
            log.warning("上游出错 / Upstream error: %s", redact(str(err), secrets))
        else:
            log.error("服务器内部错误 / Internal error:\n%s", redact(traceback.format_exc(), secrets))
        return err

    def _settle(self, err: BaseException) -> None:
        if isinstance(err, ContentFilterError):   # the provider's own moderation: the teacher should know
            self._flagged = True
        reply = error_reply(err)
        self._status = reply.status
        # 'cut': the provider's stream ended without its end marker; the row keeps what was sent.
        self._outcome = "server_busy" if isinstance(err, ServerBusy) else "cut" if isinstance(
            err, StreamInterruptedError) else (reply.body["error"]["code"] or reply.body["error"]["type"])

    async def _send_error(self, send: Any, err: BaseException) -> None:
        self._settle(err)
        reply = error_reply(err)
        await _send_json(send, self._send_body, reply.status, reply.body, reply.headers)
        self._phase = "done"


def _texts(messages: Any, options: Any = None) -> List[str]:
    """Every text the student sent: all turns go upstream, so a word in an earlier turn (or
    a made-up assistant turn) would reach the model as surely as one in the last question;
    so do tool results (role 'tool'), an assistant turn's tool calls (name and arguments, read
    as JSON too so that \\u escapes cannot hide a word) and the tools' names, descriptions and
    parameter schemas."""
    out: List[str] = []
    for message in messages or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out += [part["text"] for part in content
                    if isinstance(part, dict) and isinstance(part.get("text"), str)]
        for call in (message.get("tool_calls") or ()) if isinstance(message, dict) else ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                out += _strings(function.get("name")) + _strings(function.get("arguments"), parse=True)
    for tool in (options or {}).get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict):
            out += _strings(function.get("name")) + _strings(function.get("description")) + \
                _strings(function.get("parameters"))
    return out


def _strings(value: Any, parse: bool = False) -> List[str]:
    """Every string in ``value`` (keys too); a JSON text is also read as what it holds."""
    if isinstance(value, str):
        if parse:
            try:
                return [value] + _strings(json.loads(value))
            except ValueError:
                pass
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(k) + _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


# One encoder for every answer: json.dumps with an option builds a new one per call.
_encode_json = json.JSONEncoder(ensure_ascii=False).encode


async def _send_json(send: Any, send_body: Any, status: int, body: Any, headers: dict) -> None:
    data = _encode_json(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send_body({"type": "http.response.body", "body": data, "more_body": False})
