"""OpenAI's request options beyond the messages and sampling, and how a protocol carries them.

Each protocol declares, as data, the options it takes: ``OPTIONS = {openai_name: wire_name}``
in its adapter module (the local model's in ``engines/local.py``). A wire name of ``None``
means "understood, nothing to send" (``user`` where a provider has no such field,
``stream_options`` where usage always comes). An option a protocol does not list is refused
before anything is sent, with a bilingual error naming it.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

#: the options the classroom server accepts from students and forwards where they are carried
OPENAI_OPTIONS = ("tools", "tool_choice", "parallel_tool_calls", "response_format", "seed",
                  "logprobs", "top_logprobs", "frequency_penalty", "presence_penalty", "user",
                  "stream_options")

#: which options make tool-call histories (assistant ``tool_calls``, ``role: tool``) meaningful
TOOLS = "tools"

Table = Mapping[str, Optional[str]]


def unsupported(extra: Mapping[str, Any], table: Table) -> List[str]:
    """The OpenAI options in ``extra`` that ``table`` does not carry, in OPENAI_OPTIONS order."""
    return [name for name in OPENAI_OPTIONS if name in extra and name not in table]


def wire_options(extra: Mapping[str, Any], table: Table) -> Dict[str, Any]:
    """``extra`` renamed for the wire: OpenAI options by ``table`` (dropped when it maps to
    None), anything else (a provider's own parameter such as ``enable_search``) untouched."""
    out: Dict[str, Any] = {}
    for name, value in extra.items():
        if name not in OPENAI_OPTIONS:
            out[name] = value
        elif table.get(name):
            out[table[name]] = value
    return out


def has_tool_turns(messages: List[Mapping[str, Any]]) -> Optional[int]:
    """Index of the first message that belongs to a tool-call exchange, else None."""
    for i, message in enumerate(messages):
        if message.get("role") == "tool" or message.get("tool_calls"):
            return i
    return None
