"""The OpenAI-compatible face: ``/v1/models``, ``/v1/chat/completions``, ``/v1/usage``, plus
``/api/info`` for the page and ``/healthz``. Every handler reads the server's state from
``request.app.state.xedullm`` (see state.py); a chat request goes identify → body → policy →
:class:`~.chat_call.ChatCall` (the Client's public API) → ledger.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, List

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...errors import LLMError
from ..classroom.ledger import LedgerEntry
from ..classroom.room import own_usage
from ..classroom.compare_columns import column_for
from ..settings import PUBLIC
from ..state import ServerState, state_of
from .body import check_pictures_allowed, load_json, parse_chat_body
from .chat_call import ChatCall
from .openai_format import InvalidRequest, error_reply
from .responses_routes import responses


async def info(request: Request) -> Response:
    """What the page shows. Without a valid code (when the class has one) only enough to ask
    for it: that a code is needed, and the server's own words on why the one sent failed."""
    state = state_of(request)
    required = bool(state.policy.access_code_required)
    try:
        await _identify(state, request)
    except LLMError as err:
        return JSONResponse({"access_code_required": required, "access_code_accepted": False,
                             "message": str(err)})
    provider = state.client.provider
    # Compare mode's columns, only when it is on; the page asks each with model set to its id.
    compare = {"compare": [column.public() for column in state.compare]} if state.compare else {}
    return JSONResponse({
        "provider": provider.id if provider else None,
        "provider_label": provider.label_zh if provider else None,
        **{name: state.live.get(name) for name in PUBLIC},
        "access_code_required": required,
        **compare,
    })


async def models(request: Request) -> Response:
    state = state_of(request)
    try:
        await _identify(state, request)
    except LLMError as err:
        return error_response(err)
    return JSONResponse({"object": "list", "data": [_model(state, m) for m in _model_ids(state)]})


async def model(request: Request) -> Response:
    state = state_of(request)
    try:
        await _identify(state, request)
    except LLMError as err:
        return error_response(err)
    wanted = request.path_params["model_id"][:200]
    if wanted not in _model_ids(state):
        return JSONResponse({"error": {
            "message": f"这个服务器上没有模型 {wanted}：GET /v1/models 列出可用的模型。/ "
                       f"No model {wanted} on this server: GET /v1/models lists the ones there are.",
            "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}, status_code=404)
    return JSONResponse(_model(state, wanted))


def _model_ids(state: ServerState) -> List[str]:
    """What a caller may name: the policy's models, then compare mode's columns (when on)."""
    return [*state.policy.models(), *(column.id for column in state.compare)]


def _model(state: ServerState, model_id: str) -> dict:
    owner = state.client.provider.id if state.client.provider else "xedullm"
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owner}


async def _identify(state: ServerState, request: Request) -> Any:
    """The caller, by the policy's access rules (None for a policy without them)."""
    identify = getattr(state.policy, "identify", None)
    return None if identify is None else await identify(request)


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def chat_completions(request: Request) -> Any:
    return await start_chat(request, load_json)


async def start_chat(request: Request, parse: Callable[[bytes], Any]) -> Any:
    """identify → body (``parse``: raw bytes to a chat completions body) → policy; the
    ChatCall that answers, or the error reply. /v1/responses comes in here too."""
    state = state_of(request)
    started = time.time()
    identify = getattr(state.policy, "identify", None)
    caller = None
    if identify is not None:
        try:
            caller = await identify(request)
        except LLMError as err:
            return await _refuse(state, err, started, False)
    try:
        raw = await _body(request, state.settings.limits.max_body_bytes)
        body = parse_chat_body(parse(raw), state.settings.limits, checked=True)
        check_pictures_allowed(body.messages, state.live.get("allow_pictures"))
    except InvalidRequest as err:
        return error_response(err)
    try:
        column = column_for(state.compare, body.model)
    except InvalidRequest as err:
        return error_response(err)
    answerer = column.client if column is not None else state.client
    try:
        # The teacher's system prompt goes first, ahead of any the student sent.
        chat = answerer.build_request(body.messages, temperature=body.temperature, top_p=body.top_p,
                                      stream=body.stream, max_tokens=body.max_tokens, stop=body.stop,
                                      system=state.live.get("system_prompt"), **body.options)
    except LLMError as err:
        return error_response(InvalidRequest.wrap(err))
    try:
        if identify is not None:
            admission = await state.policy.admit(request, body.model, caller=caller, chat=chat)
        else:
            admission = await state.policy.admit(request, body.model)
    except LLMError as err:
        return await _refuse(state, err, started, body.stream)
    if column is not None:
        # The policy admitted one answer (budget, per-caller caps); the column's Client gives it.
        admission = dataclasses.replace(admission, model=column.model, column=column.id)
    return ChatCall(state, body, admission, chat, started)


async def usage(request: Request) -> Response:
    # Only the caller's own usage: who is decided by their key, never by a parameter.
    state = state_of(request)
    identify = getattr(state.policy, "identify", None)
    if state.classroom is None or identify is None:
        return JSONResponse({"error": {"message": "这个服务器没有开启用量记录。/ This server keeps no usage ledger.",
                                       "type": "invalid_request_error", "param": None, "code": None}},
                            status_code=404)
    try:
        caller = await identify(request)
    except LLMError as err:
        return error_response(err)
    return JSONResponse(await state.classroom.call(own_usage, state.classroom, caller))


async def _refuse(state: ServerState, err: LLMError, started: float, stream: bool) -> Response:
    reply = error_reply(err, own_message=True)
    await state.ledger.record(LedgerEntry(
        started=started, latency=time.time() - started, who=getattr(err, "who", None), model=None,
        stream=stream, status=reply.status, outcome=reply.body["error"]["code"] or reply.body["error"]["type"],
        usage=None))
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


async def _body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)  # refused before reading a byte of it
    pieces, size = [], 0
    async for piece in request.stream():
        pieces.append(piece)
        size += len(piece)
        if size > max_bytes:
            raise _too_large(max_bytes)
    return b"".join(pieces)   # one copy, however many pieces a large body came in


def _too_large(max_bytes: int) -> InvalidRequest:
    return InvalidRequest(f"请求太大（超过 {_size(max_bytes)}），请缩短对话。",
                          f"The request is too large (over {_size(max_bytes)}); shorten the conversation.")


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:g} MB" if n >= 1024 * 1024 else f"{n} bytes"


def error_response(err: BaseException) -> Response:
    reply = error_reply(err)
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


async def legacy_completions(request: Request) -> Response:
    """OpenAI's old text-completions API is not served: say where the chat is (LlamaIndex's
    ``OpenAILike`` calls this path unless it is told ``is_chat_model=True``)."""
    return JSONResponse({"error": {
        "message": "这里没有 /v1/completions（旧的文本补全接口），请用 /v1/chat/completions；LlamaIndex 的 "
                   "OpenAILike 请加 is_chat_model=True。/ /v1/completions (the legacy text-completions API) "
                   "is not served here: use /v1/chat/completions; with LlamaIndex's OpenAILike pass "
                   "is_chat_model=True.",
        "type": "invalid_request_error", "param": None, "code": "unknown_url"}}, status_code=404)


def openai_routes() -> List[BaseRoute]:
    return [
        # First: the router tries routes in order, and this one is asked for most.
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        # Some clients add a slash; a redirect would lose a POST body in many of them.
        Route("/v1/chat/completions/", chat_completions, methods=["POST"]),
        Route("/api/info", info, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/models/", models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", model, methods=["GET"]),
        Route("/v1/usage", usage, methods=["GET"]),
        Route("/v1/completions", legacy_completions, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
    ]
