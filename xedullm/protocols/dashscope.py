"""DashScope native text generation (qwen). protocols.md section 2.

A question with pictures goes to the multimodal endpoint instead, whose content is a list of
``{"image": url}`` / ``{"text": …}`` parts (vision models only, qwen-vl-*); embeddings go to
the text-embedding service (docs/pictures-and-embeddings.md).

Streaming is switched on by the ``X-DashScope-SSE: enable`` header, not the body; events use
``id:/event:/data:`` with no space after the colon and finish_reason is the string "null"
until the last event; there is no [DONE] — the stream ends at EOF.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional

from .. import errors as E
from ..sse import SSEEvent
from ..pictures import cannot_see, has_images, image_url, is_image_part, sees
from ..types import ChatChunk, ChatRequest, ChatResult, Connection, EmbeddingResult, HTTPRequest, Usage
from .adapter import Adapter, EventResult, join_url, load_json, retry_after_seconds, usage_from
from .openai_compat import _dicts
from .options import wire_options

# protocols.md 2.2: the parameters the SDK passes through. DashScope has no
# frequency_penalty (its repetition_penalty means something else), so that one is refused;
# it has no end-user field, and usage comes with every event.
OPTIONS = {name: name for name in ("tools", "tool_choice", "parallel_tool_calls", "response_format",
                                   "seed", "logprobs", "top_logprobs", "presence_penalty")}
OPTIONS.update({"user": None, "stream_options": None})

_CODES = {
    "InvalidApiKey": E.AuthenticationError,
    "AccessDenied": E.AuthenticationError,
    "AccessDenied.Unpurchased": E.AuthenticationError,
    "Arrearage": E.QuotaExceededError,                 # sent as 400, still a quota problem
    "Throttling": E.RateLimitError,
    "Throttling.RateQuota": E.RateLimitError,
    "Throttling.AllocationQuota": E.RateLimitError,
    "DataInspectionFailed": E.ContentFilterError,
    "Model.NotExist": E.ModelNotFoundError,
    "ModelNotFound": E.ModelNotFoundError,
    "InvalidParameter": E.BadRequestError,
    "BadRequest.EmptyInput": E.BadRequestError,
    "BadRequest.EmptyParameters": E.BadRequestError,
    "BadRequest.EmptyModel": E.BadRequestError,
    "InvalidURL": E.BadRequestError,
    "InternalError": E.ServerError,
    "ServiceUnavailable": E.ServerError,
    "GatewayTimeout": E.ServerError,
}

_BY_STATUS = {400: E.BadRequestError, 401: E.AuthenticationError, 403: E.AuthenticationError,
              404: E.ModelNotFoundError, 429: E.RateLimitError}


def _finish(value: Any) -> Optional[str]:
    return None if value in (None, "null", "") else value


class DashScopeAdapter(Adapter):
    def chat_request(self, req: ChatRequest, conn: Connection, token: Optional[str] = None) -> HTTPRequest:
        parameters: Dict[str, Any] = {"result_format": "message"}
        for name, value in (("temperature", req.temperature), ("top_p", req.top_p),
                            ("max_tokens", req.max_tokens), ("stop", req.stop)):
            if value is not None:
                parameters[name] = value
        parameters.update(wire_options(req.extra, OPTIONS))
        headers = {
            "Authorization": f"Bearer {conn.api_key}",
            "Content-Type": "application/json; charset=utf-8",
            "Accept": "application/json; charset=utf-8",
        }
        if req.stream:
            # Always ask for deltas (as the SDK does); without it each event repeats the
            # whole text so far.
            parameters["incremental_output"] = True
            headers.update({"Accept": "text/event-stream", "X-DashScope-SSE": "enable",
                            "X-Accel-Buffering": "no"})
        if has_images(req.messages):
            if not sees("qwen", req.model):
                raise cannot_see("通义千问", "Qwen", req.model)
            # Every message's content is a list of parts there, the system prompt's too.
            messages = [dict(m, content=_native_parts(m.get("content"))) for m in req.messages]
            path = "services/aigc/multimodal-generation/generation"
        else:
            # An assistant turn that only called tools has content None; DashScope wants text.
            messages = [dict(m, content=m.get("content") or "") for m in req.messages]
            path = "services/aigc/text-generation/generation"
        model = self.provider.wire_model(req.model) if self.provider else req.model
        body = {"model": model, "input": {"messages": messages}, "parameters": parameters}
        return HTTPRequest("POST", join_url(conn.base_url, path), headers, body)

    def embeddings_request(self, texts: List[str], model: str, conn: Connection,
                           token: Optional[str] = None) -> HTTPRequest:
        headers = {"Authorization": f"Bearer {conn.api_key}", "Content-Type": "application/json; charset=utf-8"}
        body = {"model": model, "input": {"texts": list(texts)}}
        return HTTPRequest("POST", join_url(conn.base_url, "services/embeddings/text-embedding/text-embedding"),
                           headers, body)

    def parse_embeddings(self, body: bytes) -> EmbeddingResult:
        data = load_json(body, self)
        if not isinstance(data, dict):
            raise E.ServerError(provider=self.provider_name, detail="回复不是 JSON 对象 / reply is not a JSON object")
        if data.get("code"):
            raise self._error(None, data, {})
        items = [e for e in (data.get("output") or {}).get("embeddings") or () if isinstance(e, dict)]
        items.sort(key=lambda e: e.get("text_index", 0) if isinstance(e.get("text_index"), int) else 0)
        vectors = []
        for item in items:
            vector = item.get("embedding")
            if not isinstance(vector, list) or not all(isinstance(x, (int, float)) for x in vector):
                raise E.ServerError(provider=self.provider_name,
                                    detail="回复里的向量不是数字列表 / an embedding is not a list of numbers")
            vectors.append([float(x) for x in vector])
        usage = usage_from(data.get("usage"))
        if usage is not None and not usage.prompt_tokens:   # it reports total_tokens only: all input
            usage = Usage(usage.total_tokens, 0, usage.total_tokens)
        return EmbeddingResult(vectors=vectors, usage=usage, model=None)

    def models_request(self, conn: Connection, token: Optional[str] = None) -> Optional[HTTPRequest]:
        # XEduLLM lists Qwen models through the OpenAI-compatible mode (protocols.md 2.7):
        # .../api/v1 -> .../compatible-mode/v1/models
        base = conn.base_url.rstrip("/")
        if base.endswith("/api/v1"):
            base = base[: -len("/api/v1")] + "/compatible-mode/v1"
        return HTTPRequest("GET", join_url(base, "models"), {"Authorization": f"Bearer {conn.api_key}"})

    def parse_chat(self, body: bytes) -> ChatResult:
        data = load_json(body, self)
        if not isinstance(data, dict):
            raise E.ServerError(provider=self.provider_name, detail="回复不是 JSON 对象 / reply is not a JSON object")
        if data.get("code"):
            raise self._error(None, data, {})  # "200 + code" is an error (SDK v2)
        output = data.get("output") or {}
        choices = output.get("choices")
        tool_calls: list = []
        if choices:
            message = choices[0].get("message") or {}
            text, reasoning = message.get("content") or "", message.get("reasoning_content") or ""
            finish = _finish(choices[0].get("finish_reason"))
            tool_calls = _dicts(message.get("tool_calls"))
        else:  # legacy text form
            text, reasoning, finish = output.get("text") or "", "", _finish(output.get("finish_reason"))
        return ChatResult(text=_content_text(text), reasoning=reasoning, finish_reason=finish,
                          usage=usage_from(data.get("usage")), model=None, tool_calls=tool_calls)

    def parse_event(self, event: SSEEvent) -> EventResult:
        if not event.data.strip():
            return None
        data = load_json(event.data, self)
        if event.event == "error" or (isinstance(data, dict) and data.get("code")):
            status = _status_from_comments(event.comments)
            raise self._error(status, data if isinstance(data, dict) else {}, {}, in_stream=True)
        if not isinstance(data, dict):
            return None
        output = data.get("output") or {}
        choices = output.get("choices")
        tool_calls: list = []
        if choices:
            message = choices[0].get("message") or {}
            text = _content_text(message.get("content") or "")
            reasoning = message.get("reasoning_content") or ""
            finish = _finish(choices[0].get("finish_reason"))
            tool_calls = _dicts(message.get("tool_calls"))
        else:
            text, reasoning, finish = output.get("text") or "", "", _finish(output.get("finish_reason"))
        return ChatChunk(text=text, reasoning=reasoning, finish_reason=finish,
                         usage=usage_from(data.get("usage")), tool_calls=tool_calls)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> E.LLMError:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            data = {"message": body[:300].decode("utf-8", "replace").strip()}
        if not isinstance(data, dict):
            data = {"message": str(data)[:300]}
        return self._error(status, data, headers)

    def _error(self, status, data: dict, headers: Mapping[str, str], in_stream: bool = False) -> E.LLMError:
        code = data.get("code")
        cls = _CODES.get(str(code)) if code else None
        if cls is None:
            if status in _BY_STATUS:
                cls = _BY_STATUS[status]
            elif status is not None and status >= 500:
                cls = E.ServerError
            elif status is not None and status >= 400 or in_stream:
                cls = E.BadRequestError  # the 1.x SDK defaults an error frame's status to 400
            else:
                cls = E.ServerError
        return cls(provider=self.provider_name, status_code=status, code=code,
                   detail=str(data.get("message") or data.get("msg") or "")[:500] or None,
                   retry_after=retry_after_seconds(headers) if headers else None)


def _status_from_comments(comments) -> Optional[int]:
    for comment in comments:
        if comment.startswith("HTTP_STATUS/"):
            try:
                return int(comment.split("/", 1)[1])
            except ValueError:
                return None
    return None


def _native_parts(content: Any) -> List[Dict[str, str]]:
    """OpenAI's parts (or plain text) as the multimodal endpoint's ``{"text"}`` / ``{"image"}``."""
    if not isinstance(content, list):
        return [{"text": content or ""}]
    return [{"image": image_url(p)} if is_image_part(p) else {"text": p.get("text", "")} for p in content]


def _content_text(content: Any) -> str:
    # Multimodal-style answers carry content as a list of {"text": ...} parts.
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""
