"""Fake DashScope (Qwen) native API (protocols.md section 2), plus its OpenAI-compatible
mode at ``/compatible-mode/v1`` sharing the same records and faults. Pictures go to the
multimodal endpoint (content parts ``{"image"}`` / ``{"text"}``, answered as a list of
``{"text"}`` parts), texts to be embedded to the text-embedding service
(docs/pictures-and-embeddings.md)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .answer_shapes import shape_answer
from .fake_server import (BAD_UTF8_MARK, Answer, FakeServer, Reply, Wire, corrupt, dumps, fake_embedding,
                          split_pieces)
from .openai_fake import OpenAIEndpoints, default_models

GENERATION_PATH = "/api/v1/services/aigc/text-generation/generation"
MULTIMODAL_PATH = "/api/v1/services/aigc/multimodal-generation/generation"
EMBEDDING_PATH = "/api/v1/services/embeddings/text-embedding/text-embedding"
EMBEDDING_MODELS = ("text-embedding-v1", "text-embedding-v2", "text-embedding-v3", "text-embedding-v4")
MAX_EMBEDDING_TEXTS = 10   # v3 and v4 take at most 10 texts a request

# code -> (HTTP status, message)
ERRORS: Dict[str, Tuple[int, str]] = {
    "InvalidApiKey": (401, "Invalid API-key provided."),
    "InvalidParameter": (400, "Invalid parameter."),
    "BadRequest.EmptyModel": (400, 'Required parameter "model" missing from request.'),
    "DataInspectionFailed": (400, "Output data may contain inappropriate content."),
    "Arrearage": (400, "Access denied, please make sure your account is in good standing."),
    "AccessDenied": (403, "Access denied."),
    "Model.NotExist": (404, "Model not exist."),
    "Throttling": (429, "Requests throttling triggered."),
    "Throttling.RateQuota": (429, "Requests rate limit exceeded, please try again later."),
    "Throttling.AllocationQuota": (429, "Allocated quota exceeded, please increase your quota limit."),
    "InternalError": (500, "An internal error has occured, please try again later."),
    "ServiceUnavailable": (503, "Service unavailable, please try again later."),
    "GatewayTimeout": (504, "Gateway timeout."),
}
_STATUS_CODES = {400: "InvalidParameter", 401: "InvalidApiKey", 402: "Arrearage",
                 403: "AccessDenied", 404: "Model.NotExist", 429: "Throttling.RateQuota",
                 500: "InternalError", 502: "InternalError", 503: "ServiceUnavailable",
                 504: "GatewayTimeout"}
_ROLES = ("system", "user", "assistant", "tool")


@dataclass
class _Ctx:
    request_id: str
    incremental: bool
    message_format: bool
    multimodal: bool = False     # the multimodal endpoint answers content as [{"text": …}]


class DashScopeWire(Wire):
    stream_media_type = "text/event-stream;charset=UTF-8"

    def headers(self, ctx: _Ctx) -> Dict[str, str]:
        return {"x-request-id": ctx.request_id}

    @staticmethod
    def _usage(usage: Dict[str, int]) -> Dict[str, int]:
        return {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"],
                "total_tokens": usage["total_tokens"]}

    def _payload(self, ctx: _Ctx, text: str, finish: str, usage: Dict[str, int],
                 tool_calls: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
        if ctx.message_format or ctx.multimodal:
            message: Dict[str, Any] = {"role": "assistant",
                                       "content": [{"text": text}] if ctx.multimodal else text}
            if tool_calls:
                message["tool_calls"] = tool_calls
            output: Dict[str, Any] = {"choices": [{"message": message, "finish_reason": finish}]}
        else:
            output = {"text": text, "finish_reason": finish}
        return {"output": output, "usage": self._usage(usage), "request_id": ctx.request_id}

    @staticmethod
    def _event(index: int, event: str, status: int, data: bytes) -> bytes:
        return (f"id:{index + 1}\nevent:{event}\n:HTTP_STATUS/{status}\n".encode()
                + b"data:" + data + b"\n\n")

    def stream_frames(self, ctx: _Ctx, answer: Answer) -> List[Tuple[bytes, Optional[dict]]]:
        if answer.tool_calls:
            return self._tool_call_frames(ctx, answer)
        frames = []
        last = len(answer.pieces) - 1
        for i, piece in enumerate(answer.pieces):
            text = piece if ctx.incremental else "".join(answer.pieces[:i + 1])
            usage = answer.usage(i + 1)
            payload = self._payload(ctx, text, "stop" if i == last else "null", usage)
            frames.append((self._event(i, "result", 200, dumps(payload)), usage))
        return frames

    def _tool_call_frames(self, ctx: _Ctx, answer: Answer) -> List[Tuple[bytes, Optional[dict]]]:
        # OpenAI-style pieces inside message.tool_calls (index, id and name first, then argument
        # fragments), finish_reason "tool_calls" on the last event (protocols.md 2.4; the exact
        # piece layout is unconfirmed), always incremental.
        pieces = []
        for index, call in enumerate(answer.tool_calls):
            pieces.append({"index": index, "id": call["id"], "type": "function",
                           "function": {"name": call["function"]["name"], "arguments": ""}})
            pieces += [{"index": index, "function": {"arguments": part}}
                       for part in split_pieces(call["function"]["arguments"])]
        usage = answer.usage()
        last = len(pieces) - 1
        return [(self._event(i, "result", 200, dumps(self._payload(
                    ctx, "", "tool_calls" if i == last else "null", usage, [piece]))), usage if i == last else None)
                for i, piece in enumerate(pieces)]

    def malformed_frame(self, ctx: _Ctx, index: int) -> bytes:
        return self._event(index, "result", 200, b'{"output":{"choices":[{"message":{"content":"')

    def invalid_utf8_frame(self, ctx: _Ctx, index: int) -> bytes:
        # Its id repeats a neighbour's; ids are informational only.
        payload = self._payload(ctx, "坏" + BAD_UTF8_MARK + "字", "null",
                                {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
        return corrupt(self._event(index, "result", 200, dumps(payload)))

    def _error_object(self, ctx: _Ctx, code: Any, message: Optional[str]) -> Tuple[int, dict]:
        code = code or "InvalidParameter"
        status, text = ERRORS.get(code, (400, "Request failed."))
        return status, {"code": code, "message": message or text, "request_id": ctx.request_id}

    def error_frame(self, ctx: _Ctx, index: int, code: Any, message: Optional[str]) -> bytes:
        status, body = self._error_object(ctx, code, message)
        return self._event(index, "error", status, dumps(body))

    def body(self, ctx: _Ctx, answer: Answer) -> bytes:
        finish = "tool_calls" if answer.tool_calls else "stop"
        return dumps(self._payload(ctx, answer.text, finish, answer.usage(), answer.tool_calls))

    def error_body(self, ctx: _Ctx, code: Any, message: Optional[str]) -> bytes:
        return dumps(self._error_object(ctx, code, message)[1])

    def error_response(self, ctx: _Ctx, kind: str,
                       status: Optional[int]) -> Tuple[int, Any, Dict[str, str]]:
        if kind == "quota":
            code = "Arrearage"
        elif kind == "rate_limited":
            code = "Throttling.RateQuota"
        else:
            assert status is not None
            code = _STATUS_CODES.get(status, "InternalError" if status >= 500 else "InvalidParameter")
        default_status, body = self._error_object(ctx, code, None)
        return (status if kind == "status" else default_status), body, self.headers(ctx)


class FakeDashScopeServer(FakeServer):
    """DashScope native at ``base_url`` = ``http://127.0.0.1:PORT/api/v1``; OpenAI-compatible
    mode (flavor qwen) at ``compatible_base_url`` = ``.../compatible-mode/v1``."""

    _base_path = "/api/v1"

    def __init__(self, api_key: Optional[str] = "sk-test", models: Optional[Sequence[str]] = None,
                 reply: Reply = None, token_delay: float = 0.0, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__(reply=reply, token_delay=token_delay, host=host, port=port)
        self.api_key = api_key
        self.models = tuple(models) if models is not None else default_models("qwen")
        self._compat = OpenAIEndpoints(self, "qwen", api_key, self.models, "/compatible-mode/v1")
        self.wire = DashScopeWire()

    @property
    def compatible_base_url(self) -> str:
        return self.url + "/compatible-mode/v1"

    def _routes(self) -> list:
        from starlette.routing import Route

        return [Route(GENERATION_PATH, self.generation, methods=["POST"]),
                Route(MULTIMODAL_PATH, self.generation, methods=["POST"]),
                Route(EMBEDDING_PATH, self.embedding, methods=["POST"])] + self._compat.routes()

    def _is_chat(self, path: str) -> bool:
        return path in (GENERATION_PATH, MULTIMODAL_PATH) or self._compat.is_chat(path)

    def _error(self, request_id: str, code: str, message: Optional[str] = None) -> Any:
        status, text = ERRORS[code]
        return self.json_response(status, {"code": code, "message": message or text,
                                           "request_id": request_id},
                                  {"x-request-id": request_id})

    def _check_parts(self, request_id: str, model: str, messages: List[Dict[str, Any]], multimodal: bool) -> Any:
        """The text endpoint takes text only; the multimodal one lists parts in every message
        and takes pictures only for a vision model (qwen-vl-*)."""
        for m in messages:
            content = m.get("content")
            if not multimodal:
                if not isinstance(content, str):
                    return self._error(request_id, "InvalidParameter", "Input content must be a string.")
                continue
            if not isinstance(content, list) or not all(
                    isinstance(p, dict) and (isinstance(p.get("text"), str) or isinstance(p.get("image"), str))
                    for p in content):
                return self._error(request_id, "InvalidParameter",
                                   "The content of each message must be a list of {text} or {image} items.")
            if any("image" in p for p in content) and "vl" not in model:
                return self._error(request_id, "InvalidParameter", f"Model {model} does not support image input.")
        return None

    async def embedding(self, request: Any) -> Any:
        record, data = await self._record(request)
        request_id = f"00000000-fake-0000-0000-{self._next_id():012d}"
        scheme, _, token = record["headers"].get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip() or (self.api_key is not None
                                                              and token.strip() != self.api_key):
            return self._error(request_id, "InvalidApiKey")
        texts = (data.get("input") or {}).get("texts") if isinstance(data, dict) and isinstance(
            data.get("input"), dict) else None
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            return self._error(request_id, "InvalidParameter", "input.texts must be a non-empty list of texts.")
        if len(texts) > MAX_EMBEDDING_TEXTS:
            return self._error(request_id, "InvalidParameter",
                               f"batch size is invalid, it should not be larger than {MAX_EMBEDDING_TEXTS}.")
        if data.get("model") not in EMBEDDING_MODELS:
            return self._error(request_id, "Model.NotExist")
        tokens = sum(len(t) for t in texts)
        self._report_usage(None, {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens})
        return self.json_response(200, {
            "output": {"embeddings": [{"text_index": i, "embedding": fake_embedding(t)} for i, t in enumerate(texts)]},
            "usage": {"total_tokens": tokens}, "request_id": request_id}, {"x-request-id": request_id})

    def _validate(self, request_id: str, data: Any, multimodal: bool = False) -> Any:
        if not isinstance(data, dict):
            return self._error(request_id, "InvalidParameter", "Request body must be a JSON object.")
        model = data.get("model")
        if not isinstance(model, str) or not model:
            return self._error(request_id, "BadRequest.EmptyModel")
        inputs = data.get("input")
        messages = inputs.get("messages") if isinstance(inputs, dict) else None
        prompt = inputs.get("prompt") if isinstance(inputs, dict) else None
        if not messages and not (isinstance(prompt, str) and prompt):
            return self._error(request_id, "InvalidParameter",
                               'Either "prompt" or "messages" must exist and cannot both be none')
        if messages is not None:
            if not isinstance(messages, list) or not all(
                    isinstance(m, dict) and m.get("role") in _ROLES and "content" in m
                    and (m.get("role") != "tool" or isinstance(m.get("tool_call_id"), str))
                    for m in messages):
                return self._error(request_id, "InvalidParameter",
                                   "Each message needs a valid role and content.")
        if messages is not None:
            refused = self._check_parts(request_id, model, messages, multimodal)
            if refused is not None:
                return refused
        parameters = data.get("parameters", {})
        if not isinstance(parameters, dict):
            return self._error(request_id, "InvalidParameter", '"parameters" must be an object.')
        if model not in self.models:
            return self._error(request_id, "Model.NotExist")
        return None

    async def generation(self, request: Any) -> Any:
        record, data = await self._record(request)
        request_id = f"00000000-fake-0000-0000-{self._next_id():012d}"
        scheme, _, token = record["headers"].get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or (self.api_key is not None
                                                      and token != self.api_key):
            return self._error(request_id, "InvalidApiKey")
        multimodal = record["path"] == MULTIMODAL_PATH
        rejected = self._validate(request_id, data, multimodal)
        if rejected is not None:
            return rejected
        fault = self._take_fault()
        inputs = data["input"]
        messages = inputs.get("messages") or [{"role": "user", "content": inputs["prompt"]}]
        parameters = data.get("parameters") or {}
        ctx = _Ctx(request_id=request_id,
                   incremental=parameters.get("incremental_output") is True,
                   message_format=parameters.get("result_format") == "message", multimodal=multimodal)
        stream = record["headers"].get("x-dashscope-sse", "").lower() == "enable"
        # Tools and response_format sit in ``parameters`` here; the OpenAI fake's rules apply.
        answer = shape_answer({**parameters, "messages": messages}, self._answer(messages, fault),
                              call_prefix=f"call_{request_id[-6:]}_")
        return self.respond(self.wire, ctx, answer, fault, stream)
