"""Fake OpenAI-compatible provider (protocols.md section 1), one flavor per provider."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .answer_shapes import shape_answer
from .fake_server import (BAD_UTF8_MARK, Answer, FakeServer, Reply, Wire, corrupt, dumps, fake_embedding,
                          split_pieces)

FLAVORS = ("openai", "deepseek", "moonshot", "openrouter", "glm", "qwen", "qianfan")
_OPENAI_STYLE = ("openai", "deepseek", "qwen", "qianfan")  # {"error":{message,type,(param,)code}}
_PLAIN_USAGE = ("openai", "deepseek", "qwen", "qianfan")   # usage chunk only with include_usage
# Where each flavor's API lives under the host: Qianfan v2 is at /v2 (docs/qianfan_v2.md).
BASE_PATHS = {"qianfan": "/v2"}
REASONING_MODELS = ("deepseek-reasoner",)
# Models that see pictures at the fakes (as at the providers: qwen-vl-*, glm-4v-*, *-vision-*).
VISION_MARKS = ("-vl", "4v", "vision")
# Embedding models every flavor's fake knows, and texts one request may carry (GLM's 64).
EMBEDDING_MODELS = ("text-embedding-3-small", "text-embedding-v3", "text-embedding-v4", "embedding-3", "embedding-2")
MAX_EMBEDDING_INPUTS = 64
_ROLES = ("system", "user", "assistant", "tool")


# Served besides the catalog's models: the vision models of each flavor among them.
_EXTRA_MODELS = {"qwen": ("qwen-turbo", "qwen-plus", "qwen-max", "qwen-vl-max", "qwen-vl-plus"),
                 "glm": ("glm-4v-flash",), "moonshot": ("moonshot-v1-8k-vision-preview",)}


def default_models(flavor: str) -> Tuple[str, ...]:
    if flavor == "openai":
        return ("gpt-4o-mini", "gpt-4o")
    from ..catalog import API_FORMS, PROVIDERS

    if flavor == "qianfan":
        return next(f.models for f in API_FORMS if f.form == "qianfan-v2")
    for provider in PROVIDERS:
        if provider.id == flavor:
            return tuple(dict.fromkeys(provider.models + _EXTRA_MODELS.get(flavor, ())))
    raise ValueError(f"unknown flavor {flavor!r}; choose one of {FLAVORS}")


def _status_kind(status: int) -> str:
    return {400: "bad_request", 401: "auth", 402: "payment", 403: "forbidden",
            404: "not_found", 408: "timeout", 422: "unprocessable", 429: "rate",
            500: "server", 502: "bad_gateway", 503: "overloaded",
            504: "timeout"}.get(status, "server" if status >= 500 else "bad_request")


# (type, code, message) per error kind for the {"error":{message,type,param,code}} flavors.
_OPENAI_ERRORS: Dict[str, Dict[str, Tuple[str, Optional[str], str]]] = {
    "openai": {
        "bad_request": ("invalid_request_error", None, "Invalid request."),
        "auth": ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
        "payment": ("insufficient_quota", "insufficient_quota",
                    "You exceeded your current quota, please check your plan and billing details."),
        "forbidden": ("invalid_request_error", "unsupported_country_region_territory",
                      "Country, region, or territory not supported."),
        "not_found": ("invalid_request_error", "model_not_found",
                      "The model does not exist or you do not have access to it."),
        "unprocessable": ("invalid_request_error", None, "Invalid parameter value."),
        "rate": ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
        "quota": ("insufficient_quota", "insufficient_quota",
                  "You exceeded your current quota, please check your plan and billing details."),
        "timeout": ("server_error", None, "Request timed out."),
        "server": ("server_error", None, "The server had an error while processing your request."),
        "bad_gateway": ("server_error", None, "Bad gateway."),
        "overloaded": ("server_error", None, "The engine is currently overloaded."),
    },
    "deepseek": {
        "bad_request": ("invalid_request_error", "invalid_request_error", "Invalid request body."),
        "auth": ("authentication_error", "invalid_request_error",
                 "Authentication Fails, Your api key is invalid"),
        "payment": ("unknown_error", "invalid_request_error", "Insufficient Balance"),
        "quota": ("unknown_error", "invalid_request_error", "Insufficient Balance"),
        "forbidden": ("invalid_request_error", "invalid_request_error", "Forbidden."),
        # protocols.md 1.6: HTTP 400 with the generic code; only the message says "model".
        "not_found": ("invalid_request_error", "invalid_request_error", "Model Not Exist"),
        "unprocessable": ("invalid_request_error", "invalid_request_error",
                          "Invalid parameter value."),
        "rate": ("rate_limit_error", "invalid_request_error", "Rate Limit Reached"),
        "timeout": ("api_error", "invalid_request_error", "Request timed out."),
        "server": ("api_error", "invalid_request_error", "Server Error"),
        "bad_gateway": ("api_error", "invalid_request_error", "Bad Gateway"),
        "overloaded": ("api_error", "invalid_request_error", "Server Overloaded"),
    },
    "qwen": {
        "bad_request": ("invalid_request_error", "invalid_parameter_error", "Invalid request."),
        "auth": ("invalid_request_error", "invalid_api_key", "Incorrect API key provided. "),
        "payment": ("Arrearage", "Arrearage",
                    "Access denied, please make sure your account is in good standing."),
        "quota": ("Arrearage", "Arrearage",
                  "Access denied, please make sure your account is in good standing."),
        "forbidden": ("AccessDenied", "AccessDenied", "Access denied."),
        "not_found": ("invalid_request_error", "model_not_found",
                      "The model does not exist or you do not have access to it."),
        "unprocessable": ("invalid_request_error", "invalid_parameter_error",
                          "Invalid parameter value."),
        "rate": ("limit_requests", "limit_requests",
                 "Requests rate limit exceeded, please try again later."),
        "timeout": ("RequestTimeOut", "RequestTimeOut", "Request timed out."),
        "server": ("internal_error", "internal_error", "An internal error has occured."),
        "bad_gateway": ("internal_error", "internal_error", "Bad gateway."),
        "overloaded": ("ServiceUnavailable", "ServiceUnavailable", "Service unavailable."),
    },
}

# Qianfan v2's table (Baidu "错误码说明", docs/qianfan_v2.md): statuses are in _KIND_STATUS.
_OPENAI_ERRORS["qianfan"] = {
    "bad_request": ("invalid_request_error", "invalid_argument", "Invalid Argument"),
    "auth": ("invalid_request_error", "invalid_iam_token", "IAM Certification failed"),
    "payment": ("access_denied", "account_overdue", "Access denied due to overdue account"),
    "quota": ("access_denied", "account_overdue", "Access denied due to overdue account"),
    "forbidden": ("unsafe_request", "system_unsafe", "the content of system field is invalid"),
    "not_found": ("invalid_request_error", "invalid_model",
                  "The model does not exist or you do not have access to it."),
    "unprocessable": ("invalid_request_error", "invalid_argument", "Invalid Argument"),
    "rate": ("rate_limit_exceeded", "rpm_rate_limit_exceeded", "Rate limit reached for RPM"),
    "timeout": ("Internal_error", "internal_error", "Internal error"),
    "server": ("Internal_error", "internal_error", "Internal error"),
    "bad_gateway": ("Internal_error", "internal_error", "Internal error"),
    "overloaded": ("Internal_error", "dispatch_internal_error", "Internal error"),
}

_MOONSHOT_TYPES = {
    "bad_request": ("invalid_request_error", "Invalid request."),
    "auth": ("invalid_authentication_error", "Invalid Authentication"),
    "payment": ("exceeded_current_quota_error",
                "Your account is suspended, please check your plan and billing details"),
    "quota": ("exceeded_current_quota_error",
              "Your account is suspended, please check your plan and billing details"),
    "forbidden": ("permission_denied_error", "Permission denied."),
    "not_found": ("resource_not_found_error", "Not found the model or Permission denied"),
    "unprocessable": ("invalid_request_error", "Invalid parameter value."),
    "rate": ("rate_limit_reached_error", "Your account reached max request rate limit."),
    "timeout": ("server_error", "Request timed out."),
    "server": ("server_error", "Internal server error."),
    "bad_gateway": ("server_error", "Bad gateway."),
    # engine_overloaded_error is Moonshot's 429 (a rate limit); a 503 stays a server error.
    "overloaded": ("server_error", "The engine is currently overloaded, please try again later."),
}

_GLM_CODES = {
    "bad_request": ("1214", "参数非法，请检查文档。"),
    "auth": ("1000", "身份验证失败。"),
    "auth_missing": ("1001", "Header中未收到Authorization参数，无法进行身份验证。"),
    "auth_expired": ("1003", "Authorization Token已过期。"),
    "payment": ("1113", "您的账户已欠费，请充值后重试。"),
    "quota": ("1113", "您的账户已欠费，请充值后重试。"),
    "forbidden": ("1220", "您无权访问该API。"),
    "not_found": ("1211", "模型不存在，请检查模型代码。"),
    "unprocessable": ("1214", "参数非法，请检查文档。"),
    "rate": ("1302", "您当前使用该API的并发数过高，请降低并发，或联系客服增加限额。"),
    "timeout": ("500", "请求超时。"),
    "server": ("500", "内部错误。"),
    "bad_gateway": ("500", "内部错误。"),
    # 1305 comes with a 429 (rate limit); a plain 503 carries the internal-error code.
    "overloaded": ("500", "服务暂时不可用，请稍后重试。"),
}

_OPENROUTER_MESSAGES = {
    "bad_request": "Invalid request.", "auth": "No auth credentials found",
    "payment": "Insufficient credits. Add more using https://openrouter.ai/settings/credits",
    "quota": "Insufficient credits. Add more using https://openrouter.ai/settings/credits",
    "forbidden": "Input was flagged by moderation.", "not_found": "Model not found.",
    "unprocessable": "Invalid parameter value.", "rate": "Rate limit exceeded.",
    "timeout": "Request timed out.", "server": "Internal Server Error",
    "bad_gateway": "Upstream provider returned an invalid response.",
    "overloaded": "No provider available that meets your routing requirements.",
}

# HTTP status each flavor uses for the semantic kinds that are not a plain status.
_KIND_STATUS = {
    "quota": {"openai": 429, "deepseek": 402, "moonshot": 429, "openrouter": 402,
              "glm": 429, "qwen": 400, "qianfan": 403},
    "payment": {"qianfan": 403},
    # Qianfan v2 answers an unknown model with 401 invalid_model (its 400 invalid_model means
    # "model is empty").
    "not_found": {"glm": 400, "deepseek": 400, "qianfan": 401},
}


def error_payload(flavor: str, kind: str, message: Optional[str] = None,
                  status: Optional[int] = None) -> Dict[str, Any]:
    """The flavor's JSON error body for a semantic ``kind``."""
    if flavor in _OPENAI_STYLE:
        etype, code, text = _OPENAI_ERRORS[flavor][kind]
        if flavor == "qianfan":   # no param; the request id beside the error
            return {"error": {"code": code, "message": message or text, "type": etype},
                    "id": "as-fake0001"}
        body: Dict[str, Any] = {"error": {"message": message or text, "type": etype,
                                          "param": None, "code": code}}
        if flavor == "qwen":
            body["request_id"] = "req-fake-0001"
        return body
    if flavor == "moonshot":
        etype, text = _MOONSHOT_TYPES[kind]
        return {"error": {"message": message or text, "type": etype}}
    if flavor == "glm":
        code, text = _GLM_CODES[kind]
        return {"error": {"code": code, "message": message or text}}
    return {"error": {"code": status or 400, "message": message or _OPENROUTER_MESSAGES[kind]}}


def error_status(flavor: str, kind: str, default: int) -> int:
    return _KIND_STATUS.get(kind, {}).get(flavor, default)


@dataclass
class _Ctx:
    flavor: str
    model: str
    id: str
    created: int
    include_usage: bool
    reasoning: bool
    # ``logprobs: true`` asked: how many alternatives each token lists (``top_logprobs``)
    top_logprobs: Optional[int] = None


class OpenAIWire(Wire):
    """Chat completion bodies and chunks as each flavor sends them (protocols.md 1.3-1.6)."""

    def __init__(self, flavor: str) -> None:
        self.flavor = flavor

    stream_media_type = "text/event-stream; charset=utf-8"

    def preamble(self, ctx: _Ctx) -> List[bytes]:
        if self.flavor == "deepseek":
            return [b": keep-alive\n\n"]
        if self.flavor == "openrouter":
            return [b": OPENROUTER PROCESSING\n\n"]
        return []

    def comment(self, ctx: _Ctx) -> bytes:
        return b": OPENROUTER PROCESSING\n\n" if self.flavor == "openrouter" else b": keep-alive\n\n"

    def done(self, ctx: _Ctx) -> Optional[bytes]:
        return b"data: [DONE]\n\n"

    def _chunk(self, ctx: _Ctx, choices: list, **extra: Any) -> Dict[str, Any]:
        chunk: Dict[str, Any] = {"id": ctx.id}
        if self.flavor != "glm":
            chunk["object"] = "chat.completion.chunk"
        chunk["created"] = ctx.created
        chunk["model"] = ctx.model
        if self.flavor == "openrouter":
            chunk["provider"] = "FakeProvider"
        chunk["choices"] = choices
        chunk.update(extra)
        return chunk

    @staticmethod
    def _logprobs(ctx: _Ctx, pieces: List[str]) -> Optional[Dict[str, Any]]:
        """A made-up but well-formed ``logprobs`` object: each piece one token at -0.5."""
        if ctx.top_logprobs is None:
            return None
        def token(text: str, logprob: float) -> Dict[str, Any]:
            return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}
        return {"content": [dict(token(p, -0.5), top_logprobs=[token(p, -0.5)] * ctx.top_logprobs)
                            for p in pieces]}

    def _choice(self, delta: Dict[str, Any], finish: Optional[str] = None,
                logprobs: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        choice: Dict[str, Any] = {"index": 0, "delta": delta}
        if logprobs is not None:
            choice["logprobs"] = logprobs
        if self.flavor != "glm" or finish is not None:
            choice["finish_reason"] = finish
        if self.flavor == "openrouter":
            choice["native_finish_reason"] = finish
        return choice

    def _delta(self, ctx: _Ctx, first: bool, content: Optional[str],
               reasoning: Optional[str] = None) -> Dict[str, Any]:
        delta: Dict[str, Any] = {}
        if first or self.flavor == "glm":
            delta["role"] = "assistant"
        delta["content"] = content
        if ctx.reasoning:
            delta["reasoning_content"] = reasoning
        return delta

    @staticmethod
    def _frame(obj: Dict[str, Any]) -> bytes:
        return b"data: " + dumps(obj) + b"\n\n"

    def stream_frames(self, ctx: _Ctx, answer: Answer) -> List[Tuple[bytes, Optional[dict]]]:
        null_usage = {"usage": None} if self.flavor in _PLAIN_USAGE and ctx.include_usage else {}
        deltas = [self._delta(ctx, False, None, r) for r in answer.reasoning]
        deltas += [self._delta(ctx, False, p, None) for p in answer.pieces]
        deltas += self._tool_call_deltas(ctx, answer)
        first = self._delta(ctx, True, deltas[0]["content"], deltas[0].get("reasoning_content"))
        deltas[0] = {**first, **{k: v for k, v in deltas[0].items() if k not in first}}
        finish = "tool_calls" if answer.tool_calls else "stop"
        # Only the answer's own pieces carry logprobs (OpenAI's shape: choice.logprobs.content).
        scored = [None] * len(answer.reasoning) + [self._logprobs(ctx, [p]) for p in answer.pieces]
        scored += [None] * (len(deltas) - len(scored))
        frames: List[Tuple[bytes, Optional[dict]]] = [
            (self._frame(self._chunk(ctx, [self._choice(d, logprobs=lp)], **null_usage)), None)
            for d, lp in zip(deltas, scored)]
        usage = answer.usage()
        wire_usage = self._wire_usage(ctx, answer)
        if self.flavor == "glm":
            final = self._chunk(ctx, [self._choice({"role": "assistant", "content": ""}, finish)],
                                usage=wire_usage)
            frames.append((self._frame(final), usage))
        elif self.flavor == "moonshot":
            choice = self._choice({}, finish)
            choice["usage"] = wire_usage
            frames.append((self._frame(self._chunk(ctx, [choice])), usage))
        else:
            frames.append((self._frame(self._chunk(ctx, [self._choice({}, finish)],
                                                   **null_usage)), None))
            if self.flavor == "openrouter" or ctx.include_usage:
                frames.append((self._frame(self._chunk(ctx, [], usage=wire_usage)), usage))
        return frames

    def _tool_call_deltas(self, ctx: _Ctx, answer: Answer) -> List[Dict[str, Any]]:
        """OpenAI's stream of a tool call: a first piece with index, id, type and name (empty
        arguments), then pieces carrying only index and a fragment of the arguments."""
        deltas: List[Dict[str, Any]] = []
        for index, call in enumerate(answer.tool_calls):
            head = {"index": index, "id": call["id"], "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""}}
            deltas.append({"content": None, "tool_calls": [head]})
            deltas += [{"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                       for piece in split_pieces(call["function"]["arguments"])]
        return deltas

    def _wire_usage(self, ctx: _Ctx, answer: Answer) -> Dict[str, Any]:
        usage: Dict[str, Any] = answer.usage()
        if ctx.reasoning:
            usage["completion_tokens_details"] = {"reasoning_tokens": len(answer.reasoning)}
        return usage

    def malformed_frame(self, ctx: _Ctx, index: int) -> bytes:
        return b'data: {"id":"' + ctx.id.encode() + b'","choices":[{"index":0,"delta":{"content":"\xe5\x8d\x8a\n\n'

    def invalid_utf8_frame(self, ctx: _Ctx, index: int) -> bytes:
        delta = self._delta(ctx, False, "坏" + BAD_UTF8_MARK + "字")
        return corrupt(self._frame(self._chunk(ctx, [self._choice(delta)])))

    def _error_object(self, code: Any, message: Optional[str]) -> Dict[str, Any]:
        if self.flavor == "moonshot":
            return {"error": {"message": message or "Internal server error.",
                              "type": code or "server_error"}}
        if self.flavor == "glm":
            return {"error": {"code": str(code or "500"), "message": message or "内部错误。"}}
        if self.flavor == "openrouter":
            return {"error": {"code": code or 502,
                              "message": message or "upstream provider disconnected"}}
        return {"error": {"message": message or "The server had an error while processing "
                                                "your request.",
                          "type": "server_error", "param": None, "code": code or "server_error"}}

    def error_frame(self, ctx: _Ctx, index: int, code: Any, message: Optional[str]) -> bytes:
        error = self._error_object(code, message)
        if self.flavor == "openrouter":
            choice = self._choice({"content": ""}, "error")
            return self._frame(self._chunk(ctx, [choice], **error))
        if self.flavor == "glm":
            return b"event: error\n" + self._frame(error)
        return self._frame(error)

    def body(self, ctx: _Ctx, answer: Answer) -> bytes:
        message: Dict[str, Any] = {"role": "assistant",
                                   "content": None if answer.tool_calls else answer.text}
        if ctx.reasoning:
            message["reasoning_content"] = answer.reasoning_text
        if answer.tool_calls:
            message["tool_calls"] = answer.tool_calls
        finish = "tool_calls" if answer.tool_calls else "stop"
        result: Dict[str, Any] = {"id": ctx.id}
        if self.flavor != "glm":
            result["object"] = "chat.completion"
        result.update({"created": ctx.created, "model": ctx.model,
                       "choices": [{"index": 0, "message": message, "finish_reason": finish,
                                    **({"logprobs": self._logprobs(ctx, answer.pieces)}
                                       if ctx.top_logprobs is not None else {})}],
                       "usage": self._wire_usage(ctx, answer)})
        if self.flavor == "glm":
            result["request_id"] = ctx.id
        if self.flavor == "openrouter":
            result["provider"] = "FakeProvider"
        return dumps(result)

    def error_body(self, ctx: _Ctx, code: Any, message: Optional[str]) -> bytes:
        return dumps(self._error_object(code, message))

    def error_response(self, ctx: Any, kind: str,
                       status: Optional[int]) -> Tuple[int, Any, Dict[str, str]]:
        if kind == "status":
            assert status is not None
            return status, error_payload(self.flavor, _status_kind(status), status=status), {}
        semantic = "quota" if kind == "quota" else "rate"
        code = error_status(self.flavor, semantic, 429)
        return code, error_payload(self.flavor, semantic, status=code), {}


class OpenAIEndpoints:
    """The routes of one OpenAI-compatible API under ``prefix``; also reused by the DashScope
    fake for its compatible mode. Records, faults and counters live on ``fake``."""

    def __init__(self, fake: FakeServer, flavor: str, api_key: Optional[str],
                 models: Optional[Sequence[str]], prefix: str) -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"unknown flavor {flavor!r}; choose one of {FLAVORS}")
        self.fake = fake
        self.flavor = flavor
        self.api_key = api_key
        self.models = tuple(models) if models is not None else default_models(flavor)
        self.prefix = prefix
        self.wire = OpenAIWire(flavor)

    def routes(self) -> list:
        from starlette.routing import Route

        return [Route(self.prefix + "/chat/completions", self.chat, methods=["POST"]),
                Route(self.prefix + "/models", self.list_models, methods=["GET"]),
                Route(self.prefix + "/embeddings", self.embeddings, methods=["POST"])]

    def is_chat(self, path: str) -> bool:
        return path == self.prefix + "/chat/completions"

    def _error(self, kind: str, status: int, message: Optional[str] = None) -> Any:
        status = error_status(self.flavor, kind, status)
        return self.fake.json_response(status, error_payload(self.flavor, kind, message, status))

    def _auth_error(self, headers: Dict[str, str]) -> Any:
        header = headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            token = token.strip()
            if self.api_key is None or token == self.api_key:
                return None
            if self.flavor == "glm" and self.api_key and token.count(".") == 2:
                verdict = _check_glm_jwt(token, self.api_key)
                if verdict == "ok":
                    return None
                if verdict == "expired":
                    return self._error("auth_expired", 401)
            return self._error("auth", 401)
        if self.flavor == "glm":
            return self._error("auth_missing", 401)
        message = ("You didn't provide an API key." if self.flavor in _OPENAI_STYLE else None)
        return self._error("auth", 401, message)

    async def list_models(self, request: Any) -> Any:
        record, _ = await self.fake._record(request)
        denied = self._auth_error(record["headers"])
        if denied is not None:
            return denied
        owner = "system" if self.flavor != "openrouter" else "fake"
        return self.fake.json_response(200, {"object": "list", "data": [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": owner}
            for m in self.models]})

    def _validate(self, data: Any) -> Any:
        if not isinstance(data, dict):
            return self._error("bad_request", 400, "Request body must be a JSON object.")
        model = data.get("model")
        messages = data.get("messages")
        if not isinstance(model, str) or not model:
            return self._error("bad_request", 400, "Missing required parameter: 'model'.")
        if not isinstance(messages, list) or not messages:
            return self._error("bad_request", 400, "Missing required parameter: 'messages'.")
        for m in messages:
            calls_only = isinstance(m, dict) and m.get("role") == "assistant" and m.get("tool_calls")
            if not isinstance(m, dict) or m.get("role") not in _ROLES or (
                    "content" not in m and not calls_only):
                return self._error("bad_request", 400,
                                   "Invalid message: each needs a valid 'role' and 'content'.")
            if m.get("role") == "tool" and not isinstance(m.get("tool_call_id"), str):
                return self._error("bad_request", 400,
                                   "Invalid message: a 'tool' message needs 'tool_call_id'.")
            refused = self._check_parts(m, model)
            if refused is not None:
                return refused
            if model in REASONING_MODELS and "reasoning_content" in m:
                return self._error("bad_request", 400,
                                   "reasoning_content must not be sent back in messages.")
        if model not in self.models:
            # DeepSeek's body is fixed text; the others name the model.
            message = None if self.flavor in ("deepseek", "qianfan") else f"The model `{model}` does not exist."
            return self._error("not_found", 404, message)
        for name, high in (("temperature", 2.0), ("top_p", 1.0)):
            value = data.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 <= value <= high):
                kind, status = ("unprocessable", 422) if self.flavor == "deepseek" else (
                    "bad_request", 400)
                return self._error(kind, status, f"Invalid '{name}': must be in [0, {high}].")
        return None

    def _check_parts(self, message: Dict[str, Any], model: str) -> Any:
        """Content parts as the providers check them: text, and image_url (https or data:)
        in user turns, for a model that sees."""
        content = message.get("content")
        if not isinstance(content, list):
            return None
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                continue
            url = (part.get("image_url") or {}).get("url") if kind == "image_url" and isinstance(
                part.get("image_url"), dict) else None
            # GLM takes a picture's base64 bare and refuses a data: URL; the others take data: URLs.
            inline = ("data:image/",) if self.flavor != "glm" else ()
            if not isinstance(url, str) or message.get("role") != "user" or not (
                    url.startswith(("https://",) + inline) or self.flavor == "glm" and _bare_base64(url)):
                return self._error("bad_request", 400, "Invalid content part: use text, or image_url with a url.")
            if not any(mark in model.lower() for mark in VISION_MARKS):
                return self._error("bad_request", 400, f"Model {model} does not support image input.")
        return None

    async def embeddings(self, request: Any) -> Any:
        """``POST /embeddings``: OpenAI's shape (GLM and DashScope's compatible mode speak it too)."""
        record, data = await self.fake._record(request)
        denied = self._auth_error(record["headers"])
        if denied is not None:
            return denied
        if not isinstance(data, dict) or not isinstance(data.get("model"), str):
            return self._error("bad_request", 400, "Missing required parameter: 'model'.")
        texts = data.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            return self._error("bad_request", 400, "'input' must be a non-empty string or list of strings.")
        if len(texts) > MAX_EMBEDDING_INPUTS:
            return self._error("bad_request", 400, f"'input' may hold at most {MAX_EMBEDDING_INPUTS} texts.")
        if data["model"] not in EMBEDDING_MODELS:
            return self._error("not_found", 404, f"The model `{data['model']}` does not exist.")
        fault = self.fake._take_fault()
        if fault.error == "status" and fault.status_code:
            return self._error(_status_kind(fault.status_code), fault.status_code)
        tokens = sum(len(t) for t in texts)
        items = []
        for i, text in enumerate(texts):
            vector: Any = fake_embedding(text)
            if data.get("encoding_format") == "base64":
                from array import array

                vector = base64.b64encode(array("f", vector).tobytes()).decode("ascii")
            items.append({"object": "embedding", "index": i, "embedding": vector})
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        if self.flavor == "glm":
            usage["completion_tokens"] = 0
        self.fake._report_usage(None, {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens})
        return self.fake.json_response(200, {"object": "list", "data": items, "model": data["model"], "usage": usage})

    async def chat(self, request: Any) -> Any:
        fake = self.fake
        record, data = await fake._record(request)
        rejected = self._auth_error(record["headers"]) or self._validate(data)
        if rejected is not None:
            return rejected
        fault = fake._take_fault()
        model = data["model"]
        options = data.get("stream_options")
        ctx = _Ctx(flavor=self.flavor, model=model,
                   id=("gen-" if self.flavor == "openrouter" else "chatcmpl-")
                   + f"{fake._next_id():06d}",
                   created=int(time.time()),
                   include_usage=isinstance(options, dict) and options.get("include_usage") is True,
                   reasoning=model in REASONING_MODELS,
                   top_logprobs=int(data.get("top_logprobs") or 0) if data.get("logprobs") is True else None)
        answer = shape_answer(data, fake._answer(data["messages"], fault, reasoning=ctx.reasoning),
                              call_prefix=f"call_{ctx.id[-6:]}_")
        return fake.respond(self.wire, ctx, answer, fault, stream=data.get("stream") is True)


def _bare_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
        return bool(text)
    except ValueError:
        return False


def _check_glm_jwt(token: str, api_key: str) -> str:
    """'ok' | 'expired' | 'bad' for a Zhipu-style HS256 JWT (protocols.md 1.8)."""
    key_id, _, secret = api_key.partition(".")
    head, payload, signature = token.split(".")

    def unb64(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    expected = hmac.new(secret.encode(), f"{head}.{payload}".encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(unb64(signature), expected):
            return "bad"
        claims = json.loads(unb64(payload))
    except ValueError:
        return "bad"
    if claims.get("api_key") != key_id:
        return "bad"
    if not isinstance(claims.get("exp"), (int, float)) or claims["exp"] < time.time() * 1000:
        return "expired"
    return "ok"


class FakeOpenAIServer(FakeServer):
    """OpenAI-compatible provider at ``base_url`` = ``http://127.0.0.1:PORT/v1`` (flavor qianfan:
    ``.../v2``, Qianfan v2's path)."""

    _base_path = "/v1"

    def __init__(self, flavor: str = "openai", api_key: Optional[str] = "sk-test",
                 models: Optional[Sequence[str]] = None, reply: Reply = None,
                 token_delay: float = 0.0, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(reply=reply, token_delay=token_delay, host=host, port=port)
        self.flavor = flavor
        self.api_key = api_key
        self._base_path = BASE_PATHS.get(flavor, "/v1")
        self._api = OpenAIEndpoints(self, flavor, api_key, models, self._base_path)
        self.models = self._api.models

    def _routes(self) -> list:
        return self._api.routes()

    def _is_chat(self, path: str) -> bool:
        return self._api.is_chat(path)
