"""How the OpenAI-compatible fakes answer a request that offers tools or asks for JSON.

Deterministic, so tests can check every byte:

- ``tools`` offered (and ``tool_choice`` not ``"none"``), last message not a tool result: the
  answer calls tools instead of writing text — the one ``tool_choice`` names, else the first
  tool when ``parallel_tool_calls`` is false, else every tool offered. Arguments are an example
  object built from each function's JSON-schema ``parameters``.
- last message a ``tool`` result: ``"工具结果是：" + its content``.
- ``response_format`` ``json_object``: ``{"answer": <the usual reply>}``; ``json_schema``: an
  example object of the schema (every property, first enum value, ``$ref`` followed).
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from .fake_server import Answer, content_text, split_pieces

_EXAMPLES = {"string": "示例", "integer": 1, "number": 1.5, "boolean": True, "null": None}


def schema_example(schema: Any, defs: Optional[Dict[str, Any]] = None, depth: int = 0) -> Any:
    """An instance of a JSON schema (the subset structured-output clients send)."""
    if not isinstance(schema, dict) or depth > 20:
        return "示例"
    defs = {**(defs or {}), **schema.get("$defs", {}), **schema.get("definitions", {})}
    if "$ref" in schema:
        return schema_example(defs.get(str(schema["$ref"]).rsplit("/", 1)[-1]), defs, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [s for s in schema.get(key) or [] if not (isinstance(s, dict) and s.get("type") == "null")]
        if options:
            return schema_example(options[0], defs, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        return {name: schema_example(sub, defs, depth + 1)
                for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [schema_example(schema.get("items"), defs, depth + 1)]
    return _EXAMPLES.get(kind, "示例")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _called(tools: List[Dict[str, Any]], choice: Any, parallel: Any) -> List[Dict[str, Any]]:
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return [t for t in tools if t["function"].get("name") == name][:1]
    return tools[:1] if parallel is False else tools


def shape_answer(data: Dict[str, Any], answer: Answer, call_prefix: str) -> Answer:
    """``answer`` reshaped for the request's tools / tool result / response_format."""
    messages = data.get("messages") or []
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    tools = [t for t in data.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    if tools and data.get("tool_choice") != "none" and last.get("role") != "tool":
        calls = [{"id": f"{call_prefix}{i}", "type": "function",
                  "function": {"name": t["function"].get("name", ""),
                               "arguments": _dumps(schema_example(t["function"].get("parameters")))}}
                 for i, t in enumerate(_called(tools, data.get("tool_choice"), data.get("parallel_tool_calls")))]
        return Answer(pieces=[], reasoning=answer.reasoning, prompt_tokens=answer.prompt_tokens, tool_calls=calls)
    text = answer.text
    if last.get("role") == "tool":
        text = "工具结果是：" + content_text(last.get("content"))
    fmt = data.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        text = _dumps({"answer": text})
    elif isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        text = _dumps(schema_example((fmt.get("json_schema") or {}).get("schema")))
    if text == answer.text:
        return answer
    return Answer(pieces=split_pieces(text), reasoning=answer.reasoning, prompt_tokens=answer.prompt_tokens)
