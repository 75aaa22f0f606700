"""OpenAI's Responses API, text subset, as a second shape of the chat completions the server
already gives: the request becomes a chat body, and the chat's answer (JSON or SSE chunks)
becomes a Response object or the Responses stream events. No I/O here.

Shapes from OpenAI's API reference ("Responses", "Streaming events", read 2026-12-07): a
stream is ``event: TYPE`` + ``data: {...}`` frames, each with a growing ``sequence_number``,
``response.created`` → ``response.in_progress`` → ``response.output_item.added`` →
``response.content_part.added`` → ``response.output_text.delta``… → ``response.output_text.done``
→ ``response.content_part.done`` → ``response.output_item.done`` → ``response.completed`` (or
``response.incomplete`` when ``max_output_tokens`` cut it, ``response.failed`` on an error);
there is no ``[DONE]``.
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any, Dict, List, Optional

from .openai_format import InvalidRequest

#: the request fields served; anything else is a 400 naming it
SUPPORTED = ("model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "stream")
_ROLES = ("user", "assistant", "system", "developer")
_TEXT_PARTS = ("input_text", "output_text", "text")


def chat_body(data: Any) -> Dict[str, Any]:
    """The chat completions body for a Responses request (raises InvalidRequest naming a field
    outside the subset)."""
    if not isinstance(data, dict):
        raise InvalidRequest("请求体必须是 JSON 对象。", "The request body must be a JSON object.")
    for name in data:
        if name not in SUPPORTED:
            raise InvalidRequest(
                f"/v1/responses 只支持文字对话（{', '.join(SUPPORTED)}），不支持 {name}；需要它请用 /v1/chat/completions。",
                f"/v1/responses serves text only ({', '.join(SUPPORTED)}); {name} is not supported: use "
                f"/v1/chat/completions for it.", name)
    messages: List[Dict[str, Any]] = []
    instructions = data.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InvalidRequest("instructions 必须是字符串。", "instructions must be a string.", "instructions")
        messages.append({"role": "system", "content": instructions})
    messages.extend(_input_messages(data.get("input")))
    body: Dict[str, Any] = {"messages": messages, "stream": data.get("stream") is True}
    for ours, theirs in (("model", "model"), ("temperature", "temperature"), ("top_p", "top_p"),
                         ("max_tokens", "max_output_tokens")):
        if data.get(theirs) is not None:
            body[ours] = data[theirs]
    if body["stream"]:
        body["stream_options"] = {"include_usage": True}
    return body


def _input_messages(value: Any) -> List[Dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise InvalidRequest("input 必须是字符串或消息列表。", "input must be a string or a list of messages.", "input")
    out = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict) or item.get("type", "message") != "message" or item.get("role") not in _ROLES:
            raise InvalidRequest(f"{where} 必须是 {{role, content}} 消息（只支持文字）。",
                                 f"{where} must be a {{role, content}} message (text only).", where)
        role = "system" if item["role"] == "developer" else item["role"]
        out.append({"role": role, "content": _text(item.get("content"), where)})
    return out


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in _TEXT_PARTS or not isinstance(part.get("text"), str):
                raise InvalidRequest(f"{where}.content 只能是文字（input_text）。",
                                     f"{where}.content may hold text only (input_text).", f"{where}.content")
            texts.append(part["text"])
        return "".join(texts)
    raise InvalidRequest(f"{where}.content 必须是文字。", f"{where}.content must be text.", f"{where}.content")


def _usage(usage: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    if not usage:
        return None
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion}


class Shape:
    """One response's ids and settings, shared by its JSON and its events."""

    def __init__(self, request: Dict[str, Any], model: str) -> None:
        self.id = "resp_" + uuid.uuid4().hex
        self.message_id = "msg_" + uuid.uuid4().hex
        self.created = int(time.time())
        self.model = model
        self.request = request

    def message(self, text: str, status: str) -> Dict[str, Any]:
        content = [{"type": "output_text", "text": text, "annotations": []}] if status != "in_progress" else []
        return {"type": "message", "id": self.message_id, "status": status, "role": "assistant", "content": content}

    def response(self, status: str, text: Optional[str] = None, usage: Optional[Dict[str, Any]] = None,
                 error: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        item_status = "completed" if status == "completed" else "incomplete"
        return {
            "id": self.id, "object": "response", "created_at": self.created, "status": status,
            "model": self.model, "output": [] if text is None else [self.message(text, item_status)],
            "error": error, "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": self.request.get("instructions"),
            "max_output_tokens": self.request.get("max_output_tokens"),
            "temperature": self.request.get("temperature"), "top_p": self.request.get("top_p"),
            "parallel_tool_calls": False, "tool_choice": "none", "tools": [], "metadata": {},
            "usage": _usage(usage),
        }

    def from_completion(self, completion: Dict[str, Any]) -> Dict[str, Any]:
        choice = (completion.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content") or ""
        status = "incomplete" if choice.get("finish_reason") == "length" else "completed"
        return self.response(status, text, completion.get("usage"))


class EventWriter:
    """Chat completion chunks in, Responses stream events out (bytes, one frame each)."""

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.sequence = 0
        self.text: List[str] = []
        self.usage: Optional[Dict[str, Any]] = None
        self.finish: Optional[str] = None
        self.ended = False

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return (f"event: {kind}\ndata: ".encode() + json.dumps(payload, ensure_ascii=False).encode("utf-8")
                + b"\n\n")

    def start(self) -> bytes:
        shape = self.shape
        where = {"item_id": shape.message_id, "output_index": 0, "content_index": 0}
        return b"".join([
            self._event("response.created", response=shape.response("in_progress")),
            self._event("response.in_progress", response=shape.response("in_progress")),
            self._event("response.output_item.added", output_index=0, item=shape.message("", "in_progress")),
            self._event("response.content_part.added", **where,
                        part={"type": "output_text", "text": "", "annotations": []}),
        ])

    def chunk(self, chunk: Dict[str, Any]) -> bytes:
        """One chat chunk (a dict from a ``data:`` line)."""
        if "error" in chunk:
            return self.fail(chunk["error"])
        self.usage = chunk.get("usage") or self.usage
        out = []
        for choice in chunk.get("choices") or ():
            delta = (choice.get("delta") or {}).get("content")
            if delta:
                self.text.append(delta)
                out.append(self._event("response.output_text.delta", item_id=self.shape.message_id,
                                       output_index=0, content_index=0, delta=delta))
            self.finish = choice.get("finish_reason") or self.finish
        return b"".join(out)

    def done(self) -> bytes:
        """The chat said [DONE]: the text, its part, its item, then the response, closed."""
        self.ended = True
        shape, text = self.shape, "".join(self.text)
        status = "incomplete" if self.finish == "length" else "completed"
        where = {"item_id": shape.message_id, "output_index": 0, "content_index": 0}
        item_status = "completed" if status == "completed" else "incomplete"
        return b"".join([
            self._event("response.output_text.done", **where, text=text),
            self._event("response.content_part.done", **where,
                        part={"type": "output_text", "text": text, "annotations": []}),
            self._event("response.output_item.done", output_index=0, item=shape.message(text, item_status)),
            self._event(f"response.{status}", response=shape.response(status, text, self.usage)),
        ])

    def fail(self, error: Dict[str, Any]) -> bytes:
        """An error inside the stream (a cut answer, the provider failing): ``error``, then
        ``response.failed`` carrying what arrived."""
        self.ended = True
        message = str(error.get("message") or "")
        code = error.get("code") or error.get("type")
        return b"".join([
            self._event("error", code=code, message=message, param=error.get("param")),
            self._event("response.failed", response=self.shape.response(
                "failed", "".join(self.text), self.usage, error={"code": code, "message": message})),
        ])
