"""Adapters are sans-I/O: bytes in, normalized results and error classes out.

Samples follow protocols.md; the same adapters are exercised over sockets in test_client_*.
"""
import json

import pytest

from xedullm import errors as E
from xedullm.catalog import find_provider
from xedullm.protocols import adapter_for
from xedullm.protocols.adapter import STREAM_END
from xedullm.protocols.ernie import valid_history
from xedullm.sse import SSEEvent
from xedullm.types import ChatRequest, Connection, Usage


def openai(provider="deepseek"):
    return adapter_for("openai", find_provider(provider))


def ev(data, event=None, comments=()):
    return SSEEvent(data=data if isinstance(data, str) else json.dumps(data), event=event,
                    comments=list(comments))


# -- OpenAI-compatible ------------------------------------------------------------------
def test_usage_only_chunk_with_empty_choices_does_not_crash():
    chunk = openai().parse_event(ev({"id": "c1", "choices": [], "usage": {
        "prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}))
    assert chunk.text == "" and chunk.usage == Usage(5, 1, 6)


def test_moonshot_usage_inside_final_choice():
    chunk = openai("moonshot").parse_event(ev({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop",
                                                 "usage": {"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10}}]}))
    assert chunk.usage == Usage(8, 2, 10) and chunk.finish_reason == "stop"


def test_text_in_the_finishing_chunk_is_kept():
    chunk = openai().parse_event(ev({"choices": [{"index": 0, "delta": {"content": "end."}, "finish_reason": "stop"}]}))
    assert chunk.text == "end."


def test_done_and_reasoning():
    assert openai().parse_event(ev("[DONE]")) is STREAM_END
    chunk = openai().parse_event(ev({"choices": [{"index": 0, "delta": {"reasoning_content": "think"}}]}))
    assert chunk.reasoning == "think" and chunk.text == ""


@pytest.mark.parametrize("provider,status,body,cls", [
    ("deepseek", 402, {"error": {"message": "Insufficient Balance", "type": "unknown_error", "param": None,
                                 "code": "invalid_request_error"}}, E.QuotaExceededError),
    # DeepSeek's unknown model: a 400 whose only clue is the message (protocols.md 1.6)
    ("deepseek", 400, {"error": {"message": "Model Not Exist", "type": "invalid_request_error", "param": None,
                                 "code": "invalid_request_error"}}, E.ModelNotFoundError),
    ("deepseek", 400, {"error": {"message": "Invalid request body.", "type": "invalid_request_error", "param": None,
                                 "code": "invalid_request_error"}}, E.BadRequestError),
    ("deepseek", 401, {"error": {"message": "bad key", "type": "authentication_error"}}, E.AuthenticationError),
    ("deepseek", 422, {"error": {"message": "bad param", "type": "invalid_request_error"}}, E.BadRequestError),
    ("deepseek", 503, {"error": {"message": "busy"}}, E.ServerError),
    ("moonshot", 429, {"error": {"type": "exceeded_current_quota_error", "message": "quota"}}, E.QuotaExceededError),
    ("moonshot", 403, {"error": {"type": "exceeded_current_quota_error", "message": "quota"}}, E.QuotaExceededError),
    ("moonshot", 429, {"error": {"type": "rate_limit_reached_error", "message": "slow down"}}, E.RateLimitError),
    ("moonshot", 404, {"error": {"type": "resource_not_found_error", "message": "no model"}}, E.ModelNotFoundError),
    ("moonshot", 400, {"error": {"type": "content_filter", "message": "blocked"}}, E.ContentFilterError),
    ("glm", 429, {"error": {"code": "1113", "message": "arrears"}}, E.QuotaExceededError),
    ("glm", 429, {"error": {"code": "1302", "message": "concurrency"}}, E.RateLimitError),
    ("glm", 401, {"error": {"code": "1002", "message": "bad token"}}, E.AuthenticationError),
    ("glm", 400, {"error": {"code": "1211", "message": "unknown model"}}, E.ModelNotFoundError),
    ("glm", 400, {"error": {"code": "1301", "message": "unsafe"}}, E.ContentFilterError),
    ("openrouter", 402, {"error": {"code": 402, "message": "credits"}}, E.QuotaExceededError),
    ("openrouter", 403, {"error": {"code": 403, "message": "moderation"}}, E.ContentFilterError),
    ("openrouter", 502, {"error": {"code": 502, "message": "model down"}}, E.ServerError),
    ("openai", 429, {"error": {"message": "quota", "type": "insufficient_quota", "code": "insufficient_quota"}}, E.QuotaExceededError),
    ("openai", 429, {"error": {"message": "rate", "type": "requests", "code": "rate_limit_exceeded"}}, E.RateLimitError),
    ("openai", 404, {"error": {"message": "The model does not exist", "type": "invalid_request_error", "code": "model_not_found"}}, E.ModelNotFoundError),
])
def test_openai_compatible_error_classes(provider, status, body, cls):
    adapter = adapter_for("openai", None if provider == "openai" else find_provider(provider))
    err = adapter.parse_error(status, {}, json.dumps(body).encode())
    assert type(err) is cls
    assert err.status_code == status


def test_non_json_error_body_still_classified_by_status():
    err = openai().parse_error(502, {}, b"<html>Bad Gateway</html>")
    assert isinstance(err, E.ServerError) and "Bad Gateway" in err.message


def test_retry_after_header_is_read():
    err = openai().parse_error(429, {"retry-after": "3"}, b'{"error":{"message":"slow"}}')
    assert isinstance(err, E.RateLimitError) and err.retry_after == 3.0


@pytest.mark.parametrize("payload,event,cls", [
    ({"error": {"message": "boom", "type": "server_error"}}, None, E.ServerError),
    ({"error": {"code": "1301", "message": "unsafe"}}, "error", E.ContentFilterError),
    ({"id": "gen-2", "error": {"code": 502, "message": "upstream provider disconnected"},
      "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]}, None, E.ServerError),
])
def test_in_stream_error_frames_raise(payload, event, cls):
    with pytest.raises(cls):
        openai().parse_event(ev(payload, event=event))


def test_glm_sampling_is_clamped_into_open_interval():
    req = ChatRequest(model="glm-4", messages=[{"role": "user", "content": "hi"}], temperature=0.0, top_p=1.0)
    body = openai("glm").chat_request(req, Connection("http://x/v4", "k")).json
    assert body["temperature"] == 0.01 and body["top_p"] == 0.99 and body["do_sample"] is False


def test_stream_request_asks_for_usage_and_strips_reasoning_from_history():
    req = ChatRequest(model="deepseek-reasoner", stream=True, messages=[
        {"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "reasoning_content": "r"},
        {"role": "user", "content": "q2"}])
    http = openai().chat_request(req, Connection("https://api.deepseek.com", "sk-x"))
    assert http.url == "https://api.deepseek.com/chat/completions"
    assert http.json["stream"] is True and http.json["stream_options"] == {"include_usage": True}
    assert all("reasoning_content" not in m for m in http.json["messages"])
    assert http.headers["Authorization"] == "Bearer sk-x"


# -- DashScope native --------------------------------------------------------------------
def qwen():
    return adapter_for("dashscope", find_provider("qwen"))


def test_dashscope_request_shape():
    req = ChatRequest(model="qwen-turbo", stream=True, temperature=0.5,
                      messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}])
    http = qwen().chat_request(req, Connection("http://h/api/v1", "sk-q"))
    assert http.url == "http://h/api/v1/services/aigc/text-generation/generation"
    assert http.headers["X-DashScope-SSE"] == "enable"
    assert "stream" not in http.json
    assert http.json["input"]["messages"][0] == {"role": "system", "content": "s"}
    assert http.json["parameters"] == {"result_format": "message", "temperature": 0.5, "incremental_output": True}


def test_dashscope_null_finish_reason_and_usage():
    chunk = qwen().parse_event(ev({"output": {"choices": [{"message": {"role": "assistant", "content": "Hel"},
                                                            "finish_reason": "null"}]},
                                   "usage": {"input_tokens": 9, "output_tokens": 1, "total_tokens": 10}}, "result"))
    assert chunk.text == "Hel" and chunk.finish_reason is None and chunk.usage == Usage(9, 1, 10)


def test_dashscope_error_frame_uses_status_comment():
    with pytest.raises(E.BadRequestError) as info:
        qwen().parse_event(ev({"code": "InvalidParameter", "message": "Range of max_tokens"}, "error",
                              ["HTTP_STATUS/400"]))
    assert info.value.status_code == 400


@pytest.mark.parametrize("status,code,cls", [
    (400, "Arrearage", E.QuotaExceededError), (401, "InvalidApiKey", E.AuthenticationError),
    (429, "Throttling.RateQuota", E.RateLimitError), (500, "InternalError", E.ServerError),
    (400, "DataInspectionFailed", E.ContentFilterError), (400, "InvalidParameter", E.BadRequestError),
])
def test_dashscope_error_classes(status, code, cls):
    err = qwen().parse_error(status, {}, json.dumps({"code": code, "message": "m", "request_id": "r"}).encode())
    assert type(err) is cls


def test_dashscope_legacy_text_form():
    result = qwen().parse_chat(b'{"output":{"text":"Hello!","finish_reason":"stop"},"usage":{"input_tokens":1,"output_tokens":2,"total_tokens":3}}')
    assert result.text == "Hello!" and result.usage == Usage(1, 2, 3)


def test_dashscope_tool_calls_whole_and_in_a_stream():
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"北京"}'}}
    result = qwen().parse_chat(json.dumps({"output": {"choices": [{"finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "", "tool_calls": [call]}}]},
        "usage": {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}}).encode())
    assert result.tool_calls == [call] and result.finish_reason == "tool_calls" and result.text == ""
    piece = {"index": 0, "function": {"arguments": '{"ci'}}
    chunk = qwen().parse_event(ev({"output": {"choices": [{"message": {"role": "assistant", "content": "",
                                                                        "tool_calls": [piece]},
                                                            "finish_reason": "null"}]}}, "result"))
    assert chunk.tool_calls == [piece]


def test_dashscope_sends_tool_turns_with_text_content():
    history = [{"role": "user", "content": "天气？"},
               {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function",
                                                                      "function": {"name": "f", "arguments": "{}"}}]},
               {"role": "tool", "tool_call_id": "c", "content": "晴"}]
    http = qwen().chat_request(ChatRequest(model="qwen-turbo", messages=history, extra={"tools": [], "user": "u"}),
                               Connection("http://h/api/v1", "sk-q"))
    assert http.json["input"]["messages"][1]["content"] == ""
    assert http.json["input"]["messages"][2] == history[2]
    assert http.json["parameters"]["tools"] == [] and "user" not in http.json["parameters"]


# -- ERNIE v1 ------------------------------------------------------------------------------
def ernie():
    return adapter_for("ernie", find_provider("ernie"))


def test_ernie_history_made_valid():
    system, turns = valid_history([
        {"role": "system", "content": "brief"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "a"}, {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c"}, {"role": "user", "content": "d"},
        {"role": "assistant", "content": "dangling"}])
    assert system == "brief"
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[0]["content"] == "a\nb"


def test_ernie_request_uses_endpoint_system_field_and_token():
    req = ChatRequest(model="ERNIE_speed_8k", messages=[{"role": "system", "content": "s"},
                                                         {"role": "user", "content": "hi"}], max_tokens=50)
    http = ernie().chat_request(req, Connection("http://h", "ak", "sk"), token="24.t")
    assert http.url == "http://h/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/ernie_speed"
    assert http.params == {"access_token": "24.t"}
    assert http.json == {"messages": [{"role": "user", "content": "hi"}], "system": "s", "max_output_tokens": 50}


@pytest.mark.parametrize("code,cls", [
    (17, E.QuotaExceededError), (19, E.QuotaExceededError), (18, E.RateLimitError),
    (336501, E.RateLimitError), (336100, E.ServerError), (336006, E.BadRequestError),
    (13, E.AuthenticationError), (110, E.AuthenticationError), (336005, E.ModelNotFoundError),
])
def test_ernie_error_codes_on_http_200(code, cls):
    with pytest.raises(cls):
        ernie().parse_chat(json.dumps({"error_code": code, "error_msg": "m"}).encode())


def test_ernie_token_expiry_detected_and_stream_chunk():
    err = ernie()._error({"error_code": 111, "error_msg": "expired"}, None)
    assert ernie().is_token_expired(err)
    chunk = ernie().parse_event(ev({"sentence_id": 1, "is_end": True, "result": "。", "finish_reason": "normal",
                                    "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}}))
    assert chunk.text == "。" and chunk.finish_reason == "normal" and chunk.usage.total_tokens == 21


def test_ernie_token_failure_is_authentication_error():
    with pytest.raises(E.AuthenticationError):
        ernie().parse_token(401, b'{"error":"invalid_client","error_description":"unknown client id"}')
