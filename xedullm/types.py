"""Normalized request/response types shared by every layer.

Adapters translate between these and a provider's wire format; the transport, client and
server only ever see these.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def as_dict(self) -> Dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class ChatRequest:
    """What the caller wants, independent of any provider. Immutable: a layer that needs
    another model or another stream flag makes a copy (``dataclasses.replace``).

    ``messages`` is already validated: a list of ``{'role', 'content'}`` dicts whose roles are
    system/user/assistant/tool (the system prompt, if any, first); an assistant turn that
    called tools has ``tool_calls`` (and may have ``content: None``), a tool turn has
    ``tool_call_id``.
    """

    model: str
    messages: List[Dict[str, Any]]
    stream: bool = False
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    max_tokens: Optional[int] = None
    stop: Optional[List[str]] = None
    # OpenAI options (``tools``, ``response_format``, ``seed``…, see protocols/options.py)
    # and provider-specific extras (``enable_search``), passed on as the protocol declares.
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ChatChunk:
    """One piece of a streamed answer. Any field may be empty.

    ``tool_calls`` are the provider's delta pieces as they came (``index``, and ``id``,
    ``type``, ``function.name`` / ``function.arguments`` fragments): join them by ``index``.
    """

    text: str = ""
    reasoning: str = ""
    finish_reason: Optional[str] = None
    usage: Optional[Usage] = None
    provider: Optional[str] = None    # who answered (set by the Client; a fallback's id if one did)
    tool_calls: List[Dict[str, Any]] = field(default_factory=list)
    logprobs: Optional[Dict[str, Any]] = None
    # When a fallback answered: why the primary did not, as the classroom's error code
    # ('insufficient_quota', 'upstream_unreachable', 'rate_limit_exceeded', … see fallback.py).
    fallback_reason: Optional[str] = None


@dataclass
class ChatResult:
    """A whole answer: ``text`` is the answer only; a reasoning model's thinking is apart.

    ``tool_calls``: the tools the model asks to call, in OpenAI's shape
    ``{"id", "type": "function", "function": {"name", "arguments": "<JSON text>"}}``
    (``finish_reason`` is then ``"tool_calls"`` and ``text`` often empty).
    """

    text: str
    finish_reason: Optional[str] = None
    usage: Optional[Usage] = None
    model: Optional[str] = None
    reasoning: str = ""
    provider: Optional[str] = None    # who answered (set by the Client; a fallback's id if one did)
    tool_calls: List[Dict[str, Any]] = field(default_factory=list)
    logprobs: Optional[Dict[str, Any]] = None
    # When a fallback answered: why the primary did not, as the classroom's error code
    # ('insufficient_quota', 'upstream_unreachable', 'rate_limit_exceeded', … see fallback.py).
    fallback_reason: Optional[str] = None


@dataclass
class HTTPRequest:
    """An HTTP request an adapter wants sent. The transport does the sending."""

    method: str
    url: str
    headers: Dict[str, str] = field(default_factory=dict)
    json: Optional[Any] = None
    params: Optional[Dict[str, str]] = None


@dataclass(frozen=True)
class Connection:
    """Where and as whom to talk to a provider. Secrets live here and nowhere else."""

    base_url: str
    api_key: Optional[str] = field(default=None, repr=False)
    secret_key: Optional[str] = field(default=None, repr=False)

    def secrets(self) -> List[str]:
        return [s for s in (self.api_key, self.secret_key) if s]


def join_tool_calls(calls: List[Dict[str, Any]], pieces: List[Dict[str, Any]]) -> None:
    """Add streamed tool-call pieces to ``calls`` (joined by ``index``, OpenAI's rule)."""
    for piece in pieces:
        index = piece.get("index", len(calls))
        while len(calls) <= index:
            calls.append({"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
        call = calls[index]
        for name in ("id", "type"):
            if piece.get(name):
                call[name] = piece[name]
        function = piece.get("function") or {}
        for name in ("name", "arguments"):
            if isinstance(function.get(name), str):
                call["function"][name] += function[name]


@dataclass
class EmbeddingResult:
    """Vectors for some texts, in their order (``Client.embed``; every engine's ``embed``).

    ``usage`` counts the input tokens (``completion_tokens`` is 0); ``model`` is the model that
    made them, as the provider named it.
    """

    vectors: List[List[float]]
    usage: Optional[Usage] = None
    model: Optional[str] = None
