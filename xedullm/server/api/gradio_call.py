"""One message from an old XEduLLM student client, answered like any OpenAI request.

The message becomes a ChatBody and a ChatRequest (the same checks and limits), passes the
classroom policy as ``legacy:<address>`` (budgets, rate limits, the ledger), and is answered
by a :class:`ChatCall` run in-process: its waiting line, upstream stream, teacher's system
prompt, key redaction and ledger entry are the OpenAI face's own. What that call would write to
an OpenAI client is read back here and written as Gradio queue messages instead.

The old client cannot send an access code: in a class that has one it hears, in its own error
message, how to upgrade — unless the teacher lets legacy clients in.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, List, Optional

import anyio

from ...errors import AuthenticationError, LLMError
from ...sse import SSEDecoder
from ..classroom.ledger import LedgerEntry
from ..classroom.open_policy import Admission
from .body import parse_chat_body
from .chat_call import ChatCall
from .limits import Limits
from .openai_format import InvalidRequest, error_reply

Emit = Callable[[Dict[str, Any]], Awaitable[None]]
Messages = List[Dict[str, str]]


@dataclass
class QueuedMessage:
    """A ``/queue/join``: what was sent, by whom, when; ``scope`` while it is being answered."""

    id: str
    message: Any                  # data[0]: the text, or a list of {'role', 'content'} messages
    address: str                  # the student's machine, as the server saw it
    joined: float                 # time.time() at the join
    caller: Any = None            # who the door identified (a token's holder), else None
    refusal: Optional[str] = None  # why the door refused it ('legacy': the old client's upgrade note)
    cancelled: bool = False
    scope: Optional[anyio.CancelScope] = None

    @property
    def who(self) -> str:
        token = getattr(self.caller, "token", None)
        return self.caller.who if token is not None else f"legacy:{self.address}"


class LegacyRefused(AuthenticationError):
    """An access code is needed and the old client cannot send one."""

    student_facing = True

    def __init__(self, server_url: str) -> None:
        super().__init__(
            f"这个课堂设置了访问码，而旧版 XEdu 客户端（xedu-python）发送不了访问码。请先升级：pip install xedullm，"
            f"再在程序里写 Client(xedu_url='{server_url}', api_key='老师给的访问码')"
            f"（from XEdu.LLM import Client 这一行不用改）。/ This classroom needs an access code, which the old "
            f"XEdu client (xedu-python) cannot send. Upgrade with `pip install xedullm`, then write "
            f"Client(xedu_url='{server_url}', api_key='<the access code>') "
            f"(the line `from XEdu.LLM import Client` stays as it is).")


class JoinRefused(AuthenticationError):
    """A join with a wrong access code or token: the policy's own words."""

    student_facing = True


def estimation(event_id: str, queue_size: int) -> Dict[str, Any]:
    return {"msg": "estimation", "event_id": event_id, "rank": 0, "queue_size": queue_size, "rank_eta": None}


def process_starts(event_id: str) -> Dict[str, Any]:
    return {"msg": "process_starts", "event_id": event_id, "eta": None}


def _output(data: list, generating: bool, started: float) -> Dict[str, Any]:
    took = time.time() - started
    return {"data": data, "is_generating": generating, "duration": took, "average_duration": took,
            "render_config": None, "changed_state_ids": []}


def failed(event_id: str, message: str) -> Dict[str, Any]:
    # gradio_client raises AppError with ``output.error``; 2.x passes the other keys of
    # ``output`` to AppError too, so nothing else goes there.
    return {"msg": "process_completed", "event_id": event_id, "output": {"error": message}, "success": False}


async def answer(state: Any, limits: Limits, allow_legacy: bool, request: Any, item: QueuedMessage,
                 history: Messages, emit: Emit) -> Optional[Messages]:
    """Answer ``item``, emitting its ``process_generating`` and ``process_completed`` messages.

    Returns the conversation to remember for the session (None when there was no answer).
    """
    if item.refusal is not None:
        # Refused at the join (api/gradio_routes.py), before its message was kept.
        err: LLMError = LegacyRefused(str(request.base_url).rstrip("/")) if item.refusal == "legacy" \
            else JoinRefused(item.refusal)
        await emit(failed(item.id, await _refuse(state, err, item)))
        return None
    try:
        body = parse_chat_body({"messages": _messages(item.message, history, limits), "stream": True}, limits)
        chat = state.client.build_request(body.messages, stream=True, system=state.live.get("system_prompt"))
    except InvalidRequest as err:
        await emit(failed(item.id, str(err)))
        return None
    except LLMError as err:
        await emit(failed(item.id, str(InvalidRequest.wrap(err))))
        return None
    try:
        admission = await _admit(state, request, item, chat)
    except LLMError as err:
        await emit(failed(item.id, await _refuse(state, err, item)))
        return None
    relay = _Relay(item, emit)
    call = ChatCall(state, body, admission, chat, item.joined)
    # The answer travels on the queue's stream, not on this request's connection: the scope
    # goes without the connection's extensions (api/connection_guard.py), which would hand
    # the answer that connection's disconnect and its raw send.
    scope = {key: value for key, value in request.scope.items() if key != "extensions"}
    await call(scope, _watched_by_the_queue_stream, relay)
    if relay.error is not None:
        await emit(failed(item.id, relay.error))
        return None
    await emit({"msg": "process_completed", "event_id": item.id,
                "output": _output([relay.text, None], False, item.joined), "success": True})
    return body.messages + [{"role": "assistant", "content": relay.text}]


def _messages(value: Any, history: Messages, limits: Limits) -> Any:
    if isinstance(value, str):
        # The session's earlier turns first, as the original server's state keeps them.
        return history[-(limits.max_messages - 1):] + [{"role": "user", "content": value}]
    if isinstance(value, list):
        return value    # a whole conversation; parse_chat_body checks it like any other
    raise InvalidRequest("消息应是文字（字符串）。", "The message must be text (a string).")


async def _admit(state: Any, request: Any, item: QueuedMessage, chat: Any) -> Admission:
    policy = state.policy
    if getattr(policy, "identify", None) is not None:
        from ..classroom.policy import Caller

        caller = item.caller if getattr(item.caller, "token", None) is not None else Caller(who=item.who)
        admission = await policy.admit(request, None, caller=caller, chat=chat)
    else:
        admission = await policy.admit(request, None)
    return dataclasses.replace(admission, who=item.who)


async def _refuse(state: Any, err: LLMError, item: QueuedMessage) -> str:
    """Record a refusal as the OpenAI face does; the student-facing message."""
    reply = error_reply(err, own_message=True)
    error = reply.body["error"]
    await state.ledger.record(LedgerEntry(
        started=item.joined, latency=time.time() - item.joined, who=item.who, model=None, stream=True,
        status=reply.status, outcome=error["code"] or error["type"], usage=None))
    return error["message"]


async def _watched_by_the_queue_stream() -> Dict[str, Any]:
    # ChatCall's ``receive``: the queue stream watches its own student, and cancelling it
    # cancels this call (ChatCall then records the student as gone, as for an OpenAI client).
    await anyio.sleep_forever()
    return {"type": "http.disconnect"}


class _Relay:
    """The ``send`` of the in-process ChatCall: its OpenAI answer in, queue messages out."""

    def __init__(self, item: QueuedMessage, emit: Emit) -> None:
        self._item = item
        self._emit = emit
        self._sse: Optional[SSEDecoder] = None   # set when the answer streams
        self._body = bytearray()                 # else: the error body
        self.text = ""
        self.error: Optional[str] = None

    async def __call__(self, message: Dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            content_type = dict(message.get("headers") or []).get(b"content-type", b"")
            if message["status"] == 200 and content_type.startswith(b"text/event-stream"):
                self._sse = SSEDecoder()
            return
        data = message.get("body", b"")
        if self._sse is None:
            self._body += data
            if not message.get("more_body"):
                self.error = _error_message(bytes(self._body))
            return
        for event in self._sse.feed(data):
            await self._frame(event.data)

    async def _frame(self, payload: str) -> None:
        if not payload or payload == "[DONE]":
            return
        frame = json.loads(payload)
        if "error" in frame:
            self.error = frame["error"]["message"]
            return
        for choice in frame.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content") or ""
            if piece:
                await self._piece(piece)

    async def _piece(self, piece: str) -> None:
        # As Gradio does: the first message carries the whole value, later ones a diff; the
        # state's slot is null, then an empty diff.
        data = [[["append", [], piece]], []] if self.text else [piece, None]
        self.text += piece
        await self._emit({"msg": "process_generating", "event_id": self._item.id,
                          "output": _output(data, True, self._item.joined), "success": True})


def _error_message(body: bytes) -> str:
    try:
        return json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return ("服务器内部出错，请稍后再试；一直这样请告诉老师。/ "
                "The server hit an internal error; try again later, and tell your teacher if it persists.")
