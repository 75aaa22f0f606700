"""The queue protocol of an old XEduLLM teacher server (Gradio), for ``Client(xedu_url=…)``.

Sans-I/O, like every adapter: the engine sends the requests these objects ask for and feeds
back what came; nothing here opens a socket or starts a thread.

What an old server is, as recorded against xedu-python 2.0.0's ``Client.run()`` on Gradio
4.44.1 (the facts the state machines below rely on):

- ``GET /config`` answers JSON with ``version``, ``protocol: "sse_v3"``, ``components`` and
  ``dependencies``; one dependency has ``api_name: "chat"`` (its ``id`` is the ``fn_index``)
  and takes a textbox and a state. A textbox labelled 模型 shows the teacher's model. A Gradio 5
  or later server adds ``api_prefix`` (``/gradio_api``), which then leads every other path.
  ``POST /v1/chat/completions`` answers 404 ``{"detail": "Not Found"}`` and ``/api/info`` 405.
- ``POST {prefix}/queue/join`` ``{"data": [message, null], "fn_index", "session_hash"}`` →
  ``{"event_id"}`` (503 when its queue is full).
- ``GET {prefix}/queue/data?session_hash=…`` is an event stream of JSON ``data:`` lines:
  ``estimation``, ``process_starts``, ``process_generating`` (``output.data[0]`` first the whole
  text so far, later a list of diffs such as ``["append", [], piece]``), ``process_completed``
  (``output.data[0]`` the whole answer; ``success: false`` with ``output.error``, which is null
  unless the teacher set ``show_error``), ``heartbeat`` while waiting, then ``close_stream``.
- The server keeps the chat history in the session's state: predictions sharing a
  ``session_hash`` are one conversation. A call whose messages are what the session already
  holds plus one new user message goes on in that session with only the new message (so
  ``Client(xedu_url=…)``'s conversation reaches the provider as XEduLLM's did: 1, 3, 5
  messages); any other call starts a fresh session with its messages folded into one text.
- When its provider fails, its chat function ends without an answer and Gradio reports
  ``success: false`` with ``error: null``: the reason is only in the teacher's console.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from .. import errors as E
from ..pictures import has_images
from ..sse import SSEEvent
from ..types import ChatChunk, ChatRequest, ChatResult, HTTPRequest
from .adapter import Adapter

PROVIDER_NAME = "xedullm-gradio"
_JSON = {"Accept": "application/json"}
# What a xedullm server's own /config carries (server/api/gradio_routes.py), besides Gradio's fields.
OUR_MARKER = "xedullm"


@dataclass(frozen=True)
class ClassroomServer:
    """The address is a xedullm classroom server: speak OpenAI at ``{root}/v1``."""

    root: str


@dataclass(frozen=True)
class GradioApp:
    """An old XEduLLM teacher server, as its /config describes it."""

    root: str
    api_prefix: str            # '' or e.g. '/gradio_api'
    fn_index: int
    inputs: List[str]          # per input of the chat function: 'message' or 'state'
    model: Optional[str]       # the model its page shows, when it shows one
    version: Optional[str]

    def url(self, path: str) -> str:
        return f"{self.root}{self.api_prefix}/{path}"


def _what(status: int, headers: Mapping[str, str]) -> str:
    kind = headers.get("content-type", "").split(";")[0].strip() or "no content type"
    return f"HTTP {status} ({kind})"


class ServerProbe:
    """Finds out what kind of server ``root`` is, with at most two GETs.

    ``/config`` first: our server and old XEduLLM servers both answer it (ours with a marker),
    and unlike ``/api/info`` it is never behind an access code. ``/api/info`` second, for
    xedullm servers that have no Gradio face.
    """

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        self._asked: List[str] = []
        self._found: List[str] = []
        self.result: Any = None

    def next_request(self) -> Optional[HTTPRequest]:
        if self.result is not None:
            return None
        if not self._asked:
            path = "config"
        elif self._asked == ["config"]:
            path = "api/info"
        else:
            raise self._neither()
        self._asked.append(path)
        return HTTPRequest("GET", f"{self.root}/{path}", dict(_JSON))

    def receive(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        path = self._asked[-1]
        self._found.append(f"GET /{path} → {_what(status, headers)}")
        data = _json_or_none(body)
        if path == "config" and status == 200 and isinstance(data, dict):
            if OUR_MARKER in data:
                self.result = ClassroomServer(self.root)
            elif isinstance(data.get("dependencies"), list):
                self.result = _gradio_app(self.root, data)
        elif path == "api/info" and status == 200 and isinstance(data, dict) and "access_code_required" in data:
            self.result = ClassroomServer(self.root)

    def _neither(self) -> E.ConfigurationError:
        found = "；".join(self._found)
        found_en = "; ".join(self._found)
        return E.ConfigurationError(
            f"{self.root} 既不是 xedullm 课堂服务器，也不是旧版 XEduLLM（Gradio）服务器：{found}。"
            f"请检查 xedu_url 是否就是老师给的地址（例如 http://192.168.1.23:7860）；"
            f"若它是 OpenAI 兼容的服务，请改用 base_url=…、api_key=… 和 model=…。/ "
            f"{self.root} is neither a xedullm classroom server nor an old XEduLLM (Gradio) server: "
            f"{found_en}. Check that xedu_url is exactly the address your teacher gave "
            f"(e.g. http://192.168.1.23:7860); for an OpenAI-compatible service use base_url=…, "
            f"api_key=… and model=… instead.")


def _gradio_app(root: str, config: Dict[str, Any]) -> GradioApp:
    components = {c.get("id"): c for c in config.get("components") or [] if isinstance(c, dict)}
    dependencies = [d for d in config["dependencies"] if isinstance(d, dict)]
    for index, dep in enumerate(dependencies):
        if dep.get("api_name") != "chat":
            continue
        kinds = [components.get(i, {}).get("type") for i in dep.get("inputs") or []]
        inputs = ["state" if kind == "state" else "message" for kind in kinds]
        if inputs.count("message") == 1:
            return GradioApp(root=root, api_prefix=_prefix(config.get("api_prefix")),
                             fn_index=int(dep.get("id", index)), inputs=inputs,
                             model=_shown_model(components.values()), version=config.get("version"))
    names = ", ".join("/" + d["api_name"] for d in dependencies if isinstance(d.get("api_name"), str)) or "—"
    raise E.ConfigurationError(
        f"{root} 是一个 Gradio 应用，但不是 XEduLLM 聊天服务器（没有只收一条消息的 /chat 接口；它有：{names}）。"
        f"请检查 xedu_url 是否就是老师给的地址。/ {root} is a Gradio app but not an XEduLLM chat server "
        f"(no /chat endpoint taking one message; it has: {names}). Check that xedu_url is the address "
        f"your teacher gave.")


def _prefix(value: Any) -> str:
    if not isinstance(value, str) or not value.strip("/"):
        return ""
    return "/" + value.strip("/")


def _shown_model(components) -> Optional[str]:
    for c in components:
        props = c.get("props") or {}
        if c.get("type") == "textbox" and props.get("label") == "模型" and isinstance(props.get("value"), str):
            return props["value"] or None
    return None


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


_ROLE_LABELS = {"system": "系统 / system", "user": "用户 / user", "assistant": "助手 / assistant"}


def fold_messages(messages: List[Dict[str, str]]) -> str:
    """One text for a chat that takes one message: the message itself when there is only one,
    else the whole conversation written out, so history and system prompts are not lost."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    turns = "\n\n".join(f"{_ROLE_LABELS[m['role']]}: {m['content']}" for m in messages)
    return ("以下是到目前为止的对话，请以助手的身份回复最后一条用户消息。/ "
            "The conversation so far; reply as the assistant to the last user message.\n\n" + turns)


class Conversation:
    """The session a client keeps talking in, and the messages (answers included) it holds."""

    def __init__(self) -> None:
        self.session_hash: Optional[str] = None
        self.held: List[Dict[str, Any]] = []


class QueueCall:
    """One chat through the queue: join, then read the session's event stream.

    ``join_request`` → ``receive_join`` → ``data_request`` → ``receive_event`` for each SSE
    event (it returns the new text as chunks) until ``finished``; ``result`` is the answer.
    """

    def __init__(self, app: GradioApp, req: ChatRequest, conversation: Optional[Conversation] = None) -> None:
        if has_images(req.messages):
            raise E.BadRequestError(
                "这台旧版 XEduLLM 课堂服务器只收文字，看不到图片：请去掉图片，或请老师改用新版 xedullm serve 和能看图的模型"
                "（如 qwen-vl-max、glm-4v-flash）。/ This old XEduLLM classroom server takes text only and cannot "
                "see pictures: leave the picture out, or ask your teacher for a new xedullm server with a vision "
                "model (e.g. qwen-vl-max, glm-4v-flash).", code="model_cannot_see")
        self.app = app
        self._conversation, self._messages = conversation, req.messages
        last = req.messages[-1]
        if conversation is not None and conversation.held and req.messages[:-1] == conversation.held \
                and last["role"] == "user" and isinstance(last.get("content"), str):
            self.session_hash, self.message = conversation.session_hash, last["content"]
        else:
            self.session_hash = uuid.uuid4().hex
            self.message = fold_messages(req.messages)
        self.event_id: Optional[str] = None
        self.text = ""             # the answer so far
        self.finished = False
        self.progressed = False    # whether the last event was more than a heartbeat

    def join_request(self) -> HTTPRequest:
        data = [self.message if kind == "message" else None for kind in self.app.inputs]
        body = {"data": data, "fn_index": self.app.fn_index, "session_hash": self.session_hash,
                "event_data": None, "trigger_id": None}
        return HTTPRequest("POST", self.app.url("queue/join"), dict(_JSON), body)

    def receive_join(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        data = _json_or_none(body)
        if not 200 <= status < 300:
            raise queue_error(status, headers, body)
        if not isinstance(data, dict) or not isinstance(data.get("event_id"), str):
            raise E.ServerError(provider=PROVIDER_NAME,
                                detail=f"加入队列的回复里没有 event_id / no event_id in the join reply: {body[:200]!r}")
        self.event_id = data["event_id"]

    def data_request(self) -> HTTPRequest:
        return HTTPRequest("GET", self.app.url("queue/data"), {"Accept": "text/event-stream"},
                           params={"session_hash": self.session_hash})

    def receive_event(self, event: SSEEvent) -> List[ChatChunk]:
        self.progressed = False
        message = _json_or_none(event.data.encode()) if event.data.strip() else None
        if not isinstance(message, dict):
            return []
        kind = message.get("msg")
        if kind == "heartbeat":
            return []
        self.progressed = True
        if kind == "close_stream":
            if not self.finished:
                raise E.ServerError(provider=PROVIDER_NAME,
                                    detail="回答还没完成，连接就结束了 / the stream closed before the answer completed")
            return []
        if kind == "unexpected_error":
            raise E.ServerError(provider=PROVIDER_NAME, detail=str(message.get("message") or "")[:300] or None)
        if message.get("event_id") != self.event_id:
            return []
        output = message.get("output") if isinstance(message.get("output"), dict) else {}
        if kind == "process_generating":
            return self._grow(_first_output(output, self.text))
        if kind == "process_completed":
            if not message.get("success", True) or "error" in output:
                raise _app_error(output.get("error"))
            final = _first_output(output, self.text)
            pieces = self._grow(final if isinstance(final, str) else self.text)
            self.finished = True
            if self._conversation is not None:
                self._conversation.session_hash = self.session_hash
                self._conversation.held = [*self._messages, {"role": "assistant", "content": self.text}]
            return pieces
        return []

    def _grow(self, value: Any) -> List[ChatChunk]:
        """The text the server now shows, as the piece added since the last event."""
        if not isinstance(value, str) or not value.startswith(self.text) or value == self.text:
            return []
        piece, self.text = value[len(self.text):], value
        return [ChatChunk(text=piece)]

    def end_of_stream(self) -> None:
        """The connection ended: fine after the answer, a ServerError before it."""
        if not self.finished:
            raise E.ServerError(provider=PROVIDER_NAME,
                                detail="回答还没完成，连接就结束了 / the stream closed before the answer completed")

    @property
    def result(self) -> ChatResult:
        return ChatResult(text=self.text, finish_reason="stop", model=self.app.model)


def _first_output(output: Dict[str, Any], current: str) -> Any:
    """``output.data[0]`` with its diffs applied to ``current`` (sse_v3 sends diffs)."""
    data = output.get("data")
    if not isinstance(data, list) or not data:
        return None
    value = data[0]
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, list) and all(isinstance(d, list) and len(d) == 3 for d in value):
        text = current
        for action, path, piece in value:
            if path != [] or not isinstance(piece, str):
                return None
            if action == "append":
                text += piece
            elif action == "replace":
                text = piece
            else:
                return None
        return text
    return None


def _final(err: E.LLMError) -> E.LLMError:
    # The old server's failures come from its own provider call; asking again only repeats it.
    err.retryable = False
    return err


def _app_error(detail: Any) -> E.LLMError:
    if detail:
        detail = str(detail)[:500]
        return _final(E.ServerError(
            f"老师的旧版 XEduLLM 服务器出错：{detail} / The teacher's old XEduLLM server reported an error: {detail}",
            provider=PROVIDER_NAME, detail=detail))
    return _final(E.ServerError(
        "老师的旧版 XEduLLM 服务器处理这条消息时出错了（它不说原因）：请告诉老师看看服务器窗口里的报错。/ "
        "The teacher's old XEduLLM server failed on this message (it does not say why): ask your teacher to "
        "look at the server window.", provider=PROVIDER_NAME))


def queue_error(status: int, headers: Mapping[str, str], body: bytes) -> E.LLMError:
    """A non-2xx answer from the queue's routes."""
    data = _json_or_none(body)
    detail = data.get("detail") if isinstance(data, dict) else body[:200].decode("utf-8", "replace")
    detail = str(detail)[:300] if detail else None
    if status == 503:
        return E.RateLimitError(
            "老师的旧版服务器排队已满，请等一会儿再试。/ The teacher's old server's queue is full; try again in a moment.",
            provider=PROVIDER_NAME, status_code=status, detail=detail)
    cls = E.ServerError if status >= 500 else E.BadRequestError
    return cls(provider=PROVIDER_NAME, status_code=status, detail=detail)


class GradioAdapter(Adapter):
    """The protocol entry in the ADAPTERS table. Its exchanges take several requests, so the
    engine drives :class:`ServerProbe` and :class:`QueueCall` instead of ``chat_request``."""

    @property
    def provider_name(self) -> str:
        return PROVIDER_NAME

    def probe(self, root: str) -> ServerProbe:
        return ServerProbe(root)

    def queue_call(self, app: GradioApp, req: ChatRequest, conversation: Optional[Conversation] = None) -> QueueCall:
        return QueueCall(app, req, conversation)

    def embeddings_request(self, texts: List[str], model: str, conn: Any, token: Optional[str] = None) -> HTTPRequest:
        raise E.BadRequestError(
            "这台旧版 XEduLLM 课堂服务器不提供文本向量（embedding）：请老师改用新版 xedullm serve。/ "
            "This old XEduLLM classroom server has no embeddings: ask your teacher for a new xedullm server.",
            provider=PROVIDER_NAME, code="no_embedding_model")

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> E.LLMError:
        return queue_error(status, headers, body)
