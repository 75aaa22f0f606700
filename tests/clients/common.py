"""What the three client scripts share: the server address, the tools, printing the report.

These scripts run inside a third-party client's own venv (scripts/client-venvs.sh), never
with xedullm importable: they are students' programs, talking to our server over HTTP.
"""
import json
import sys

BASE_URL, ACCESS_CODE = sys.argv[1], sys.argv[2]
MODEL = "deepseek-chat"
QUESTION = "北京天气怎么样？"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "今天的天气",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city", "days"]}}}


def join_stream_calls(deltas):
    """Tool calls from streamed ``delta.tool_calls`` pieces (objects with index/id/function)."""
    calls = {}
    for piece in deltas:
        call = calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
        call["id"] = piece.id or call["id"]
        if piece.function is not None:
            call["name"] += piece.function.name or ""
            call["arguments"] += piece.function.arguments or ""
    return [calls[i] for i in sorted(calls)]


def report(results):
    print(json.dumps(results, ensure_ascii=False))
