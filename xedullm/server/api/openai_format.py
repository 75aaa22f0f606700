"""Our normalized results and errors, written the way OpenAI's API writes them.

Every OpenAI-shaped tool (the ``openai`` SDK, ``Client(xedu_url=…)``, classroom web apps)
already understands these shapes, so the server speaks nothing else.

Errors keep their class: ``Client(xedu_url=…)`` maps (status, type, code) back to the same
exception a direct client would raise. Messages are written for students: they say what
happened and what to do, never the provider's internals (the teacher sees those in the
server log).
"""
from __future__ import annotations

import itertools
import json
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional

from ...errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContentFilterError,
    LLMError,
    MissingKeyError,
    ModelNotFoundError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
)
from ...types import ChatChunk, ChatResult, Usage
from ..classroom.steering import ClassPaused, NameNeeded
from ..classroom.room import StoreUnavailable

DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class ErrorShape:
    status: int
    type: str
    code: Optional[str]
    zh: str
    en: str
    # Show the provider's own detail to the student? Only where it helps them fix their input.
    show_detail: bool = False
    # Whether OpenAI-style clients should retry by themselves. Our engine already retried
    # upstream, so a retrying student SDK would only multiply the teacher's calls.
    client_may_retry: bool = False


class BlockedQuestion(BadRequestError):
    """The question holds a word the teacher blocked (--blocked-words): it never goes upstream."""

    student_facing = True

    def __init__(self) -> None:
        super().__init__("这个问题里有课堂不允许的词语，没有发给大模型。换一种说法再问吧；有疑问可以问问老师。/ "
                         "Your question contains words this class does not allow, so it was not sent to the "
                         "model. Try asking in other words, or ask your teacher.")


class ServerStopping(ServerError):
    """The teacher stopped the server while this answer was still coming."""

    student_facing = True

    def __init__(self) -> None:
        super().__init__("老师的服务器已停止，请稍后再试或问问老师。/ "
                         "The teacher's server was stopped; try again later or ask your teacher.")


# Most specific class first: the first isinstance match wins.
_SHAPES = (
    (ServerStopping, ErrorShape(
        503, "server_error", "server_stopping", "", "")),
    (BlockedQuestion, ErrorShape(
        400, "invalid_request_error", "blocked_word", "", "")),
    (ClassPaused, ErrorShape(
        503, "server_error", "class_paused", "", "")),
    (NameNeeded, ErrorShape(
        400, "invalid_request_error", "name_required", "", "")),
    (StoreUnavailable, ErrorShape(
        503, "server_error", "store_unavailable", "", "", client_may_retry=True)),
    (AuthenticationError, ErrorShape(
        401, "authentication_error", "invalid_api_key",
        "老师的密钥无效或已失效，请告诉老师。",
        "The teacher's key was rejected; please tell your teacher.")),
    (QuotaExceededError, ErrorShape(
        429, "insufficient_quota", "insufficient_quota",
        "老师账户的余额或免费额度已用完，请告诉老师。",
        "The teacher's account has run out of balance or free quota; please tell your teacher.")),
    (RateLimitError, ErrorShape(
        429, "rate_limit_error", "rate_limit_exceeded",
        "大模型服务商那边请求太多，请等几秒再试。",
        "The model provider is rate-limiting requests; wait a few seconds and try again.",
        client_may_retry=True)),
    (ModelNotFoundError, ErrorShape(
        404, "invalid_request_error", "model_not_found",
        "服务商找不到老师设置的模型，请告诉老师。",
        "The provider does not know the teacher's model; please tell your teacher.",
        show_detail=True)),
    (ContentFilterError, ErrorShape(
        400, "invalid_request_error", "content_filter",
        "这个内容没有通过大模型服务商的安全审核。换一种说法再问吧；有疑问可以问问老师。",
        "The model provider's safety check stopped this content. Try asking in other words, or ask your teacher.")),
    (MissingKeyError, ErrorShape(
        503, "server_error", "teacher_setting_up",
        "老师还在设置课堂（还没有保存大模型的密钥），请稍等一会儿再问。",
        "The teacher is still setting up the class (no model key saved yet); wait a moment and ask again.")),
    (ConfigurationError, ErrorShape(
        500, "server_error", "server_misconfigured",
        "服务器配置有误，请告诉老师。",
        "The server is misconfigured; please tell your teacher.")),
    (BadRequestError, ErrorShape(
        400, "invalid_request_error", None,
        "请求被大模型服务商拒绝：请检查消息和参数。",
        "The model provider rejected the request: check the messages and parameters.",
        show_detail=True)),
    (StreamInterruptedError, ErrorShape(
        502, "api_connection_error", "stream_interrupted",
        "大模型服务商的回答被中途切断，内容不完整，请再问一次。",
        "The model provider's answer was cut off and is incomplete; please ask again.")),
    (APITimeoutError, ErrorShape(
        504, "timeout_error", "upstream_timeout",
        "大模型服务商响应超时，请稍后再试。",
        "The model provider timed out; try again later.")),
    (APIConnectionError, ErrorShape(
        502, "api_connection_error", "upstream_unreachable",
        "老师的服务器连不上大模型服务商，请稍后再试；一直这样请告诉老师。",
        "The teacher's server cannot reach the model provider; try again later, and tell your teacher if it persists.")),
    (ServerError, ErrorShape(
        502, "server_error", "upstream_error",
        "大模型服务商暂时出错，请稍后再试。",
        "The model provider had an internal error; try again later.")),
)

_UNEXPECTED = ErrorShape(
    500, "server_error", "internal_error",
    "服务器内部出错，请稍后再试；一直这样请告诉老师。",
    "The server hit an internal error; try again later, and tell your teacher if it persists.")


def shape_of(err: BaseException) -> ErrorShape:
    for cls, shape in _SHAPES:
        if isinstance(err, cls):
            return shape
    return _UNEXPECTED


@dataclass(frozen=True)
class ErrorReply:
    status: int
    body: Dict[str, Any]
    headers: Dict[str, str]


def error_reply(err: BaseException, *, own_message: bool = False) -> ErrorReply:
    """(status, OpenAI error body, headers) for any exception.

    Errors meant for students keep their own message: those marked ``student_facing`` (the
    busy gate, our own validation) and, with ``own_message``, a policy's refusal. Text that
    reaches here is already key-free: engine errors are redacted by the transport, and our
    own messages never hold one.
    """
    shape = shape_of(err)
    if own_message or getattr(err, "student_facing", False):
        message = str(err)
    else:
        message = f"{shape.zh} / {shape.en}"
        detail = getattr(err, "detail", None)
        if shape.show_detail and detail:
            message += f" 详情 Detail: {detail}"
    code = shape.code
    if shape.status == 401 and (own_message or getattr(err, "student_facing", False)):
        # The classroom refused the student's code or token: told apart from the provider
        # refusing the teacher's key (invalid_api_key), so the page asks again only here.
        code = "invalid_access_code"
    error = {"message": message, "type": shape.type, "param": getattr(err, "param", None), "code": code}
    headers: Dict[str, str] = {}
    retry_after = getattr(err, "retry_after", None)
    # The class's own limits (busy, slow down) are ours to time: the student may wait and
    # retry. A provider's 429 has already been retried by our engine (1 + max_retries
    # attempts): the student's SDK must not multiply them, and a Retry-After is given only
    # where the provider said how long waiting takes.
    ours = getattr(err, "student_facing", False)
    upstream_limit = isinstance(err, RateLimitError) and not ours
    if upstream_limit:
        if retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    elif shape.status == 429 and not isinstance(err, QuotaExceededError) or \
            shape.status == 503 and retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after or 1)))
    if not shape.client_may_retry or upstream_limit:
        headers["x-should-retry"] = "false"
    return ErrorReply(shape.status, {"error": error}, headers)


class InvalidRequest(BadRequestError):
    """The student's request body is malformed; ``param`` names the offending field."""

    student_facing = True

    def __init__(self, zh: str, en: str, param: Optional[str] = None) -> None:
        super().__init__(f"{zh} / {en}")
        self.param = param

    @classmethod
    def wrap(cls, err: LLMError) -> "InvalidRequest":
        """A validation error from the Client, already bilingual and about the student's input."""
        wrapped = cls.__new__(cls)
        BadRequestError.__init__(wrapped, str(err))
        wrapped.param = getattr(err, "param", None)
        return wrapped


# Ids need only be unique, not secret: a random part per process (servers sharing one store
# differ there) and a count, instead of a fresh uuid4 (an os.urandom call) per answer.
_ID_PREFIX = "chatcmpl-" + secrets.token_hex(8)
_id_count = itertools.count(1)


def new_completion_id() -> str:
    return f"{_ID_PREFIX}{next(_id_count):016x}"


def completion(result: ChatResult, *, completion_id: str, model: str,
               answered_by: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    # OpenAI writes content null when the model only called tools.
    content = None if result.tool_calls and not result.text else result.text
    message: Dict[str, Any] = {"role": "assistant", "content": content}
    if result.reasoning:
        message["reasoning_content"] = result.reasoning
    if result.tool_calls:
        message["tool_calls"] = result.tool_calls
    choice: Dict[str, Any] = {"index": 0, "message": message, "finish_reason": result.finish_reason or "stop"}
    if result.logprobs is not None:
        choice["logprobs"] = result.logprobs
    body = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": result.usage.as_dict() if result.usage else None,
    }
    if answered_by:
        body["xedullm"] = answered_by   # an extra field: OpenAI SDKs ignore it, our page shows it
    return body


class ChunkWriter:
    """Turns a stream of ChatChunks into OpenAI ``chat.completion.chunk`` SSE frames."""

    def __init__(self, *, completion_id: str, model: str, include_usage: bool) -> None:
        # Set when a fallback answers: every later frame says who (SDKs ignore the extra field).
        self.answered_by: Optional[Dict[str, str]] = None
        # What every frame of this answer begins with, encoded once: the same bytes as
        # sse({"id": ..., "choices": ...}) but without encoding the same fields each frame.
        self._head = b"data: " + _compact({"id": completion_id, "object": "chat.completion.chunk",
                                            "created": int(time.time()), "model": model})[:-1] + b',"choices":'
        self._include_usage = include_usage
        self._role_sent = False
        self._finish_sent = False
        self.usage: Optional[Usage] = None

    def _text_frame(self, text: str) -> bytes:
        return self._closed(self._head + b'[{"index":0,"delta":{"content":' + _encode_string(text).encode()
                            + b'},"finish_reason":null}]')

    def _frame(self, choices: list, usage: Optional[Dict[str, int]] = None) -> bytes:
        return self._closed(self._head + _compact(choices), usage)

    def _closed(self, frame: bytes, usage: Optional[Dict[str, int]] = None) -> bytes:
        """A frame's head and choices, with what every frame ends with."""
        if self._include_usage:
            frame += b',"usage":' + _compact(usage)
        if self.answered_by:
            frame += b',"xedullm":' + _compact(self.answered_by)
        return frame + b"}\n\n"

    def chunk(self, chunk: ChatChunk) -> bytes:
        """The frame for one upstream chunk, or b'' when it carries nothing to show."""
        if chunk.usage is not None:
            self.usage = chunk.usage
        if (self._role_sent and chunk.text and not chunk.reasoning and not chunk.tool_calls
                and chunk.logprobs is None and chunk.finish_reason is None):
            # Most frames of an answer are a piece of text: the same bytes as below, without
            # building and walking the dictionaries for it.
            return self._text_frame(chunk.text)
        delta: Dict[str, Any] = {}
        if not self._role_sent:
            delta["role"] = "assistant"
            delta["content"] = None if chunk.tool_calls else ""
            self._role_sent = True
        if chunk.text:
            delta["content"] = chunk.text
        if chunk.reasoning:
            delta["reasoning_content"] = chunk.reasoning
        if chunk.tool_calls:
            delta["tool_calls"] = chunk.tool_calls   # the provider's pieces, as they came
        extra = {"logprobs": chunk.logprobs} if chunk.logprobs is not None else {}
        if chunk.finish_reason and not self._finish_sent:
            self._finish_sent = True
            return self._frame([{"index": 0, "delta": delta, "finish_reason": chunk.finish_reason, **extra}])
        if not delta and not extra:
            return b""
        return self._frame([{"index": 0, "delta": delta, "finish_reason": None, **extra}])

    def end(self) -> bytes:
        """The closing frames: finish_reason if upstream never sent one, usage, [DONE]."""
        out = b""
        if not self._finish_sent:
            self._finish_sent = True
            out += self._frame([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if self._include_usage:
            out += self._frame([], self.usage.as_dict() if self.usage else None)
        return out + DONE


# One encoder for every frame: json.dumps with options builds a new one per call.
_encode_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# What that encoder writes for one string (its own C function for it).
_encode_string = json.encoder.encode_basestring


def _compact(value: Any) -> bytes:
    return _encode_compact(value).encode()


def sse(payload: Dict[str, Any]) -> bytes:
    return b"data: " + _compact(payload) + b"\n\n"


def error_frame(err: BaseException) -> bytes:
    """An error after the stream began: the HTTP status is gone, so it travels in-band."""
    reply = error_reply(err)
    body = dict(reply.body)
    body["error"] = dict(body["error"], status=reply.status)
    return sse(body)
