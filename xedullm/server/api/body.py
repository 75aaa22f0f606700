"""Checking a student's ``/v1/chat/completions`` body at the edge.

Anything malformed becomes a clear 400 naming the field, never a 500 and never a request
sent upstream on the teacher's key. OpenAI's options (``tools``, ``response_format``,
``seed``, penalties…, see protocols/options.py) are checked here for their shape and then
forwarded where the teacher's provider carries them (the Client refuses the others by name);
any other field is ignored. ``stream_options`` is ours: usage is always asked upstream.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

from ...pictures import count_images, data_url_bytes, image_url, is_image_part, text_of
from .limits import DEFAULT, Limits
from .openai_format import InvalidRequest

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
          "tool": "tool"}
_FORMATS = ("text", "json_object", "json_schema")
_TOOL_CHOICES = ("none", "auto", "required")
# JSON may spell half of a UTF-16 pair ("\\ud800"); such text cannot be encoded, stored or sent.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# JSON text that may spell a lone surrogate ("\\ud800"; UTF-8 itself cannot carry one).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
# Beyond any model's answer length and beyond what a 32-bit field upstream can hold.
MAX_TOKENS_CEILING = 2 ** 31 - 1


@dataclass
class ChatBody:
    messages: List[Dict[str, Any]]
    stream: bool = False
    include_usage: bool = False
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    max_tokens: Optional[int] = None
    stop: Optional[List[str]] = None
    model: Optional[str] = None   # what the student asked for; the policy decides what is used
    options: Dict[str, Any] = field(default_factory=dict)   # checked OpenAI options to forward


def load_json(raw: bytes) -> Any:
    """A body's JSON, every string and number in it sendable. The parse itself notices a
    non-finite number and the text a surrogate escape; only then is the whole body walked
    (_check_text), for the error that names the field."""
    try:
        try:
            data = _sendable_decoder.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
            suspect = _SURROGATE_ESCAPE.search(raw) is not None
        except _Unsendable:   # parsed again in full (the first parse stopped there) and walked
            data, suspect = json.loads(raw), True
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurd nesting
        raise InvalidRequest("请求体不是合法的 JSON。", "The request body is not valid JSON.") from None
    if suspect:
        _check_text(data)
    return data


class _Unsendable(Exception):
    pass


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):   # 1e999
        raise _Unsendable
    return value


def _constant(text: str) -> float:   # NaN, Infinity, -Infinity
    raise _Unsendable


_sendable_decoder = json.JSONDecoder(parse_float=_finite, parse_constant=_constant)


def parse_chat_body(data: Any, limits: Limits = DEFAULT, *, checked: bool = False) -> ChatBody:
    """``checked``: ``data`` came from :func:`load_json`, its strings and numbers already checked."""
    if not isinstance(data, dict):
        raise InvalidRequest("请求体必须是 JSON 对象。", "The request body must be a JSON object.")
    if not checked:
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
    body.options = _options(data)
    return body


def _options(data: Dict[str, Any]) -> Dict[str, Any]:
    """OpenAI's options, each checked for its shape (the provider checks the rest)."""
    options: Dict[str, Any] = {}
    tools = data.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not all(
                isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("function"), dict)
                and isinstance(t["function"].get("name"), str) for t in tools):
            raise InvalidRequest("tools 必须是列表，每项形如 {\"type\": \"function\", \"function\": {\"name\": ...}}。",
                                 "tools must be a list of {\"type\": \"function\", \"function\": {\"name\": ...}}.",
                                 "tools")
        options["tools"] = tools
    choice = data.get("tool_choice")
    if choice is not None:
        if not (choice in _TOOL_CHOICES or isinstance(choice, dict) and isinstance(choice.get("type"), str)):
            raise InvalidRequest("tool_choice 必须是 none、auto、required 或 {\"type\": \"function\", ...}。",
                                 "tool_choice must be none, auto, required or {\"type\": \"function\", ...}.",
                                 "tool_choice")
        options["tool_choice"] = choice
    fmt = data.get("response_format")
    if fmt is not None:
        if not isinstance(fmt, dict) or fmt.get("type") not in _FORMATS:
            raise InvalidRequest("response_format 必须形如 {\"type\": \"json_object\"}（或 text、json_schema）。",
                                 "response_format must look like {\"type\": \"json_object\"} (or text, json_schema).",
                                 "response_format")
        options["response_format"] = fmt
    for name in ("parallel_tool_calls", "logprobs"):
        if data.get(name) is not None:
            options[name] = _flag(data, name)
    # A seed is a 64-bit integer everywhere upstream.
    for name, low, high in (("seed", -2 ** 63, 2 ** 63 - 1), ("top_logprobs", 0, 20)):
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            span = f" {low}–{high}"
            raise InvalidRequest(f"{name} 必须是整数{span}。", f"{name} must be a whole number{span}.", name)
        options[name] = value
    for name in ("frequency_penalty", "presence_penalty"):
        value = _number(data, name, -2.0, 2.0)
        if value is not None:
            options[name] = value
    user = data.get("user")
    if user is not None:
        if not isinstance(user, str) or len(user) > 256:
            raise InvalidRequest("user 必须是不超过 256 字的字符串。", "user must be a string of at most 256 characters.",
                                 "user")
        options["user"] = user
    return options


def _messages(value: Any, limits: Limits) -> List[Dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise InvalidRequest("messages 必须是非空列表，例如 [{\"role\": \"user\", \"content\": \"你好\"}]。",
                             "messages must be a non-empty list, e.g. [{\"role\": \"user\", \"content\": \"hi\"}].",
                             "messages")
    if len(value) > limits.max_messages:
        raise InvalidRequest(f"消息太多（最多 {limits.max_messages} 条），请清空对话后重新开始。",
                             f"Too many messages (at most {limits.max_messages}); clear the chat and start again.",
                             "messages")
    out = []
    pictures = 0
    for i, item in enumerate(value):
        param = f"messages[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"{param} 必须是对象。", f"{param} must be an object.", param)
        role = item.get("role")
        role = _ROLES.get(role) if isinstance(role, str) else None  # a list or dict is unhashable
        if role is None:
            raise InvalidRequest(f"{param}.role 必须是 system、user、assistant 或 tool。",
                                 f"{param}.role must be system, user, assistant or tool.", f"{param}.role")
        calls = _tool_calls(item.get("tool_calls"), role, param)
        # An assistant turn that only called tools has no text (OpenAI sends content: null).
        content = None if calls and item.get("content") is None else _content(
            item.get("content"), f"{param}.content", role, limits)
        if isinstance(content, list):
            pictures += count_images(content)
            if pictures > limits.max_images:
                raise InvalidRequest(f"图片太多（一次对话最多 {limits.max_images} 张），请清空对话后重新开始。",
                                     f"Too many pictures (at most {limits.max_images} in one conversation); clear "
                                     f"the chat and start again.", f"{param}.content")
        if content is not None and len(content if isinstance(content, str) else text_of(content)) > \
                limits.max_content_chars:
            raise InvalidRequest(f"{param}.content 太长（最多 {limits.max_content_chars} 个字符），请缩短。",
                                 f"{param}.content is too long (at most {limits.max_content_chars} characters); shorten it.",
                                 f"{param}.content")
        message: Dict[str, Any] = {"role": role, "content": content}
        if calls:
            message["tool_calls"] = calls
        if role == "tool":
            call_id = item.get("tool_call_id")
            if not isinstance(call_id, str):
                raise InvalidRequest(f"{param}.tool_call_id 必须是字符串：这条工具结果回答的是哪一次调用。",
                                     f"{param}.tool_call_id must be a string: the tool call this result answers.",
                                     f"{param}.tool_call_id")
            message["tool_call_id"] = call_id
        out.append(message)
    return out


def check_pictures_allowed(messages: List[Dict[str, Any]], allowed: bool) -> None:
    """The teacher's switch (setting ``allow_pictures``): off, a question with a picture is refused."""
    if not allowed and any(isinstance(m.get("content"), list) and count_images(m["content"]) for m in messages):
        raise InvalidRequest("老师关闭了图片：请只发文字的问题。", "Your teacher has turned pictures off: ask in text only.",
                             "messages")


def _tool_calls(value: Any, role: str, param: str) -> Optional[List[Dict[str, Any]]]:
    if value is None:
        return None
    if role != "assistant" or not isinstance(value, list) or not all(
            isinstance(c, dict) and isinstance(c.get("id"), str) and isinstance(c.get("function"), dict)
            and isinstance(c["function"].get("name"), str) and isinstance(c["function"].get("arguments"), str)
            for c in value):
        raise InvalidRequest(f"{param}.tool_calls 只能出现在 assistant 消息里，每项需要 id 和 function（name、arguments）。",
                             f"{param}.tool_calls belongs on an assistant message; each needs id and function "
                             f"(name, arguments).", f"{param}.tool_calls")
    return value


def _content(value: Any, param: str, role: str, limits: Limits) -> Union[str, List[Dict[str, Any]]]:
    """Text, or OpenAI's content parts: text parts alone are joined into text (some web tools
    send text this way); with a picture (user turns only) the parts stay, each checked."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                       and isinstance(p.get("text"), str) for p in value) and value:
        return "".join(p["text"] for p in value)
    if not isinstance(value, list) or not value or role != "user":
        raise InvalidRequest(f"{param} 必须是文字，或（用户消息里）文字和图片片段的列表。",
                             f"{param} must be text or, in a user message, a list of text and image parts.", param)
    parts: List[Dict[str, Any]] = []
    for j, part in enumerate(value):
        where = f"{param}[{j}]"
        if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
            continue
        url = image_url(part) if is_image_part(part) else None
        if not isinstance(url, str) or not (url.startswith("https://") or data_url_bytes(url) is not None):
            raise InvalidRequest(f"{where} 应是 {{\"type\": \"text\", ...}}，或 {{\"type\": \"image_url\", \"image_url\": "
                                 f"{{\"url\": ...}}}}（https:// 地址或 data:image/...;base64,）。",
                                 f"{where} must be {{\"type\": \"text\", ...}} or {{\"type\": \"image_url\", \"image_url\": "
                                 f"{{\"url\": ...}}}} (an https:// URL or data:image/...;base64,).", where)
        size = data_url_bytes(url) or 0
        if size > limits.max_image_bytes:
            raise InvalidRequest(f"{where} 的图片太大（最多 {limits.max_image_bytes // 1024} KB），请缩小后再发。",
                                 f"{where}: the picture is too large (at most {limits.max_image_bytes // 1024} KB); "
                                 f"shrink it and send again.", where)
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


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
