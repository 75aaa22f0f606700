"""The classroom server: a Client behind an HTTP face.

Routes are explicit. ``/v1/*`` speaks OpenAI's API so every OpenAI-shaped tool works;
``/`` and ``/static`` serve the chat page; ``/api/info`` tells the page what it talks to;
``/config`` and ``/queue/*`` answer the old XEdu student client (``api/gradio.py``).
The teacher's key lives only inside ``client``; nothing here ever writes it out.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import mimetypes
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import LLMError
from .admin.routes import admin_routes
from .api.chat_call import ChatCall
from .api.gradio import GradioFace, gradio_routes
from .api.body import parse_chat_body
from .classroom.room import Classroom, StoreLedger, own_usage
from .classroom.policy import ClassroomPolicy
from .classroom.gate import Gate
from .classroom.ledger import LedgerEntry, NullLedger
from .api.limits import Limits
from .api.openai_format import InvalidRequest, error_reply
from .classroom.open_policy import OpenPolicy

STATIC_DIR = Path(__file__).parent / "web" / "static"

# The page renders model output; even if rendering ever slipped, the browser must refuse
# to run injected script or fetch anything from outside the teacher's server.
_PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
             "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
             "base-uri 'none'; form-action 'self'; frame-ancestors 'self'")
_PAGE_HEADERS = {"Content-Security-Policy": _PAGE_CSP, "X-Content-Type-Options": "nosniff",
                 "Referrer-Policy": "no-referrer"}


@dataclass
class ServerSettings:
    max_concurrent: int = 64      # upstream calls at once, for the whole class
    max_waiting: int = 256        # requests allowed to wait in line for a slot
    wait_timeout: float = 30.0    # seconds a request may wait before "busy"
    policy: Any = None            # default: OpenPolicy(client), or classroom controls (below)
    ledger: Any = None            # default: NullLedger(), or the store's ledger (below)
    # Log lines never show the client's keys, the access code or the admin password; list any
    # other secret here.
    secrets: List[str] = field(default_factory=list, repr=False)
    limits: Limits = field(default_factory=Limits)  # body size, message count, content length
    # Classroom controls (tokens, budgets, ledger, /admin) are on when a store or data_dir is given.
    store: Any = None             # a store.Store; default: SQLiteStore(data_dir)
    data_dir: Any = None
    access_code: Optional[str] = field(default=None, repr=False)
    admin_password: Optional[str] = field(default=None, repr=False)
    daily_budget: Optional[int] = None        # tokens per day for the whole class
    per_student_daily: Optional[int] = None   # tokens per day per student (tokens may override)
    review: Optional[bool] = None             # keep conversation text for the admin page
    # The old XEdu student client cannot send an access code; let it in anyway (as legacy:<address>).
    allow_legacy_clients: bool = False


@dataclass
class ServerState:
    client: Any
    gate: Gate
    policy: Any
    ledger: Any
    secrets: List[str] = field(repr=False)
    classroom: Any = None
    _stopping: Optional[asyncio.Event] = field(default=None, repr=False)

    def stopping(self) -> asyncio.Event:
        """Set when the server shuts down; answers still running end with a clear message."""
        # Created on first use, inside the server's event loop (Python 3.9 binds it there).
        if self._stopping is None:
            self._stopping = asyncio.Event()
        return self._stopping


def create_app(client: Any, *, settings: Optional[ServerSettings] = None) -> Starlette:
    settings = settings or ServerSettings()
    _register_mime_types()
    classroom = _classroom(client, settings)
    state = ServerState(
        client=client,
        gate=Gate(settings.max_concurrent, settings.max_waiting, settings.wait_timeout),
        policy=settings.policy or (ClassroomPolicy(classroom) if classroom else OpenPolicy(client)),
        ledger=settings.ledger or (StoreLedger(classroom) if classroom else NullLedger()),
        secrets=[s for s in (*client.secrets(), settings.access_code, settings.admin_password,
                             *settings.secrets) if s],
        classroom=classroom,
    )
    identify = getattr(state.policy, "identify", None)

    async def page(request: Request) -> Response:
        index = STATIC_DIR / "index.html"
        if not index.is_file():
            return HTMLResponse("<p>聊天页面缺失，请重新安装 xedullm。/ The chat page is missing; reinstall xedullm.</p>",
                                status_code=500, headers=_PAGE_HEADERS)
        return FileResponse(index, headers=dict(_PAGE_HEADERS, **{"Cache-Control": "no-cache"}))

    async def info(request: Request) -> Response:
        provider = client.provider
        return JSONResponse({
            "provider": provider.id if provider else None,
            "provider_label": provider.label_zh if provider else None,
            "model": client.model,
            "system_prompt": client.system_prompt,
            "access_code_required": bool(state.policy.access_code_required),
        })

    async def models(request: Request) -> Response:
        owner = client.provider.id if client.provider else "xedullm"
        return JSONResponse({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": owner} for m in state.policy.models()]})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def refuse(err: LLMError, started: float, stream: bool) -> Response:
        reply = error_reply(err, own_message=True)
        await state.ledger.record(LedgerEntry(
            started=started, latency=time.time() - started, who=getattr(err, "who", None), model=None,
            stream=stream, status=reply.status, outcome=reply.body["error"]["code"] or reply.body["error"]["type"],
            usage=None))
        return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)

    async def chat_completions(request: Request) -> Any:
        started = time.time()
        caller = None
        if identify is not None:
            try:
                caller = await identify(request)
            except LLMError as err:
                return await refuse(err, started, False)
        try:
            body = parse_chat_body(await _json(request, settings.limits.max_body_bytes), settings.limits)
        except InvalidRequest as err:
            return _error_response(err)
        try:
            # build_request puts the teacher's system prompt first, ahead of any the student sent.
            chat = client.build_request(body.messages, temperature=body.temperature, top_p=body.top_p,
                                        stream=body.stream, max_tokens=body.max_tokens, stop=body.stop)
        except LLMError as err:
            return _error_response(InvalidRequest.wrap(err))
        try:
            if identify is not None:
                admission = await state.policy.admit(request, body.model, caller=caller, chat=chat)
            else:
                admission = await state.policy.admit(request, body.model)
        except LLMError as err:
            return await refuse(err, started, body.stream)
        chat = dataclasses.replace(chat, model=admission.model)
        return ChatCall(state, body, admission, chat, started)

    async def usage(request: Request) -> Response:
        # Only the caller's own usage: who is decided by their key, never by a parameter.
        if classroom is None or identify is None:
            return JSONResponse({"error": {"message": "这个服务器没有开启用量记录。/ This server keeps no usage ledger.",
                                           "type": "invalid_request_error", "param": None, "code": None}},
                                status_code=404)
        try:
            caller = await identify(request)
        except LLMError as err:
            return _error_response(err)
        return JSONResponse(await classroom.call(own_usage, classroom, caller))

    app = Starlette(
        routes=[
            Route("/", page, methods=["GET"]),
            Route("/api/info", info, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/usage", usage, methods=["GET"]),
            *gradio_routes(),   # the old XEdu student client (gradio_client)
            Mount("/static", app=StaticFiles(directory=STATIC_DIR, check_dir=False), name="static"),
            *(admin_routes(classroom, _PAGE_HEADERS) if classroom else []),
        ],
        middleware=[Middleware(_PublicCORS, allow_origins=["*"], allow_methods=["GET", "POST"],
                               allow_headers=["*"], allow_credentials=False, max_age=600)],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.xedullm = state
    app.state.gradio = GradioFace(settings.limits, settings.allow_legacy_clients)
    return app


class _PublicCORS(CORSMiddleware):
    """CORS for everything students' web apps call, and none for the teacher's admin pages:
    a browser then refuses any cross-site script's request to /admin before it is sent."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and (scope["path"] == "/admin" or scope["path"].startswith("/admin/")):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _register_mime_types() -> None:
    # Starlette takes types from Python's mimetypes, which reads the Windows registry; some
    # machines there map .js to text/plain, and browsers refuse ES modules served that way.
    mimetypes.add_type("text/javascript", ".js")
    mimetypes.add_type("text/css", ".css")


def _classroom(client: Any, settings: ServerSettings) -> Optional[Classroom]:
    if settings.store is None and settings.data_dir is None:
        return None
    store = settings.store
    if store is None:
        from .store.sqlite import SQLiteStore

        store = SQLiteStore(settings.data_dir)
    return Classroom(client, store, access_code=settings.access_code, admin_password=settings.admin_password,
                     daily_budget=settings.daily_budget, per_student_daily=settings.per_student_daily,
                     review=settings.review)


async def _json(request: Request, max_bytes: int) -> Any:
    too_large = InvalidRequest(f"请求太大（超过 {_size(max_bytes)}），请缩短对话。",
                               f"The request is too large (over {_size(max_bytes)}); shorten the conversation.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large  # refused before reading a byte of it
    raw = bytearray()
    async for piece in request.stream():
        raw += piece
        if len(raw) > max_bytes:
            raise too_large
    try:
        return json.loads(bytes(raw))
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurd nesting
        raise InvalidRequest("请求体不是合法的 JSON。", "The request body is not valid JSON.") from None


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:g} MB" if n >= 1024 * 1024 else f"{n} bytes"


def _error_response(err: BaseException) -> Response:
    reply = error_reply(err)
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        zh, en = "没有这个地址。", "No such path."
    elif exc.status_code == 405:
        zh, en = "这个地址不支持该请求方法。", "This path does not accept that method."
    else:
        zh, en = "请求有误。", "Bad request."
    body = {"error": {"message": f"{zh} / {en} {request.method} {request.url.path}",
                      "type": "invalid_request_error", "param": None, "code": None}}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
