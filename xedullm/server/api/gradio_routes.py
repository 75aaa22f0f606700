"""The Gradio face: the queue protocol the original XEduLLM student client speaks.

Students' machines keep xedu-python 2.0.0, whose ``Client(xedu_url=…)`` is a gradio_client
aimed at the teacher's Gradio app (XEduLLM's ``run()``, Gradio 4.44.1). What that client does,
as recorded against the original server with gradio_client 1.3.0 and 2.7.2:

1. ``GET /config``, always at the root. It reads ``protocol`` (``sse_v3``), ``version``,
   ``dependencies`` (it calls the one whose ``api_name`` is ``chat``: inputs a textbox and a
   state, outputs a textbox and the state; its ``id`` is the ``fn_index``) and the
   ``components`` they name. gradio_client 2.x then puts the config's ``api_prefix`` in front of
   every later path (Gradio 5 servers say ``/gradio_api``); 1.x ignores it. So we say
   ``/gradio_api`` and serve both.
2. ``GET /info?serialize=False``: the named endpoints and their parameters.
3. ``GET /heartbeat/<session_hash>``: an event stream held open for the client's life. 1.x asks
   again the moment it ends (a 404 would make it loop), so it stays open, saying ``ALIVE``;
   2.x connects only when the config's ``connect_heartbeat`` is true, and ours is false.
4. xedu-python itself sends ``GET <url>/models`` with ``Authorization: Bearer None`` to pick a
   model, and ignores any failure; a list of ids only puts the model in its banner.
5. Each ``predict()``: ``POST /queue/join`` ``{"data": [message, null], "fn_index",
   "session_hash"}`` → ``{"event_id"}`` (503 means a full queue), then ``GET
   /queue/data?session_hash=…``, an event stream of ``data:`` JSON lines: ``estimation``,
   ``process_starts``, ``process_generating`` (first the whole value, later
   ``[["append", [], piece]]`` diffs), ``process_completed`` (``output.data[0]`` is the answer)
   and, once the session has nothing left, ``close_stream``. ``heartbeat`` messages may come
   while waiting. An error is ``process_completed`` with ``success: false`` and
   ``output.error``: gradio_client raises ``AppError`` with that text.
6. The original server keeps the chat history in the session's state, so one client's
   consecutive messages are one conversation; sessions here keep it the same way.
   xedu-python's ``inference(…, stream=True)`` drops ``stream`` and returns the whole text;
   ``gradio_client``'s ``submit()`` jobs see each partial answer.

Sessions live in this process's memory: the queue protocol needs a join and its event stream
to reach the same process anyway, and a session is only a conversation, like a browser tab's.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ...errors import LLMError
from .gradio_call import QueuedMessage, answer, estimation, failed, process_starts
from .limits import Limits

GRADIO_VERSION = "4.44.1"     # the server we answer like; gradio_client decides features by it
API_PREFIX = "/gradio_api"
HEARTBEAT_SECONDS = 15.0      # under gradio_client's 20 s read timeout on the heartbeat stream
MAX_SESSIONS = 1000           # the least recently used idle ones go first
MAX_PENDING = 8               # queued and running messages per session
MAX_SESSION_HASH = 64
HISTORY_CHARS = 100_000       # a session forgets its oldest turns beyond this
# A joined message waits in memory only until its session's /queue/data stream takes it
# (gradio_client opens that stream right after the join): bounded in time, per address and
# in all, so joins nobody collects cannot fill the server's memory.
WAITING_SECONDS = 60.0
MAX_WAITING_PER_ADDRESS = 16
MAX_WAITING = 512
MAX_JOIN_BYTES = 1024 * 1024  # one question (or one conversation) as JSON; \uXXXX escapes included
REFUSED_JOIN_BYTES = 64 * 1024

_TEXTBOX_IN, _STATE, _TEXTBOX_OUT = 1, 2, 3
_FN_INDEX = 0
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class Session:
    """One gradio_client: its conversation and its messages in the queue."""

    def __init__(self) -> None:
        self.history: List[Dict[str, str]] = []
        self.waiting: "OrderedDict[str, QueuedMessage]" = OrderedDict()   # joined, not yet picked up
        self.running: Dict[str, QueuedMessage] = {}
        self._changed: Optional[asyncio.Event] = None

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.running)

    def find(self, event_id: Any) -> Optional[QueuedMessage]:
        return self.waiting.get(event_id) or self.running.get(event_id)

    def remember(self, conversation: List[Dict[str, str]], limits: Limits) -> None:
        kept = conversation[-(limits.max_messages - 1):]
        while len(kept) > 1 and sum(len(m["content"]) for m in kept) > HISTORY_CHARS:
            kept = kept[1:]
        self.history = kept

    def notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def changed(self) -> None:
        # Created on first use, inside the server's loop (Python 3.9 binds asyncio primitives).
        if self._changed is None:
            self._changed = asyncio.Event()
        await self._changed.wait()


class GradioFace:
    """What the face keeps between requests: the sessions, and the settings it needs."""

    def __init__(self, limits: Limits, allow_legacy_clients: bool) -> None:
        self.limits = limits
        self.allow_legacy_clients = allow_legacy_clients
        self._sessions: "OrderedDict[str, Session]" = OrderedDict()
        # Every message joined and not yet taken by a stream, oldest first: (its session, it).
        self._waiting: "OrderedDict[str, Tuple[Session, QueuedMessage]]" = OrderedDict()
        self._waiting_by_address: Dict[str, int] = {}

    def room_for(self, address: str, now: float) -> Optional[str]:
        """Why a join from ``address`` cannot wait now (None: it can). Expired ones go first."""
        self.expire(now)
        if len(self._waiting) >= MAX_WAITING:
            return "too_many"
        if self._waiting_by_address.get(address, 0) >= MAX_WAITING_PER_ADDRESS:
            return "address"
        return None

    def wait(self, session: Session, item: QueuedMessage) -> None:
        session.waiting[item.id] = item
        self._waiting[item.id] = (session, item)
        self._waiting_by_address[item.address] = self._waiting_by_address.get(item.address, 0) + 1
        session.notify()

    def taken(self, item: QueuedMessage) -> None:
        """A stream took ``item`` (or it expired): it no longer counts as waiting."""
        if self._waiting.pop(item.id, None) is None:
            return
        left = self._waiting_by_address.get(item.address, 1) - 1
        if left > 0:
            self._waiting_by_address[item.address] = left
        else:
            self._waiting_by_address.pop(item.address, None)

    def expire(self, now: float) -> None:
        while self._waiting:
            session, item = next(iter(self._waiting.values()))
            if now - item.joined < WAITING_SECONDS:
                return
            session.waiting.pop(item.id, None)
            self.taken(item)

    def session(self, session_hash: str) -> Session:
        session = self._sessions.pop(session_hash, None) or Session()
        self._sessions[session_hash] = session     # most recently used last
        if len(self._sessions) > MAX_SESSIONS:
            idle = [h for h, s in self._sessions.items() if not s.busy and h != session_hash]
            for old in idle[:len(self._sessions) - MAX_SESSIONS]:
                del self._sessions[old]
        return session

    def find(self, session_hash: str) -> Optional[Session]:
        return self._sessions.get(session_hash)


class _NotAJoin(ValueError):
    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


# -- documents ------------------------------------------------------------------------------
def _textbox(component_id: int, label: str, interactive: bool) -> Dict[str, Any]:
    return {"id": component_id, "type": "textbox", "skip_api": False, "api_info": {"type": "string"},
            "example_inputs": "你好", "key": None,
            "props": {"label": label, "show_label": False, "interactive": interactive, "visible": True,
                      "lines": 1, "value": "", "name": "textbox"}}


def app_config(root: str) -> Dict[str, Any]:
    """What ``GET /config`` answers: a Gradio app with one chat function, and our marker (which
    tells our own Client to use the OpenAI face instead)."""
    chat = {"id": _FN_INDEX, "targets": [[_TEXTBOX_IN, "submit"]], "inputs": [_TEXTBOX_IN, _STATE],
            "outputs": [_TEXTBOX_OUT, _STATE], "backend_fn": True, "js": None, "queue": True,
            "api_name": "chat", "show_api": True, "scroll_to_output": False, "show_progress": "full",
            "trigger_after": None, "trigger_only_on_success": False, "trigger_mode": "once",
            "types": {"generator": True, "cancel": False}, "cancels": [], "collects_event_data": False,
            "concurrency_id": str(_FN_INDEX), "zerogpu": False}
    return {
        "version": GRADIO_VERSION, "mode": "blocks", "protocol": "sse_v3", "api_prefix": API_PREFIX,
        "connect_heartbeat": False, "enable_queue": True, "show_error": True, "show_api": True,
        "is_colab": False, "max_file_size": None, "dev_mode": False, "analytics_enabled": False,
        "title": "XEduLLM 课堂 / classroom", "root": root, "space_id": None, "username": None,
        "components": [_textbox(_TEXTBOX_IN, "Message", True),
                       {"id": _STATE, "type": "state", "skip_api": True, "props": {"value": None, "name": "state"},
                        "key": None},
                       _textbox(_TEXTBOX_OUT, "Response", False)],
        "dependencies": [chat],
        "layout": {"id": 0, "children": [{"id": _TEXTBOX_IN}, {"id": _TEXTBOX_OUT}]},
        "xedullm": {"openai_api": "/v1"},
    }


def _parameter(label: str, name: Optional[str]) -> Dict[str, Any]:
    described = {"label": label, "type": {"type": "string"}, "python_type": {"type": "str", "description": ""},
                 "component": "Textbox"}
    if name:
        described.update(parameter_name=name, parameter_has_default=False, parameter_default=None,
                         example_input="你好")
    return described


API_INFO = {"named_endpoints": {"/chat": {"parameters": [_parameter("Message", "message")],
                                          "returns": [_parameter("Response", None)], "show_api": True}},
            "unnamed_endpoints": {}}


# -- endpoints ------------------------------------------------------------------------------
async def config(request: Request) -> Response:
    return JSONResponse(app_config(str(request.base_url).rstrip("/")))


async def info(request: Request) -> Response:
    return JSONResponse(API_INFO)


async def legacy_models(request: Request) -> Response:
    """xedu-python's model pick. Behind an access code it learns nothing (and does not mind)."""
    state = request.app.state.xedullm
    ids = [] if state.policy.access_code_required else state.policy.models()
    return JSONResponse({"object": "list", "data": [
        {"id": m, "object": "model", "created": 0, "owned_by": "xedullm"} for m in ids]})


async def queue_join(request: Request) -> Response:
    """A message joins its session's queue, after the same door as every other request: the
    caller is identified (access code or token) before the body is read, and a caller the
    class does not let in leaves only a refusal for the stream to tell (the old client shows
    that, where an HTTP error would be a bare status); its message is not kept."""
    face: GradioFace = request.app.state.gradio
    state = request.app.state.xedullm
    address = request.client.host if request.client else "unknown"
    caller, refusal = await _door(state, face, request)
    full = face.room_for(address, time.time())
    if full is not None:
        return JSONResponse({"detail": "排队已满，请等前面的回答结束。/ Queue is full; wait for the answers "
                                       "already asked for."}, status_code=503)
    # A refused join is read only as far as an old client's question goes (its session is at
    # the end of the body), and its message is not kept.
    most = min(face.limits.max_body_bytes, MAX_JOIN_BYTES if refusal is None else REFUSED_JOIN_BYTES)
    try:
        session_hash, message = _join_fields(await _read_json(request, most, face.limits), face.limits)
    except _NotAJoin as err:
        return JSONResponse({"detail": str(err)}, status_code=err.status)
    if refusal is not None:
        message = None
    session = face.session(session_hash)
    if len(session.waiting) + len(session.running) >= MAX_PENDING:
        return JSONResponse({"detail": "排队已满，请等前面的回答结束。/ Queue is full; wait for the answers "
                                       "already asked for."}, status_code=503)
    item = QueuedMessage(id=uuid.uuid4().hex, message=message, address=address, joined=time.time(),
                         caller=caller, refusal=refusal)
    face.wait(session, item)
    return JSONResponse({"event_id": item.id})


async def _door(state: Any, face: GradioFace, request: Request):
    """(the caller, None) when the class lets this join in; (None, why not) when it does not."""
    identify = getattr(state.policy, "identify", None)
    if identify is None:
        return None, None
    try:
        return await identify(request), None
    except LLMError as err:
        if face.allow_legacy_clients and not request.headers.get("authorization"):
            return None, None    # the teacher lets the old client in without a code
        if not request.headers.get("authorization"):
            return None, "legacy"   # the old client cannot send a code: it hears how to upgrade
        return None, str(err)


async def queue_data(request: Request) -> Any:
    face: GradioFace = request.app.state.gradio
    session = face.find(request.query_params.get("session_hash", "")) or Session()
    return QueueStream(request.app.state.xedullm, face, session, request)


async def heartbeat(request: Request) -> Any:
    return Heartbeat(request.app.state.xedullm)


async def cancel(request: Request) -> Response:
    face: GradioFace = request.app.state.gradio
    try:
        data = await _read_json(request, 64 * 1024, face.limits)
    except _NotAJoin as err:
        return JSONResponse({"detail": str(err)}, status_code=err.status)
    if not isinstance(data, dict) or not all(isinstance(data.get(k, ""), str) for k in ("session_hash", "event_id")):
        return JSONResponse({"detail": "需要 {\"session_hash\": 字符串, \"event_id\": 字符串}。/ "
                                       "Expected {\"session_hash\": a string, \"event_id\": a string}."},
                            status_code=422)
    session = face.find(data.get("session_hash", ""))
    item = session.find(data.get("event_id", "")) if session else None
    if item is not None:
        item.cancelled = True
        if item.scope is not None:
            item.scope.cancel()
    return JSONResponse({"success": item is not None})


async def _read_json(request: Request, max_bytes: int, limits: Limits) -> Any:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _NotAJoin(f"请求太大（最多 {max_bytes} 字节）。/ The request is too large (at most {max_bytes} bytes).",
                        413)
    raw = bytearray()
    async for piece in request.stream():
        raw += piece
        if len(raw) > max_bytes:
            raise _NotAJoin(f"请求太大（最多 {max_bytes} 字节）。/ The request is too large (at most {max_bytes} bytes).",
                            413)
    objects = [0]

    def counted(obj: Dict[str, Any]) -> Dict[str, Any]:
        # A join holds a message or one conversation: a body of a million {} is refused while
        # it is parsed, before it can become a million dicts.
        objects[0] += 1
        if objects[0] > limits.max_messages + 2:
            raise _NotAJoin(f"消息太多（最多 {limits.max_messages} 条）。/ Too many messages "
                            f"(at most {limits.max_messages}).")
        return obj

    try:
        return json.loads(bytes(raw), object_hook=counted)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _NotAJoin("请求体不是合法的 JSON。/ The request body is not valid JSON.") from None


def _join_fields(data: Any, limits: Limits):
    if not isinstance(data, dict) or not isinstance(data.get("data"), list) or not data["data"]:
        raise _NotAJoin("需要 {\"data\": [消息, null], \"fn_index\": 0, \"session_hash\": …}。/ "
                        "Expected {\"data\": [message, null], \"fn_index\": 0, \"session_hash\": …}.")
    if data.get("fn_index", _FN_INDEX) != _FN_INDEX:
        raise _NotAJoin("这里只有 /chat（fn_index 0）。/ The only function here is /chat (fn_index 0).")
    session_hash = data.get("session_hash")
    if not isinstance(session_hash, str) or not 0 < len(session_hash) <= MAX_SESSION_HASH \
            or not session_hash.isprintable():
        raise _NotAJoin(f"session_hash 应是不超过 {MAX_SESSION_HASH} 个字符的字符串。/ "
                        f"session_hash must be a string of at most {MAX_SESSION_HASH} characters.")
    message = data["data"][0]
    too_long = (isinstance(message, str) and len(message) > limits.max_content_chars) or \
        (isinstance(message, list) and len(message) > limits.max_messages)
    if too_long:
        raise _NotAJoin(f"消息太长（最多 {limits.max_content_chars} 个字符、{limits.max_messages} 条）。/ The message is "
                        f"too long (at most {limits.max_content_chars} characters, {limits.max_messages} messages).",
                        413)
    return session_hash, message


class QueueStream:
    """``GET /queue/data``: answers the session's queued messages, as they join, until none is left.

    An ASGI app of its own, like ChatCall, because it owns the whole exchange: when the student
    goes away every answer it was running is cancelled (upstream too) and recorded as such.
    """

    def __init__(self, state: Any, face: GradioFace, session: Session, request: Request) -> None:
        self._state = state
        self._face = face
        self._session = session
        self._request = request
        self._send: Any = None
        self._lock = anyio.Lock()
        self._mine = 0          # messages this stream is answering
        self._gone = False      # the student disconnected

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self._send = send
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._watch_disconnect, receive, tasks.cancel_scope)
                tasks.start_soon(self._heartbeats)
                await self._serve(tasks)
                tasks.cancel_scope.cancel()
            if self._gone:
                return
            await self._emit({"msg": "close_stream", "event_id": None})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass    # the student went away while we wrote; nothing is left to tell them

    async def _serve(self, tasks: Any) -> None:
        session = self._session
        while True:
            while session.waiting:
                _, item = session.waiting.popitem(last=False)
                self._face.taken(item)
                session.running[item.id] = item
                self._mine += 1
                tasks.start_soon(self._run, item)
            if not self._mine:
                return
            await session.changed()

    async def _run(self, item: QueuedMessage) -> None:
        session = self._session
        try:
            with anyio.CancelScope() as scope:
                item.scope = scope
                if not item.cancelled:
                    await self._emit(estimation(item.id, len(session.running)))
                    await self._emit(process_starts(item.id))
                    kept = await answer(self._state, self._face.limits, self._face.allow_legacy_clients,
                                        self._request, item, session.history, self._emit)
                    if kept is not None:
                        session.remember(kept, self._face.limits)
            if item.cancelled:
                await self._emit(failed(item.id, "已取消。/ Cancelled."))
        finally:
            session.running.pop(item.id, None)
            self._mine -= 1
            session.notify()

    async def _watch_disconnect(self, receive: Any, scope: anyio.CancelScope) -> None:
        await _watch_disconnect(receive, scope)
        self._gone = True

    async def _heartbeats(self) -> None:
        while True:
            await anyio.sleep(HEARTBEAT_SECONDS)
            await self._emit({"msg": "heartbeat"})

    async def _emit(self, message: Dict[str, Any]) -> None:
        frame = b"data: " + json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
        async with self._lock:
            await self._send({"type": "http.response.body", "body": frame, "more_body": True})


class Heartbeat:
    """``GET /heartbeat/<session_hash>``: open until the client leaves or the server stops."""

    def __init__(self, state: Any) -> None:
        self._state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_watch_disconnect, receive, tasks.cancel_scope)
                tasks.start_soon(_cancel_when_set, self._state.stopping(), tasks.cancel_scope)
                while True:
                    await send({"type": "http.response.body", "body": b"data: ALIVE\n\n", "more_body": True})
                    await anyio.sleep(HEARTBEAT_SECONDS)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass


async def _watch_disconnect(receive: Any, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def _cancel_when_set(event: asyncio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


def gradio_routes() -> List[Route]:
    """The face's routes, at the root (gradio_client 1.x) and under /gradio_api (2.x)."""
    routes = [Route("/models", legacy_models, methods=["GET"])]
    for prefix in ("", API_PREFIX):
        routes += [
            Route(f"{prefix}/config", config, methods=["GET"]),
            Route(f"{prefix}/info", info, methods=["GET"]),
            Route(f"{prefix}/queue/join", queue_join, methods=["POST"]),
            Route(f"{prefix}/queue/data", queue_data, methods=["GET"]),
            Route(prefix + "/heartbeat/{session_hash}", heartbeat, methods=["GET"]),
            Route(f"{prefix}/cancel", cancel, methods=["POST"]),
        ]
    return routes
