"""OpenAI-compatible chat completions (openrouter, moonshot, deepseek, glm, any base_url,
and our own classroom server). protocols.md section 1."""
from __future__ import annotations

import base64
import json
import sys
from array import array
from typing import Any, Dict, List, Mapping, Optional

from .. import errors as E
from ..sse import SSEEvent
from ..pictures import BARE_BASE64, bare_base64, cannot_see, has_images, sees
from ..types import ChatChunk, ChatRequest, ChatResult, Connection, EmbeddingResult, HTTPRequest
from .adapter import STREAM_END, Adapter, EventResult, join_url, load_json, retry_after_seconds, usage_from
from .options import OPENAI_OPTIONS, wire_options

# Every OpenAI option goes upstream under its own name (protocols/options.py).
OPTIONS = {name: name for name in OPENAI_OPTIONS}

# Specific provider codes/types decide the class even against the HTTP status
# (protocols.md 0.2: classify by provider code first, status second).
_SPECIFIC = {
    # quota: money or plan exhausted — needs a human, never retried
    "insufficient_quota": E.QuotaExceededError,
    "exceeded_current_quota_error": E.QuotaExceededError,   # Moonshot, sent as 429 (Obs) or 403
    "1113": E.QuotaExceededError,                          # GLM arrears
    "Arrearage": E.QuotaExceededError,                     # DashScope compat (unconfirmed here)
    # auth
    "invalid_api_key": E.AuthenticationError,
    "invalid_authentication_error": E.AuthenticationError,  # Moonshot
    "authentication_error": E.AuthenticationError,
    "InvalidApiKey": E.AuthenticationError,
    "1000": E.AuthenticationError, "1001": E.AuthenticationError, "1002": E.AuthenticationError,
    "1003": E.AuthenticationError, "1004": E.AuthenticationError,
    # rate
    "rate_limit_exceeded": E.RateLimitError,
    "rate_limit_reached_error": E.RateLimitError,           # Moonshot
    "engine_overloaded_error": E.RateLimitError,            # Moonshot
    "1302": E.RateLimitError, "1303": E.RateLimitError, "1305": E.RateLimitError,
    # bad requests
    "model_not_found": E.ModelNotFoundError,
    "resource_not_found_error": E.ModelNotFoundError,       # Moonshot unknown/retired model
    "1211": E.ModelNotFoundError,                           # GLM unknown model
    "content_filter": E.ContentFilterError,
    "1301": E.ContentFilterError,                           # GLM unsafe content
    "DataInspectionFailed": E.ContentFilterError,
    "context_length_exceeded": E.BadRequestError,
    "1210": E.BadRequestError, "1213": E.BadRequestError, "1214": E.BadRequestError,
    "1261": E.BadRequestError,
    # Qianfan v2 (docs/qianfan_v2.md): a 401 or 403 does not always mean the key
    "invalid_iam_token": E.AuthenticationError,
    "invalid_appid": E.AuthenticationError,
    "no_parameter_permission": E.AuthenticationError,
    "account_overdue": E.QuotaExceededError,               # 403: the account is in arrears
    "model_offline": E.ModelNotFoundError,                 # 403: a retired model
    "unsafe_request": E.ContentFilterError,                # the type of every moderation block
    # our classroom server's own types (server/openai_format.py)
    "stream_interrupted": E.StreamInterruptedError,
    "api_connection_error": E.APIConnectionError,
    "timeout_error": E.APITimeoutError,
}

# Messages that decide the class where the code is only generic, lower-cased
# (protocols.md 1.6: DeepSeek answers an unknown model with 400 "Model Not Exist").
_BY_MESSAGE = {
    "model not exist": E.ModelNotFoundError,
    # OpenAI's own text; Qianfan v2 sends it with a 401 and the code invalid_model
    "the model does not exist or you do not have access to it.": E.ModelNotFoundError,
}

_BY_STATUS = {
    400: E.BadRequestError, 401: E.AuthenticationError, 402: E.QuotaExceededError,
    403: E.AuthenticationError, 404: E.ModelNotFoundError, 408: E.ServerError,
    409: E.ServerError, 413: E.BadRequestError, 422: E.BadRequestError, 429: E.RateLimitError,
}


# Generic types only decide when there is no HTTP status to go by (errors inside a 200 body).
_GENERIC = {
    "invalid_request_error": E.BadRequestError,
    "server_error": E.ServerError,
    "permission_denied_error": E.AuthenticationError,
}

# The error kinds a catalog row's ``status_meanings`` may name (protocols.md 1.6).
_MEANINGS = {"content_filter": E.ContentFilterError, "quota": E.QuotaExceededError,
             "rate_limit": E.RateLimitError, "auth": E.AuthenticationError}


def class_for(status: Optional[int], codes, default=E.ServerError, message: str = ""):
    for code in codes:
        if code is not None and str(code) in _SPECIFIC:
            return _SPECIFIC[str(code)]
    by_message = _BY_MESSAGE.get(message.strip().lower())
    if by_message is not None:
        return by_message
    if status is None:
        for code in codes:
            if code is not None and str(code) in _GENERIC:
                return _GENERIC[str(code)]
        return default
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return E.ServerError
    if 400 <= status < 500:
        return E.BadRequestError
    return default


def _clamp_open(value: Optional[float]) -> Optional[float]:
    if value is None:
        return None
    return min(max(value, 0.01), 0.99)


class OpenAICompatAdapter(Adapter):
    #: set for a classroom server (xedu_url): its error messages are already written for
    #: students, so they become the whole message instead of a detail under generic advice
    relay_server_messages = False

    def _headers(self, conn: Connection) -> Dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if conn.api_key:
            headers["Authorization"] = f"Bearer {conn.api_key}"
        if self.provider:
            headers.update(self.provider.extra_headers)
        return headers

    def chat_request(self, req: ChatRequest, conn: Connection, token: Optional[str] = None) -> HTTPRequest:
        if self.provider and not sees(self.provider.id, req.model) and has_images(req.messages):
            # OpenAI's image parts are every such provider's own form too; only the model decides.
            raise cannot_see(self.provider.label_zh, self.provider.label_en, req.model)
        messages = _strip_reasoning(req.messages)
        if self.provider and self.provider.id in BARE_BASE64 and has_images(messages):
            messages = bare_base64(messages)
        model = self.provider.wire_model(req.model) if self.provider else req.model
        body: Dict[str, Any] = {"model": model, "messages": messages}
        temperature, top_p = req.temperature, req.top_p
        if self.provider and self.provider.sampling_open_interval:
            if temperature is not None and temperature <= 0:
                body["do_sample"] = False
            temperature, top_p = _clamp_open(temperature), _clamp_open(top_p)
        for name, value in (("temperature", temperature), ("top_p", top_p),
                            ("max_tokens", req.max_tokens), ("stop", req.stop)):
            if value is not None:
                body[name] = value
        body.update(wire_options(req.extra, OPTIONS))
        if req.stream:
            body["stream"] = True
            body.setdefault("stream_options", {"include_usage": True})
        else:
            body.pop("stream_options", None)  # OpenAI refuses it without stream
        headers = self._headers(conn)
        if req.stream:
            headers["Accept"] = "text/event-stream"
        return HTTPRequest("POST", join_url(conn.base_url, "chat/completions"), headers, body)

    def models_request(self, conn: Connection, token: Optional[str] = None) -> Optional[HTTPRequest]:
        return HTTPRequest("GET", join_url(conn.base_url, "models"), self._headers(conn))

    def embeddings_request(self, texts: List[str], model: str, conn: Connection,
                           token: Optional[str] = None) -> HTTPRequest:
        # No encoding_format: float is every service's default, and not all know the field (GLM).
        return HTTPRequest("POST", join_url(conn.base_url, "embeddings"), self._headers(conn),
                           {"model": model, "input": list(texts)})

    def parse_embeddings(self, body: bytes) -> EmbeddingResult:
        data = load_json(body, self)
        if not isinstance(data, dict):
            raise E.ServerError(provider=self.provider_name, detail="回复不是 JSON 对象 / reply is not a JSON object")
        if data.get("error"):
            raise self._error_from_body(None, data, {})
        items = [d for d in data.get("data") or () if isinstance(d, dict)]
        items.sort(key=lambda d: d.get("index", 0) if isinstance(d.get("index"), int) else 0)
        vectors = [_vector(d.get("embedding"), self) for d in items]
        return EmbeddingResult(vectors=vectors, usage=usage_from(data.get("usage")), model=data.get("model"))

    def parse_chat(self, body: bytes) -> ChatResult:
        data = load_json(body, self)  # json.loads skips DeepSeek's leading blank lines
        if not isinstance(data, dict):
            raise E.ServerError(provider=self.provider_name, detail="回复不是 JSON 对象 / reply is not a JSON object")
        if data.get("error"):
            raise self._error_from_body(None, data, {})
        choices = data.get("choices") or []
        if not choices or not isinstance(choices[0], dict):
            raise E.ServerError(provider=self.provider_name, detail="回复里没有 choices / reply has no choices")
        first = choices[0]
        message = first.get("message") or {}
        finish = first.get("finish_reason")
        self._raise_on_filtered(finish)
        return ChatResult(
            text=message.get("content") or "",
            reasoning=message.get("reasoning_content") or "",
            finish_reason=finish,
            usage=usage_from(data.get("usage")) or usage_from(first.get("usage")),
            model=data.get("model"),
            tool_calls=_dicts(message.get("tool_calls")),
            logprobs=_dict_or_none(first.get("logprobs")),
        )

    def parse_event(self, event: SSEEvent) -> EventResult:
        payload = event.data
        if payload[:1] != "{":   # the usual frame starts with its brace: no copies for it
            payload = payload.strip()
            if not payload:
                return None
            if payload.startswith("[DONE]"):
                return STREAM_END
        try:
            data = json.loads(payload)
        except ValueError:   # garbage from upstream: load_json says so as a ServerError
            data = load_json(payload, self)
        if not isinstance(data, dict):
            return None
        if data.get("error") or event.event == "error":
            raise self._error_from_body(None, data, {})
        # One ChatChunk built from plain locals: this runs for every piece of every stream.
        usage = usage_from(data.get("usage"))
        text, reasoning, finish, tool_calls, logprobs = "", "", None, [], None
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content") or ""
            reasoning = delta.get("reasoning_content") or ""
            calls = delta.get("tool_calls")
            tool_calls = _dicts(calls) if calls else []
            logprobs = _dict_or_none(choice.get("logprobs"))
            finish = choice.get("finish_reason")
            usage = usage or usage_from(choice.get("usage"))  # Moonshot puts it here
            if finish:
                self._raise_on_filtered(finish, after_text=bool(text))
        return ChatChunk(text=text, reasoning=reasoning, finish_reason=finish, usage=usage,
                         tool_calls=tool_calls, logprobs=logprobs)

    def _raise_on_filtered(self, finish: Optional[str], after_text: bool = False) -> None:
        if finish in ("content_filter", "sensitive") and not after_text:
            # A blocked answer must not look like an empty success.
            raise E.ContentFilterError(provider=self.provider_name, code=finish)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> E.LLMError:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            data = {"error": {"message": body[:300].decode("utf-8", "replace").strip()}}
        if not isinstance(data, dict):
            data = {"error": {"message": str(data)[:300]}}
        return self._error_from_body(status, data, headers)

    def _error_from_body(self, status: Optional[int], data: dict, headers: Mapping[str, str]) -> E.LLMError:
        err = data.get("error", data)
        if not isinstance(err, dict):
            err = {"message": str(err)}
        code, etype = err.get("code"), err.get("type")
        in_stream = status is None
        if in_stream and isinstance(code, int) and code >= 400:
            status_hint = code  # OpenRouter puts the HTTP status in error.code
        else:
            status_hint = status
        meanings = self.provider.status_meanings if self.provider else {}
        if status_hint in meanings and str(code) not in _SPECIFIC and str(etype) not in _SPECIFIC:
            cls = _MEANINGS[meanings[status_hint]]
        else:
            cls = class_for(status_hint, [code, etype], default=E.ServerError,
                            message=str(err.get("message") or ""))
        detail = str(err.get("message") or "")[:500] or None
        return cls(
            detail if self.relay_server_messages else None,
            provider=self.provider_name, status_code=status, code=code if code is not None else etype,
            detail=detail,
            retry_after=retry_after_seconds(headers) if headers else None,
        )


def _vector(value: Any, adapter: Adapter) -> List[float]:
    """One embedding: a list of numbers, or (``encoding_format: base64``) little-endian float32."""
    if isinstance(value, str):
        floats = array("f")
        floats.frombytes(base64.b64decode(value))
        if sys.byteorder == "big":
            floats.byteswap()
        return floats.tolist()
    if isinstance(value, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        return [float(x) for x in value]
    raise E.ServerError(provider=adapter.provider_name, detail="回复里的向量不是数字列表 / an embedding is not a list of numbers")


def _dicts(value: Any) -> list:
    # Passed on as they came: a tool call's pieces are the caller's to join by index.
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _dict_or_none(value: Any) -> Optional[dict]:
    return value if isinstance(value, dict) else None


def _strip_reasoning(messages):
    # deepseek-reasoner answers 400 when reasoning_content is sent back in history.
    return [{k: v for k, v in m.items() if k != "reasoning_content"} for m in messages]
