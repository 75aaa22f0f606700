"""The classroom server: a Client behind HTTP faces.

``create_app`` only assembles: the routes of each face (``api/`` for OpenAI-shaped programs,
``web/`` for the student page, ``admin/`` for the teacher), the state they share on
``app.state.xedullm`` (state.py), and the store chosen by the settings. ``api/gradio_routes.py``
answers the old XEdu student client (``/config``, ``/queue/*``). The teacher's key
lives only inside the Client; nothing here ever writes it out.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import mimetypes
import secrets
from typing import TYPE_CHECKING, Any, AsyncIterator, List, Optional

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .admin.admin_routes import admin_routes
from .api.openai_routes import openai_routes
from .api.embeddings_routes import embeddings_routes
from .api.responses_routes import responses_routes
from .api.browser_id_routes import browser_id_routes
from .api.model_files import model_file_routes
from .api.gradio_routes import GradioFace, gradio_routes
from .classroom import fallback_list
from .classroom.blocked_words import BlockedWords
from .classroom.gate import Gate
from .classroom.ledger import REQUEST_ID, NullLedger
from .classroom.live_settings import LiveSettings
from .classroom.open_policy import OpenPolicy
from .classroom.policy import ClassroomPolicy
from .classroom.room import Classroom, StoreLedger
from ..errors import ConfigurationError
from .classroom.compare_columns import make_columns
from .settings import ADMIN_EDITABLE, ServerSettings, check, secret_values
from .state import ServerState
from .web.page_routes import web_routes

if TYPE_CHECKING:
    from ..client import Client

# Kept for callers that import them from here.
__all__ = ["ServerSettings", "create_app"]


def create_app(client: "Client", *, settings: Optional[ServerSettings] = None) -> Starlette:
    settings = settings or ServerSettings()
    if settings.access_code is not None:
        check("access_code", settings.access_code)  # also when ServerSettings was built directly
    _needs_a_store(settings)
    _register_mime_types()
    # Before the store opens: an unreadable word list stops the start with a clear message.
    blocked = BlockedWords.load(settings.blocked_words, bool(settings.builtin_blocked_words))
    store = _open_store(settings)
    provider = client.provider
    # What the teacher chose for this run wins over what is remembered; a provider's default
    # model was not chosen, so a model picked earlier on the admin page stays.
    chosen_model = client.model if provider is None or client.model != provider.default_model else None
    given = {name: getattr(settings, name) for name in ADMIN_EDITABLE if hasattr(settings, name)}
    # Fallbacks given at start (--fallback) win too; without any, the list kept last time is used.
    fallback = client.fallback_specs or None
    secrets: List[str] = []   # filled below; a fallback the teacher adds later adds its key
    live = LiveSettings(store, dict(given, model=chosen_model, system_prompt=client.system_prompt,
                                    fallback=fallback),
                        model_scope=provider.id if provider else client.base_url,
                        fallbacks={"model": client.model},
                        on_change={"fallback": functools.partial(fallback_list.follow, client, secrets)})
    if settings.compare and not settings.compare_clients:
        raise ConfigurationError("compare 需要对应的 Client：用 Client.run(compare=...) 或 xedullm serve --compare，"
                                 "或在 ServerSettings 里给 compare_clients。/ compare needs its Clients: use "
                                 "Client.run(compare=...) or xedullm serve --compare, or pass compare_clients "
                                 "in ServerSettings.")
    compare = make_columns(settings.compare_clients)
    classroom = Classroom(store, live, admin_password=settings.admin_password) if store is not None else None
    secrets.extend(s for s in (*client.secrets(), *(k for c in compare for k in c.client.secrets()),
                               *secret_values(settings), *settings.secrets,
                               *(store.secrets() if store is not None else ())) if s)
    state = ServerState(
        client=client,
        settings=settings,
        live=live,
        gate=Gate(settings.max_concurrent, settings.max_waiting, settings.wait_timeout,
                  max_per_caller=lambda: live.get("max_per_caller")),
        policy=settings.policy or (ClassroomPolicy(classroom) if classroom else OpenPolicy(live)),
        ledger=settings.ledger or (StoreLedger(classroom) if classroom else NullLedger()),
        secrets=secrets,
        classroom=classroom,
        compare=compare,
        blocked=blocked,
    )
    app = Starlette(
        routes=[
            *openai_routes(),   # first: /v1/chat/completions is matched on every request
            *embeddings_routes(),
            *responses_routes(),
            *browser_id_routes(),   # the page's per-student id
            *model_file_routes(),   # the teacher's local models, for students' machines
            *web_routes(),
            *gradio_routes(),   # the old XEdu student client (gradio_client)
            *(admin_routes() if classroom else []),
        ],
        middleware=[Middleware(_PublicCORS)],
        exception_handlers={HTTPException: _http_error},
        lifespan=_lifespan,
    )
    app.state.xedullm = state
    app.state.gradio = GradioFace(settings.limits, settings.allow_legacy_clients)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    state: ServerState = app.state.xedullm
    from .admin.key_follow import follow_forever

    # A key set or rotated in the key store reaches the next question (admin/key_follow.py).
    loops = [asyncio.ensure_future(follow_forever([state.client, *(c.client for c in state.compare)],
                                                  state.secrets))]
    if state.classroom is not None:
        # Settings changed on another server sharing this store reach this one within a second.
        loops.append(asyncio.ensure_future(state.live.refresh_forever(state.classroom.call)))
        # Renews running answers' holds (stores with leases) and writes rows the store missed.
        loops.append(asyncio.ensure_future(state.classroom.settle_forever()))
    try:
        yield
    finally:
        for loop in loops:
            loop.cancel()
        if state.classroom is not None:
            await state.classroom.write_rows()   # rows still waiting for their trip to the store


# Classroom controls live in the store; without one they would be silently off.
_CONTROLS = ("access_code", "daily_budget", "per_student_daily")


def _needs_a_store(settings: ServerSettings) -> None:
    given = [name for name in _CONTROLS if getattr(settings, name) is not None]
    if given and settings.store is None and settings.data_dir is None and settings.policy is None:
        raise ConfigurationError(
            f"{', '.join(given)} 是课堂控制，要有地方保存用量和设置：请同时给 data_dir=（一个目录）或 store=。"
            f"（xedullm serve 和 Client.run() 会自动用默认的数据目录。）/ {', '.join(given)} are classroom "
            f"controls and need somewhere to keep usage and settings: give data_dir= (a folder) or store= as "
            f"well. (xedullm serve and Client.run() use the default data folder by themselves.)")


def _open_store(settings: ServerSettings):
    """The store when classroom controls are on (a store URL or a data directory), else None."""
    if settings.store is None and settings.data_dir is None:
        return None
    from .store import Store, open_store

    if isinstance(settings.store, Store):  # embedding code and tests may hand one in
        return settings.store
    return open_store(settings.store, settings.data_dir)


class _PublicCORS:
    """CORS for everything students' web apps call, and none for the teacher's admin pages:
    a browser then refuses any cross-site script's request to /admin before it is sent.

    Every public answer allows any origin, whether or not the request named one: without
    credentials that header is the same for every page, so an answer never varies by Origin
    and a cached copy serves any of them. That is one header added to the start of each
    answer, where a general CORS middleware reads the request's headers and rewrites the
    answer's on every request. Preflights go to Starlette's CORSMiddleware."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._preflight = CORSMiddleware(app, allow_origins=["*"], allow_methods=["GET", "POST"],
                                         allow_headers=["*"], allow_credentials=False, max_age=600)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Every answer names its request (the openai SDK's ``_request_id``); a chat's ledger
        # row keeps the same id (api/chat_call.py).
        request_id = scope[REQUEST_ID] = f"req_{secrets.token_hex(12)}"
        id_header = (b"x-request-id", request_id.encode())
        if scope["path"] == "/admin" or scope["path"].startswith("/admin/"):
            extra: Any = (id_header,)
        else:
            extra = (id_header, _ANY_ORIGIN)

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        if scope["method"] == "OPTIONS" and len(extra) == 2:
            extra = (id_header,)   # the preflight middleware names the origin itself
            await self._preflight(scope, receive, send_with_headers)
        else:
            await self.app(scope, receive, send_with_headers)


_ANY_ORIGIN = (b"access-control-allow-origin", b"*")


def _register_mime_types() -> None:
    # Starlette takes types from Python's mimetypes, which reads the Windows registry; some
    # machines there map .js to text/plain, and browsers refuse ES modules served that way.
    mimetypes.add_type("text/javascript", ".js")
    mimetypes.add_type("text/css", ".css")


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
