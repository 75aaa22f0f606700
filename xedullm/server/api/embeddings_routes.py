"""``/v1/embeddings`` in OpenAI's format, behind the same door as chat: identify (access code
or token) → body → policy (budgets, holds, rate limits) → the gate → the Client's public
``aembeddings`` → ledger (a row whose model reads ``embedding:<model>``).

The openai SDK asks for ``encoding_format: base64`` unless told otherwise, so both forms are
answered. The teacher's provider decides the model: a student's ``model`` is honoured only
when it is one of that provider's embedding models.
"""
from __future__ import annotations

import base64
import sys
import time
from array import array
from typing import Any, Dict, List, Optional

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...embeddings import MAX_TEXT_CHARS
from ...errors import LLMError
from ...types import ChatRequest, EmbeddingResult
from ..classroom.gate import CallerBusy, ServerBusy
from ..classroom.ledger import LedgerEntry
from ..state import ServerState, state_of
from .body import load_json
from .limits import Limits
from .openai_format import BlockedQuestion, InvalidRequest, error_reply

# What a ledger row's model column says for an embedding request.
LEDGER_PREFIX = "embedding:"


def parse_input(data: Any, limits: Limits) -> List[str]:
    if not isinstance(data, dict):
        raise InvalidRequest("请求体必须是 JSON 对象。", "The request body must be a JSON object.")
    texts = data.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if isinstance(texts, list) and texts and all(isinstance(t, int) or isinstance(t, list) for t in texts):
        raise InvalidRequest("input 请发文字，不要发 token 编号（LangChain 的 OpenAIEmbeddings 请设 "
                             "check_embedding_ctx_length=False）。",
                             "Send input as text, not token ids (with LangChain's OpenAIEmbeddings set "
                             "check_embedding_ctx_length=False).", "input")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise InvalidRequest("input 必须是一段文字，或非空的文字列表（每段都不能为空）。",
                             "input must be a text or a non-empty list of texts (none of them empty).", "input")
    if len(texts) > limits.max_embedding_inputs:
        raise InvalidRequest(f"一次最多 {limits.max_embedding_inputs} 段文字，请分几次发。",
                             f"At most {limits.max_embedding_inputs} texts a request; send them in several.", "input")
    for i, text in enumerate(texts):
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidRequest(f"第 {i + 1} 段文字太长（最多 {MAX_TEXT_CHARS} 字），请切成小段。",
                                 f"Text {i + 1} is too long (at most {MAX_TEXT_CHARS} characters); split it.",
                                 f"input[{i}]")
    fmt = data.get("encoding_format")
    if fmt not in (None, "float", "base64"):
        raise InvalidRequest("encoding_format 只能是 float 或 base64。", "encoding_format must be float or base64.",
                             "encoding_format")
    return texts


def chosen_model(state: ServerState, requested: Any) -> Optional[str]:
    known = state.client.embedding_models()
    if isinstance(requested, str) and requested in known:
        return requested
    return state.live.get("embedding_model") or (known[0] if known else None)


async def embeddings(request: Request) -> Response:
    state = state_of(request)
    started = time.time()
    identify = getattr(state.policy, "identify", None)
    caller = None
    try:
        if identify is not None:
            caller = await identify(request)
    except LLMError as err:
        return await _answer_error(state, err, started, None, own=True)
    try:
        raw = await request.body()
        if len(raw) > state.settings.limits.max_body_bytes:
            raise InvalidRequest("请求太大，请分几次发。", "The request is too large; send the texts in several.")
        data = load_json(raw)
        texts = parse_input(data, state.settings.limits)
        if state.blocked and state.blocked.found_in(texts):
            raise BlockedQuestion()
    except InvalidRequest as err:
        return _reply(err)
    except BlockedQuestion as err:
        return await _answer_error(state, err, started, None, outcome="flagged")
    model = chosen_model(state, data.get("model"))
    # Held like a question of these texts whose answer is one token: vectors have no answer.
    chat = ChatRequest(model=model or "default", messages=[{"role": "user", "content": "\n".join(texts)}],
                       max_tokens=1)
    try:
        if identify is not None:
            admission = await state.policy.admit(request, None, caller=caller, chat=chat)
        else:
            admission = await state.policy.admit(request, None)
    except LLMError as err:
        return await _answer_error(state, err, started, None, own=True)
    who = None if admission.who == "anonymous" else admission.who
    try:
        await state.gate.acquire(who)
    except (ServerBusy, CallerBusy) as err:
        return await _answer_error(state, err, started, admission)
    try:
        result = await state.client.aembeddings(texts, model=model)
    except LLMError as err:
        return await _answer_error(state, err, started, admission, model=model)
    finally:
        state.gate.release(who)
    await _record(state, started, admission, model or result.model, 200, "ok", result)
    return JSONResponse(_body(result, model, data.get("encoding_format")))


def _body(result: EmbeddingResult, model: Optional[str], fmt: Optional[str]) -> Dict[str, Any]:
    data = []
    for i, vector in enumerate(result.vectors):
        value: Any = vector
        if fmt == "base64":   # little-endian float32, as OpenAI sends it
            floats = array("f", vector)
            if sys.byteorder == "big":
                floats.byteswap()
            value = base64.b64encode(floats.tobytes()).decode("ascii")
        data.append({"object": "embedding", "index": i, "embedding": value})
    usage = result.usage
    return {"object": "list", "data": data, "model": model or result.model,
            "usage": {"prompt_tokens": usage.prompt_tokens if usage else 0,
                      "total_tokens": usage.total_tokens if usage else 0}}


def _reply(err: BaseException, own: bool = False) -> Response:
    reply = error_reply(err, own_message=own)
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


async def _answer_error(state: ServerState, err: BaseException, started: float, admission: Any, *,
                        own: bool = False, model: Optional[str] = None, outcome: Optional[str] = None) -> Response:
    reply = error_reply(err, own_message=own)
    await _record(state, started, admission, model, reply.status,
                  outcome or reply.body["error"]["code"] or reply.body["error"]["type"], None,
                  who=getattr(err, "who", None))
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


async def _record(state: ServerState, started: float, admission: Any, model: Optional[str], status: int,
                  outcome: str, result: Optional[EmbeddingResult], who: Optional[str] = None) -> None:
    await state.ledger.record(LedgerEntry(
        started=started, latency=time.time() - started,
        who=admission.who if admission is not None else who,
        model=LEDGER_PREFIX + (model or "default"), stream=False, status=status, outcome=outcome,
        usage=result.usage if result is not None else None,
        ticket=admission.ticket if admission is not None else None,
        name=admission.name if admission is not None else None, flagged=outcome == "flagged",
        provider=state.client.label if result is not None else None))


def embeddings_routes() -> List[BaseRoute]:
    return [Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/embeddings/", embeddings, methods=["POST"])]
