"""Fake Baidu ERNIE v1 (protocols.md section 3): OAuth token step plus wenxinworkshop chat; and
Qianfan v2 (docs/qianfan_v2.md) at ``/v2`` with its one bce-v3/ key, sharing records and faults."""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .fake_server import BAD_UTF8_MARK, Answer, FakeServer, Reply, Wire, corrupt, dumps
from .openai_fake import OpenAIEndpoints

TOKEN_PATH = "/oauth/2.0/token"
CHAT_PREFIX = "/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/"
ENDPOINTS = ("ernie_speed", "ernie-speed-128k", "ernie-lite-8k", "eb-instant", "ernie-tiny-8k",
             "ernie-lite-pro-8k", "completions", "completions_pro", "ernie-3.5-128k",
             "ernie-4.0-turbo-8k", "ernie-speed-pro-128k", "ernie-char-8k")
TOKEN_LIFETIME = 2592000

ERROR_MESSAGES = {
    2: "Service temporarily unavailable",
    17: "Open api daily request limit reached",
    18: "Open api qps request limit reached",
    110: "Access token invalid or no longer valid",
    111: "Access token expired",
    336000: "Internal error",
    336002: "Invalid JSON",
    336003: "Invalid argument",
    336005: "API name not exist",
    336006: "the length of messages must be an odd number",
    336100: "Server high load, please try again later",
}
_STATUS_CODES = {400: 336003, 401: 110, 402: 17, 403: 336004, 404: 336005, 429: 18,
                 500: 336000, 502: 2, 503: 336100, 504: 2}
_RATE_HEADERS = {"x-ratelimit-limit-requests": "300", "x-ratelimit-limit-tokens": "300000"}


def error(code: int, message: Optional[str] = None, request_id: Optional[str] = None) -> dict:
    body: Dict[str, Any] = {"error_code": code,
                            "error_msg": message or ERROR_MESSAGES.get(code, "Request failed")}
    if request_id:
        body["id"] = request_id
    return body


@dataclass
class _Ctx:
    id: str
    created: int


class ErnieWire(Wire):
    stream_error_as_body = True

    def headers(self, ctx: _Ctx) -> Dict[str, str]:
        return dict(_RATE_HEADERS)

    def _chunk(self, ctx: _Ctx, result: str, usage: Dict[str, int],
               sentence: Optional[int] = None, is_end: bool = False) -> Dict[str, Any]:
        chunk: Dict[str, Any] = {"id": ctx.id, "object": "chat.completion",
                                 "created": ctx.created}
        if sentence is not None:
            chunk.update({"sentence_id": sentence, "is_end": is_end})
        chunk.update({"result": result, "is_truncated": False, "need_clear_history": False,
                      "finish_reason": "normal", "usage": usage})
        return chunk

    def stream_frames(self, ctx: _Ctx, answer: Answer) -> List[Tuple[bytes, Optional[dict]]]:
        last = len(answer.pieces) - 1
        frames = []
        for i, piece in enumerate(answer.pieces):
            usage = answer.usage(i + 1)
            chunk = self._chunk(ctx, piece, usage, sentence=i, is_end=i == last)
            frames.append((b"data: " + dumps(chunk) + b"\n\n", usage))
        return frames

    def malformed_frame(self, ctx: _Ctx, index: int) -> bytes:
        return b'data: {"id":"' + ctx.id.encode() + b'","result":"\xe5\x8d\x8a\n\n'

    def invalid_utf8_frame(self, ctx: _Ctx, index: int) -> bytes:
        chunk = self._chunk(ctx, "坏" + BAD_UTF8_MARK + "字",
                            {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                            sentence=index)
        return corrupt(b"data: " + dumps(chunk) + b"\n\n")

    def error_frame(self, ctx: _Ctx, index: int, code: Any, message: Optional[str]) -> bytes:
        return b"data: " + dumps(error(code or 336000, message, ctx.id)) + b"\n\n"

    def body(self, ctx: _Ctx, answer: Answer) -> bytes:
        return dumps(self._chunk(ctx, answer.text, answer.usage()))

    def error_body(self, ctx: _Ctx, code: Any, message: Optional[str]) -> bytes:
        return dumps(error(code or 336000, message, ctx.id))

    def error_response(self, ctx: _Ctx, kind: str,
                       status: Optional[int]) -> Tuple[int, Any, Dict[str, str]]:
        if kind == "quota":
            return 200, error(17, request_id=ctx.id), {}
        if kind == "rate_limited":
            return 200, error(18, request_id=ctx.id), {}
        assert status is not None
        code = _STATUS_CODES.get(status, 336000 if status >= 500 else 336003)
        body = error(code, request_id=ctx.id)
        headers = {} if status < 300 else {"x-bce-error-code": str(code),
                                           "x-bce-error-message": body["error_msg"]}
        return status, body, headers


def _check_messages(messages: Any) -> Optional[str]:
    """Why ERNIE would reject this message list (error 336006), or None."""
    if not isinstance(messages, list) or not messages:
        return "the messages must not be empty"
    if len(messages) % 2 == 0:
        return "the length of messages must be an odd number"
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if i % 2 == 0 and role not in ("user", "function"):
            return "the role of message with even index in the messages must be user or function"
        if i % 2 == 1 and role != "assistant":
            return "the role of message with odd index in the messages must be assistant"
        if not isinstance(m.get("content"), str):
            return "the content of message must be a string"
    return None


class FakeErnieServer(FakeServer):
    """ERNIE v1 at ``base_url`` = ``http://127.0.0.1:PORT`` (host root); Qianfan v2 (flavor
    qianfan) at ``v2_base_url`` = ``.../v2``, answering ``v2_api_key``."""

    def __init__(self, api_key: str = "test-ak", secret_key: str = "test-sk",
                 reply: Reply = None, token_delay: float = 0.0, host: str = "127.0.0.1",
                 port: int = 0, v2_api_key: Optional[str] = "bce-v3/ALTAK-test/v2secret") -> None:
        super().__init__(reply=reply, token_delay=token_delay, host=host, port=port)
        self.api_key = api_key
        self.secret_key = secret_key
        self.v2_api_key = v2_api_key
        self._v2 = OpenAIEndpoints(self, "qianfan", v2_api_key, None, "/v2")
        self.token_requests = 0
        self._tokens: Dict[str, bool] = {}   # token -> expired?
        self.wire = ErnieWire()

    def _routes(self) -> list:
        from starlette.routing import Route

        return [Route(TOKEN_PATH, self.token, methods=["POST"]),
                Route(CHAT_PREFIX + "{endpoint}", self.chat, methods=["POST"])] + self._v2.routes()

    def _is_chat(self, path: str) -> bool:
        return path.startswith(CHAT_PREFIX) or self._v2.is_chat(path)

    @property
    def v2_base_url(self) -> str:
        return self.url + "/v2"

    @property
    def issued_tokens(self) -> List[str]:
        return list(self._tokens)

    def expire_tokens(self) -> None:
        """Every token issued so far now gets error 111 (new ones work)."""
        for token in list(self._tokens):
            self._tokens[token] = True

    def revoke_tokens(self) -> None:
        """Forget every token issued so far: they now get error 110."""
        self._tokens.clear()

    def reset(self) -> None:
        super().reset()
        self.token_requests = 0

    async def token(self, request: Any) -> Any:
        record, _ = await self._record(request)
        self.token_requests += 1
        query = record["query"]
        if query.get("grant_type") != "client_credentials":
            return self.json_response(400, {"error": "unsupported_grant_type",
                                            "error_description": "The authorization grant type "
                                                                 "is not supported"})
        if query.get("client_id") != self.api_key:
            return self.json_response(401, {"error": "invalid_client",
                                            "error_description": "unknown client id"})
        if query.get("client_secret") != self.secret_key:
            return self.json_response(401, {"error": "invalid_client",
                                            "error_description": "Client authentication failed"})
        now = int(time.time())
        token = f"24.{secrets.token_hex(16)}.{TOKEN_LIFETIME}.{now}.282335-{self._next_id()}"
        self._tokens[token] = False
        self._notify()
        return self.json_response(200, {
            "refresh_token": f"25.{secrets.token_hex(16)}.315360000.{now}.282335-1",
            "expires_in": TOKEN_LIFETIME, "session_key": secrets.token_hex(16),
            "access_token": token,
            "scope": "public brain_all_scope wenxinworkshop_mgr ai_custom_yiyan_com",
            "session_secret": secrets.token_hex(16)})

    async def chat(self, request: Any) -> Any:
        record, data = await self._record(request)
        ctx = _Ctx(id=f"as-fake{self._next_id():06d}", created=int(time.time()))
        token = record["query"].get("access_token", "")
        if token not in self._tokens:
            return self.json_response(200, error(110, request_id=ctx.id))
        if self._tokens[token]:
            return self.json_response(200, error(111, request_id=ctx.id))
        if request.path_params["endpoint"] not in ENDPOINTS:
            return self.json_response(200, error(336005, request_id=ctx.id))
        if not isinstance(data, dict):
            return self.json_response(200, error(336002, request_id=ctx.id))
        problem = _check_messages(data.get("messages"))
        if problem is not None:
            return self.json_response(200, error(336006, problem, ctx.id))
        system = data.get("system")
        if system is not None and not isinstance(system, str):
            return self.json_response(200, error(336003, "system must be a string", ctx.id))
        fault = self._take_fault()
        messages = list(data["messages"])
        if system:
            messages.insert(0, {"role": "system", "content": system})
        answer = self._answer(messages, fault)
        return self.respond(self.wire, ctx, answer, fault, stream=data.get("stream") is True)
