"""Checking a student's ``/v1/chat/completions`` body at the edge.

Anything malformed becomes a clear 400 naming the field, never a 500 and never a request
sent upstream on the teacher's key. Fields we do not use (``tools``, ``user``, penalties…)
are ignored rather than forwarded: students do not get to set options the teacher pays for.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from .limits import DEFAULT, Limits
from .openai_format import InvalidRequest

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
# JSON may spell half of a UTF-16 pair ("\\ud800"); such text cannot be encoded, stored or sent.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Beyond any model's answer length and beyond what a 32-bit field upstream can hold.
MAX_TOKENS_CEILING = 2 ** 31 - 1


@dataclass
class ChatBody:
    messages: List[Dict[str, str]]
    stream: bool = False
    include_usage: bool = False
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    max_tokens: Optional[int] = None
    stop: Optional[List[str]] = None
    model: Optional[str] = None   # what the student asked for; the policy decides what is used


def parse_chat_body(data: Any, limits: Limits = DEFAULT) -> ChatBody:
    if not isinstance(data, dict):
        raise InvalidRequest("请求体必须是 JSON 对象。", "The request body must be a JSON object.")
    _check_text(data)
    body = ChatBody(messages=_messages(data.get("messages"), limits))
    body.stream = _flag(data, "stream")
    options = data.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise InvalidRequest("stream_options 必须是对象。", "stream_options must be an object.", "stream_options")
        body.include_usage = _flag(options, "include_usage", "stream_options.include_usage")
    body.temperature = _number(data, "temperature", 0.0, 2.0)
    body.top_p = _number(data, "top_p", 0.0, 1.0)
    body.max_tokens = _max_tokens(data)
    body.stop = _stop(data.get("stop"))
    n = data.get("n")
    if n is not None and n != 1:
        raise InvalidRequest("只支持 n=1（一次一个回答）。", "Only n=1 (one answer per request) is supported.", "n")
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidRequest("model 必须是字符串。", "model must be a string.", "model")
    body.model = model
    return body


def _messages(value: Any, limits: Limits) -> List[Dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise InvalidRequest("messages 必须是非空列表，例如 [{\"role\": \"user\", \"content\": \"你好\"}]。",
                             "messages must be a non-empty list, e.g. [{\"role\": \"user\", \"content\": \"hi\"}].",
                             "messages")
    if len(value) > limits.max_messages:
        raise InvalidRequest(f"消息太多（最多 {limits.max_messages} 条），请清空对话后重新开始。",
                             f"Too many messages (at most {limits.max_messages}); clear the chat and start again.",
                             "messages")
    out = []
    for i, item in enumerate(value):
        param = f"messages[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"{param} 必须是对象。", f"{param} must be an object.", param)
        role = item.get("role")
        role = _ROLES.get(role) if isinstance(role, str) else None  # a list or dict is unhashable
        if role is None:
            raise InvalidRequest(f"{param}.role 必须是 system、user 或 assistant。",
                                 f"{param}.role must be system, user or assistant.", f"{param}.role")
        content = _content(item.get("content"), f"{param}.content")
        if len(content) > limits.max_content_chars:
            raise InvalidRequest(f"{param}.content 太长（最多 {limits.max_content_chars} 个字符），请缩短。",
                                 f"{param}.content is too long (at most {limits.max_content_chars} characters); shorten it.",
                                 f"{param}.content")
        out.append({"role": role, "content": content})
    return out


def _content(value: Any, param: str) -> str:
    if isinstance(value, str):
        return value
    # OpenAI's content-parts form; some web tools send text this way.
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                       and isinstance(p.get("text"), str) for p in value):
        return "".join(p["text"] for p in value)
    raise InvalidRequest(f"{param} 必须是文字（字符串）；这里不支持图片等内容。",
                         f"{param} must be text (a string); images and other parts are not supported here.", param)


def _check_text(data: Any) -> None:
    """Every string in the body, keys included, at any depth: no lone surrogate; every number
    finite (JSON's parser takes NaN and Infinity, nothing upstream does). Walked without
    recursion, since the nesting may be as deep as the JSON parser allowed."""
    pending: List[Any] = [(data, "")]
    while pending:
        value, path = pending.pop()
        if isinstance(value, str):
            if _LONE_SURROGATE.search(value):
                param = path or "body"
                raise InvalidRequest(f"{param} 里有无法编码的字符（单独的 UTF-16 代理项，如 \\ud800），请删掉后重发。",
                                     f"{param} contains a character that cannot be encoded (a lone UTF-16 "
                                     f"surrogate such as \\ud800); remove it and send again.", param)
        elif isinstance(value, float) and not math.isfinite(value):
            param = path or "body"
            raise InvalidRequest(f"{param} 必须是有限的数（不能是 NaN 或 Infinity）。",
                                 f"{param} must be a finite number (not NaN or Infinity).", param)
        elif isinstance(value, dict):
            for key, item in value.items():
                pending.append((item, f"{path}.{key}" if path else str(key)))
                pending.append((key, path or "body"))   # looked at first: the path names it
        elif isinstance(value, list):
            pending.extend((item, f"{path}[{i}]") for i, item in enumerate(value))


def _flag(data: Dict[str, Any], name: str, param: Optional[str] = None) -> bool:
    value = data.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        param = param or name
        raise InvalidRequest(f"{param} 必须是 true 或 false。", f"{param} must be true or false.", param)
    return value


def _number(data: Dict[str, Any], name: str, low: float, high: float) -> Optional[float]:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (isinstance(value, float) and not math.isfinite(value)) or not low <= value <= high:
        raise InvalidRequest(f"{name} 必须是 {low:g} 到 {high:g} 之间的数。",
                             f"{name} must be a number from {low:g} to {high:g}.", name)
    return float(value)


def _max_tokens(data: Dict[str, Any]) -> Optional[int]:
    # Newer OpenAI clients send max_completion_tokens instead of max_tokens.
    for name in ("max_tokens", "max_completion_tokens"):
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS_CEILING:
            raise InvalidRequest(f"{name} 必须是 1 到 {MAX_TOKENS_CEILING} 之间的整数（老师另设了每个回答的上限）。",
                                 f"{name} must be a whole number from 1 to {MAX_TOKENS_CEILING} (the teacher also "
                                 f"caps each answer).", name)
        return value
    return None


def _stop(value: Any) -> Optional[List[str]]:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and len(value) <= 4 and all(isinstance(s, str) for s in value):
        return value
    raise InvalidRequest("stop 必须是字符串或最多 4 个字符串的列表。",
                         "stop must be a string or a list of up to 4 strings.", "stop")
