"""The server as a faithful OpenAI face, and the library behind it: OpenAI's options forwarded
where the teacher's provider carries them (refused by name where not), tool calls and JSON mode
both ways (stream and not), reasoning kept apart, access codes any client can send, and the
models routes behind the code. Our server runs for real on 127.0.0.1 in front of the fakes."""
from __future__ import annotations

import contextlib
import json
import re

import httpx
import openai
import pytest

import xedullm
from xedullm import Client, ConfigurationError
from xedullm.catalog import PROVIDERS
from xedullm.server.app import ServerSettings, create_app
from xedullm.server.settings import server_settings
from xedullm.testing import FakeDashScopeServer, FakeErnieServer, ServerThread

from conftest import TEACHER_KEY

CODE = "math42"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "今天的天气",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city", "days"]}}}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
OPTIONS = {"tool_choice": "auto", "parallel_tool_calls": True, "seed": 7, "logprobs": True, "top_logprobs": 2,
           "frequency_penalty": 0.5, "presence_penalty": -0.5, "user": "student-7"}
HISTORY = [
    {"role": "user", "content": "北京天气怎么样？"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"北京","days":1}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "晴，25 度"},
]


def bilingual(text):
    return bool(re.search(r"[\u4e00-\u9fff]", text)) and "/ " in text


def post(room, body, key=None, path="/v1/chat/completions"):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(room.url + path, json=body, headers=headers, timeout=10)


def sse_payloads(text):
    return [json.loads(line[6:]) for line in text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


def sdk(room, key="anything"):
    return openai.OpenAI(base_url=f"{room.url}/v1", api_key=key, max_retries=0)


@contextlib.contextmanager
def server_for(client, **settings):
    app = create_app(client, settings=ServerSettings(**settings))
    with ServerThread(app) as server:
        yield server.url


# -- OpenAI's options go upstream ----------------------------------------------------------
def test_every_option_reaches_an_openai_compatible_provider_as_sent(classroom_server):
    room = classroom_server()
    body = {"messages": [{"role": "user", "content": "天气？"}], "tools": [WEATHER], **OPTIONS,
            "response_format": {"type": "json_object"}, "stop": ["。"]}
    assert post(room, body).status_code == 200
    upstream = room.upstream_bodies()[-1]
    for name, value in {**OPTIONS, "tools": [WEATHER], "response_format": {"type": "json_object"},
                        "stop": ["。"]}.items():
        assert upstream[name] == value, name


def test_a_tool_call_comes_back_whole_and_its_history_goes_up(classroom_server):
    room = classroom_server()
    reply = post(room, {"messages": [{"role": "user", "content": "北京天气？"}], "tools": [WEATHER]}).json()
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "示例", "days": 1}'}
    # The next turn: the assistant's call (content null) and the tool's result, forwarded as they are.
    answer = post(room, {"messages": HISTORY, "tools": [WEATHER]}).json()["choices"][0]
    assert answer["message"]["content"] == "工具结果是：晴，25 度" and answer["finish_reason"] == "stop"
    assert room.upstream_bodies()[-1]["messages"] == HISTORY


def test_streamed_tool_call_pieces_pass_through_unchanged(classroom_server):
    room = classroom_server()
    body = {"messages": [{"role": "user", "content": "天气和时间？"}], "tools": [WEATHER, CLOCK], "stream": True}
    ours = post(room, body)
    assert ours.status_code == 200
    # What the provider itself streams for the same request, straight from the fake.
    theirs = httpx.post(f"{room.fake.base_url}/chat/completions", json={**body, "model": "deepseek-chat"},
                        headers={"Authorization": f"Bearer {TEACHER_KEY}"})

    def calls(text):
        return [c["choices"][0]["delta"]["tool_calls"] for c in sse_payloads(text)
                if c["choices"] and c["choices"][0]["delta"].get("tool_calls")]

    def without_ids(pieces):
        return [[{k: v for k, v in p.items() if k != "id"} for p in piece] for piece in pieces]

    assert without_ids(calls(ours.text)) == without_ids(calls(theirs.text))
    # The ids are the provider's own (the fake numbers them by request: ours was its first).
    assert [p[0]["id"] for p in calls(ours.text) if "id" in p[0]] == ["call_000001_0", "call_000001_1"]
    assert len(calls(ours.text)) > 4   # heads and argument fragments of two calls, not one lump
    assert {p[0]["index"] for p in calls(ours.text)} == {0, 1}
    finishes = [c["choices"][0]["finish_reason"] for c in sse_payloads(ours.text) if c["choices"]]
    assert finishes[-1] == "tool_calls"


def test_our_client_gets_tool_calls_direct_and_through_the_server(classroom_server, teacher_fake):
    room = classroom_server()
    direct = Client(provider="deepseek", base_url=teacher_fake.base_url, api_key=TEACHER_KEY, verbose=False)
    pupil = Client(xedu_url=room.url, verbose=False, max_retries=0)
    expected = [{"id": "", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "示例", "days": 1}'}}]
    for bot in (direct, pupil):
        result = bot.chat("北京天气？", tools=[WEATHER])
        assert result.finish_reason == "tool_calls" and result.text == ""
        assert [dict(c, id="") for c in result.tool_calls] == expected
        assert bot.inference("北京天气？", tools=[WEATHER]) == ""
        assert [dict(c, id="") for c in bot.last_tool_calls] == expected
        # Streamed: the pieces joined by index give the same calls.
        assert list(bot.inference("北京天气？", tools=[WEATHER], stream=True)) == []
        assert [dict(c, id="") for c in bot.last_tool_calls] == expected
        assert bot.last_tool_calls[0]["id"].startswith("call_")
        assert bot.inference(HISTORY, tools=[WEATHER]) == "工具结果是：晴，25 度"
        assert bot.last_tool_calls == []


def test_json_mode_and_json_schema_answers(classroom_server):
    room = classroom_server()
    student = sdk(room)
    plain = student.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "hi"}],
                                            response_format={"type": "json_object"})
    assert json.loads(plain.choices[0].message.content) == {"answer": "你好！你刚才说：hi"}
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "grade": {"enum": [3, 4]},
                                               "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}}},
              "$defs": {"Tag": {"type": "object", "properties": {"ok": {"type": "boolean"}}}}}
    stream = student.chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "hi"}], stream=True,
        response_format={"type": "json_schema", "json_schema": {"name": "pupil", "schema": schema}})
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert json.loads(text) == {"name": "示例", "grade": 3, "tags": [{"ok": True}]}


def test_logprobs_come_back_as_the_provider_sent_them(classroom_server):
    room = classroom_server()
    body = {"messages": [{"role": "user", "content": "x"}], "logprobs": True, "top_logprobs": 1}
    whole = post(room, body).json()["choices"][0]["logprobs"]["content"]
    assert [t["token"] for t in whole] == ["你好！你", "刚才说：", "x"]
    assert whole[0] == {"token": "你好！你", "logprob": -0.5, "bytes": list("你好！你".encode()),
                        "top_logprobs": [{"token": "你好！你", "logprob": -0.5, "bytes": list("你好！你".encode())}]}
    streamed = sse_payloads(post(room, dict(body, stream=True)).text)
    pieces = [c["choices"][0]["logprobs"]["content"][0]["token"] for c in streamed
              if c["choices"] and c["choices"][0].get("logprobs")]
    assert pieces == ["你好！你", "刚才说：", "x"]
    assert room.upstream_bodies()[-1]["top_logprobs"] == 1
    assert "logprobs" not in post(room, {"messages": [{"role": "user", "content": "x"}]}).json()["choices"][0]


# -- where a protocol has no such option --------------------------------------------------------
def test_ernie_refuses_tools_and_seed_by_name_before_calling_baidu():
    with FakeErnieServer(api_key="ak", secret_key="sk") as fake:
        teacher = Client(provider="ernie", base_url=fake.base_url, api_key="ak", secret_key="sk", verbose=False)
        with server_for(teacher) as url:
            room = type("Room", (), {"url": url})
            for field, value in (("tools", [WEATHER]), ("seed", 3), ("response_format", {"type": "json_object"})):
                reply = post(room, {"messages": [{"role": "user", "content": "x"}], field: value})
                assert reply.status_code == 400, field
                error = reply.json()["error"]
                assert error["param"] == field and field in error["message"] and bilingual(error["message"])
            history = post(room, {"messages": HISTORY})
            assert history.status_code == 400 and history.json()["error"]["param"] == "messages[1]"
            # Penalties and the end-user id have ERNIE names and go up under them.
            ok = post(room, {"messages": [{"role": "user", "content": "x"}], "presence_penalty": 1.0, "user": "s1"})
            assert ok.status_code == 200
            sent = fake.chat_requests[-1]["json"]
            assert sent["presence_penalty"] == 1.0 and sent["user_id"] == "s1" and "user" not in sent
            assert len(fake.chat_requests) == 1


def test_dashscope_gets_tools_in_parameters_and_refuses_frequency_penalty():
    with FakeDashScopeServer(api_key="sk-ds") as fake:
        teacher = Client(provider="qwen", base_url=fake.base_url, api_key="sk-ds", verbose=False)
        with pytest.raises(xedullm.BadRequestError, match="frequency_penalty") as caught:
            teacher.inference("x", frequency_penalty=1.0)
        assert bilingual(str(caught.value))
        teacher.inference("x", seed=5, tools=[WEATHER], user="s1")
        parameters = fake.chat_requests[-1]["json"]["parameters"]
        assert parameters["seed"] == 5 and parameters["tools"] == [WEATHER] and "user" not in parameters


def test_dashscope_tool_calls_reach_students_through_the_server():
    with FakeDashScopeServer(api_key="sk-ds") as fake:
        teacher = Client(provider="qwen", base_url=fake.base_url, api_key="sk-ds", verbose=False)
        with server_for(teacher) as url:
            pupil = Client(xedu_url=url, verbose=False)
            expected = [{"name": "get_weather", "arguments": '{"city": "示例", "days": 1}'}]
            for stream in (False, True):
                text = pupil.inference("北京天气？", tools=[WEATHER], stream=stream)
                assert (text if not stream else "".join(text)) == ""
                assert [c["function"] for c in pupil.last_tool_calls] == expected
                assert pupil.last_tool_calls[0]["id"].startswith("call_")
            assert pupil.inference(HISTORY, tools=[WEATHER]) == "工具结果是：晴，25 度"
            assert fake.chat_requests[-1]["json"]["input"]["messages"][1]["content"] == ""


def test_the_local_model_refuses_tools_without_loading_anything():
    local = Client(provider="local", verbose=False)
    with pytest.raises(xedullm.BadRequestError, match="tools") as caught:
        local.inference("x", tools=[WEATHER])
    assert bilingual(str(caught.value))
    with server_for(local) as url:
        reply = post(type("Room", (), {"url": url}), {"messages": HISTORY})
        assert reply.status_code == 400 and reply.json()["error"]["param"] == "messages[1]"


# -- reasoning stays apart ---------------------------------------------------------------------
def test_reasoning_is_forwarded_apart_and_never_in_inference(classroom_server):
    room = classroom_server(model="deepseek-reasoner")
    reply = post(room, {"messages": [{"role": "user", "content": "想一想"}]}).json()["choices"][0]["message"]
    assert reply["content"] == "你好！你刚才说：想一想"
    assert reply["reasoning_content"] == "（思考）用户说：想一想"
    streamed = sse_payloads(post(room, {"messages": [{"role": "user", "content": "想"}], "stream": True}).text)
    deltas = [c["choices"][0]["delta"] for c in streamed if c["choices"]]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == "（思考）用户说：想"
    assert "".join(d.get("content") or "" for d in deltas) == "你好！你刚才说：想"
    pupil = Client(xedu_url=room.url, verbose=False)
    assert pupil.inference("再想") == "你好！你刚才说：再想"
    assert pupil.last_reasoning == "（思考）用户说：再想"
    assert "".join(pupil.inference("流", stream=True)) == "你好！你刚才说：流"
    assert pupil.last_reasoning == "（思考）用户说：流"


# -- access codes any client can send ----------------------------------------------------------
def test_a_chinese_access_code_is_refused_when_the_server_starts(teacher_fake):
    for start in (lambda: server_settings(access_code="数学课42"),
                  lambda: create_app(Client(provider="deepseek", base_url=teacher_fake.base_url,
                                            api_key=TEACHER_KEY, verbose=False),
                                     settings=ServerSettings(access_code="数学课42"))):
        with pytest.raises(ConfigurationError) as caught:
            start()
        assert "math42" in str(caught.value) and bilingual(str(caught.value))
    assert server_settings(access_code=CODE).access_code == CODE


@pytest.mark.parametrize("provider", [p.id for p in PROVIDERS] + ["xedu_url", "base_url"])
def test_a_non_ascii_key_is_a_configuration_error_for_every_provider(provider):
    kwargs = {"xedu_url": {"xedu_url": "http://127.0.0.1:9"},
              "base_url": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}}.get(provider, {"provider": provider})
    with pytest.raises(ConfigurationError) as caught:
        Client(api_key="数学课42", secret_key="sk", verbose=False, **kwargs)
    assert bilingual(str(caught.value)) and "数学课42" not in str(caught.value)


def test_models_and_info_need_the_code_and_say_why(classroom_server, tmp_path):
    room = classroom_server(access_code=CODE, data_dir=str(tmp_path))
    for key in (None, "wrong"):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        listing = httpx.get(f"{room.url}/v1/models", headers=headers)
        assert listing.status_code == 401 and bilingual(listing.json()["error"]["message"])
        assert httpx.get(f"{room.url}/v1/models/deepseek-chat", headers=headers).status_code == 401
        # The page still loads: it learns that a code is needed, and the server's words why.
        info = httpx.get(f"{room.url}/api/info", headers=headers)
        assert info.status_code == 200
        assert info.json() == {"access_code_required": True, "access_code_accepted": False,
                               "message": listing.json()["error"]["message"]}
        assert "访问码" in info.json()["message"]
    student = sdk(room, key=CODE)
    assert [m.id for m in student.models.list()] == ["deepseek-chat"]
    assert httpx.get(f"{room.url}/v1/models/", headers={"Authorization": f"Bearer {CODE}"}).json()["data"][0][
        "id"] == "deepseek-chat"
    assert student.models.retrieve("deepseek-chat").id == "deepseek-chat"
    with pytest.raises(openai.NotFoundError):
        student.models.retrieve("gpt-5")
    info = httpx.get(f"{room.url}/api/info", headers={"Authorization": f"Bearer {CODE}"}).json()
    assert info["model"] == "deepseek-chat" and info["access_code_required"] is True


def test_a_wrong_or_missing_code_gets_a_bilingual_401_body(classroom_server, tmp_path):
    room = classroom_server(access_code=CODE, data_dir=str(tmp_path))
    for key in (None, "wrong", "xs-revoked-or-unknown"):
        reply = post(room, {"messages": [{"role": "user", "content": "x"}]}, key=key)
        assert reply.status_code == 401
        assert reply.json()["error"]["type"] == "authentication_error" and bilingual(reply.json()["error"]["message"])


def test_a_trailing_slash_still_reaches_the_chat(classroom_server):
    room = classroom_server()
    reply = post(room, {"messages": [{"role": "user", "content": "斜杠"}]}, path="/v1/chat/completions/")
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] == "你好！你刚才说：斜杠"


def test_deepseeks_unknown_model_body_is_model_not_found(classroom_server, teacher_fake):
    direct = Client(provider="deepseek", base_url=teacher_fake.base_url, api_key=TEACHER_KEY,
                    model="deepseek-v9", verbose=False)
    with pytest.raises(xedullm.ModelNotFoundError):
        direct.inference("x")
    assert teacher_fake.requests[-1]["path"].endswith("/chat/completions")
    room = classroom_server(model="deepseek-v9")
    reply = post(room, {"messages": [{"role": "user", "content": "x"}]})
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("answered_by", [None, {"provider": "moonshot", "provider_label": "月之暗面",
                                                 "provider_label_en": "Moonshot"}])
def test_a_text_frame_is_the_same_bytes_as_the_general_frame(include_usage, answered_by):
    # Text frames take a shortcut (ChunkWriter._text_frame); what a client parses must not change.
    from xedullm.server.api.openai_format import ChunkWriter
    from xedullm.types import ChatChunk

    writer = ChunkWriter(completion_id="chatcmpl-x", model="m", include_usage=include_usage)
    writer.answered_by = answered_by
    writer.chunk(ChatChunk(text="first"))   # the role goes with the first frame
    for text in ["hello", '中文"引号\\ \n\t\u2028 \x01 😀 </script>']:
        general = writer._frame([{"index": 0, "delta": {"content": text}, "finish_reason": None}])
        assert writer.chunk(ChatChunk(text=text)) == general
        assert json.loads(general[len(b"data: "):])["choices"][0]["delta"]["content"] == text
