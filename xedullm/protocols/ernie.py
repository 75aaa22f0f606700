"""Baidu ERNIE v1 (wenxinworkshop): API Key + Secret Key -> OAuth token -> chat.
protocols.md section 3.

The model is the URL endpoint, the system prompt is a top-level ``system`` field, history must
be odd-length and alternate user/assistant, and errors arrive as ``error_code`` on HTTP 200.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .. import errors as E
from ..pictures import cannot_see, has_images
from ..sse import SSEEvent
from ..types import ChatChunk, ChatRequest, ChatResult, Connection, HTTPRequest
from .adapter import Adapter, EventResult, load_json, retry_after_seconds, usage_from
from .options import wire_options

# protocols.md 3.3: what every v1 chat endpoint takes. Its tools, response_format and
# function calling differ per model and are unconfirmed, so they are refused with a clear
# error instead of being sent and failing in an unknown way; v1 has no seed or logprobs.
OPTIONS = {"frequency_penalty": "frequency_penalty", "presence_penalty": "presence_penalty",
           "user": "user_id", "stream_options": None}

_CHAT_PATH = "rpc/2.0/ai_custom/v1/wenxinworkshop/chat/"

_CODES = {
    110: E.AuthenticationError, 111: E.AuthenticationError,   # token invalid/expired: refreshed first
    13: E.AuthenticationError, 14: E.AuthenticationError, 6: E.AuthenticationError,
    15: E.AuthenticationError, 336004: E.AuthenticationError,
    17: E.QuotaExceededError, 19: E.QuotaExceededError,
    18: E.RateLimitError, 4: E.RateLimitError, 336501: E.RateLimitError, 336502: E.RateLimitError,
    2: E.ServerError, 336100: E.ServerError, 336000: E.ServerError, 1: E.ServerError,
    3: E.BadRequestError, 100: E.BadRequestError, 336001: E.BadRequestError,
    336002: E.BadRequestError, 336003: E.BadRequestError, 336006: E.BadRequestError,
    336101: E.BadRequestError, 336104: E.BadRequestError, 336105: E.BadRequestError,
    336005: E.ModelNotFoundError,   # unknown endpoint = unknown model (exact code unconfirmed)
}
_TOKEN_EXPIRED = {"110", "111"}


def valid_history(messages: List[Dict[str, str]]) -> Tuple[Optional[str], List[Dict[str, str]]]:
    """Split out the system prompt and reshape the rest into what ERNIE accepts.

    ERNIE wants user/assistant strictly alternating, starting and ending with user. Adjacent
    turns of one role are joined; leading assistant turns (no question before them) and
    trailing assistant turns (nothing to answer) are dropped.
    """
    system = "\n".join(m["content"] for m in messages if m["role"] == "system") or None
    turns: List[Dict[str, str]] = []
    for m in messages:
        if m["role"] not in ("user", "assistant"):
            continue
        if turns and turns[-1]["role"] == m["role"]:
            turns[-1] = {"role": m["role"], "content": turns[-1]["content"] + "\n" + m["content"]}
        else:
            turns.append({"role": m["role"], "content": m["content"]})
    while turns and turns[0]["role"] != "user":
        turns.pop(0)
    while turns and turns[-1]["role"] != "user":
        turns.pop()
    return system, turns


class ErnieAdapter(Adapter):
    uses_token = True

    def endpoint(self, model: str) -> str:
        return self.provider.wire_model(model) if self.provider else model

    def token_request(self, conn: Connection) -> HTTPRequest:
        return HTTPRequest(
            "POST", f"{conn.base_url.rstrip('/')}/oauth/2.0/token",
            {"Content-Type": "application/json", "Accept": "application/json"},
            params={"grant_type": "client_credentials", "client_id": conn.api_key or "",
                    "client_secret": conn.secret_key or ""},
        )

    def parse_token(self, status: int, body: bytes) -> Tuple[str, float]:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            data = {}
        if status == 200 and isinstance(data, dict) and data.get("access_token"):
            return data["access_token"], float(data.get("expires_in") or 2592000)
        description = data.get("error_description") if isinstance(data, dict) else None
        if status in (400, 401) or (isinstance(data, dict) and data.get("error") == "invalid_client"):
            return_cls = E.AuthenticationError
        else:
            return_cls = E.ServerError
        raise return_cls(
            provider=self.provider_name, status_code=status,
            code=data.get("error") if isinstance(data, dict) else None,
            detail=description or "获取 access token 失败，请检查 API Key 和 Secret Key / could not get an access token: check the API Key and Secret Key",
        )

    def check_request(self, req: ChatRequest) -> None:
        if has_images(req.messages):
            raise cannot_see("文心一言", "ERNIE", req.model, "（千帆 v1 接口只收文字；v2 接口的 ernie-4.5-*-vl 能看图）",
                             " (the Qianfan v1 API takes text only; ernie-4.5-*-vl on the v2 API can see)")

    def chat_request(self, req: ChatRequest, conn: Connection, token: Optional[str] = None) -> HTTPRequest:
        self.check_request(req)
        system, turns = valid_history(req.messages)
        if not turns:
            raise E.BadRequestError(
                "文心一言需要至少一条用户消息。/ ERNIE needs at least one user message.",
                provider=self.provider_name)
        body: Dict[str, Any] = {"messages": turns}
        if system:
            body["system"] = system
        for name, value in (("temperature", req.temperature), ("top_p", req.top_p),
                            ("max_output_tokens", req.max_tokens), ("stop", req.stop)):
            if value is not None:
                body[name] = value
        body.update(wire_options(req.extra, OPTIONS))
        if req.stream:
            body["stream"] = True
        url = f"{conn.base_url.rstrip('/')}/{_CHAT_PATH}{self.endpoint(req.model)}"
        return HTTPRequest("POST", url, {"Content-Type": "application/json"}, body,
                           params={"access_token": token or ""})

    def parse_chat(self, body: bytes) -> ChatResult:
        data = load_json(body, self)
        if not isinstance(data, dict):
            raise E.ServerError(provider=self.provider_name, detail="回复不是 JSON 对象 / reply is not a JSON object")
        self._raise_if_error(data, None)
        return ChatResult(text=data.get("result") or "", finish_reason=data.get("finish_reason"),
                          usage=usage_from(data.get("usage")))

    def parse_event(self, event: SSEEvent) -> EventResult:
        if not event.data.strip():
            return None
        data = load_json(event.data, self)
        if not isinstance(data, dict):
            return None
        self._raise_if_error(data, None)
        return ChatChunk(text=data.get("result") or "",
                         # is_end is ERNIE's end marker (its streams have no [DONE]).
                         finish_reason=(data.get("finish_reason") or "stop") if data.get("is_end") else None,
                         usage=usage_from(data.get("usage")))

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> E.LLMError:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            data = {}
        if isinstance(data, dict) and "error_code" in data:
            err = self._error(data, status)
            err.retry_after = retry_after_seconds(headers)
            return err
        # Gateway errors put their details in headers (protocols.md 3.6).
        detail = headers.get("x-bce-error-message") or body[:300].decode("utf-8", "replace").strip()
        cls = {401: E.AuthenticationError, 403: E.AuthenticationError, 404: E.ModelNotFoundError,
               429: E.RateLimitError}.get(status)
        cls = cls or (E.ServerError if status >= 500 else E.BadRequestError)
        return cls(provider=self.provider_name, status_code=status,
                   code=headers.get("x-bce-error-code"), detail=detail or None,
                   retry_after=retry_after_seconds(headers))

    def is_token_expired(self, error: E.LLMError) -> bool:
        return error.code in _TOKEN_EXPIRED

    def _raise_if_error(self, data: dict, status: Optional[int]) -> None:
        if data.get("error_code"):
            raise self._error(data, status)

    def _error(self, data: dict, status: Optional[int]) -> E.LLMError:
        code = data.get("error_code")
        try:
            cls = _CODES.get(int(code), E.ServerError)
        except (TypeError, ValueError):
            cls = E.ServerError
        return cls(provider=self.provider_name, status_code=status, code=code,
                   detail=str(data.get("error_msg") or "")[:500] or None)
