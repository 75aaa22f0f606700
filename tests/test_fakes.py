"""The fake provider servers speak the wire formats of protocols.md.

Driven with plain httpx over real sockets (never through our Client), asserting on bytes.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading

import httpx
import pytest

from xedullm.testing import (FakeDashScopeServer, FakeErnieServer, FakeOpenAIServer, Fault,
                             ServerThread)

KEY = "sk-test-fake-0123456789"
FLAVORS = ("openai", "deepseek", "moonshot", "openrouter", "glm", "qwen")
MODEL = {"openai": "gpt-4o-mini", "deepseek": "deepseek-chat", "moonshot": "moonshot-v1-8k",
         "openrouter": "mistralai/mistral-7b-instruct:free", "glm": "glm-4",
         "qwen": "qwen2-1.5b-instruct"}
AUTH = {"Authorization": f"Bearer {KEY}"}
HELLO = [{"role": "user", "content": "hi there"}]
EXPECTED = "你好！你刚才说：hi there"


def sse_events(raw: bytes):
    """Events of an LF-framed SSE body as lists of lines."""
    assert b"\r" not in raw
    return [block.split(b"\n") for block in raw.split(b"\n\n") if block.strip(b"\n")]


def data_of(event):
    lines = [line for line in event if line.startswith(b"data:")]
    assert len(lines) == 1, event
    return lines[0][len(b"data:"):].lstrip(b" ")


def json_events(raw: bytes):
    out = []
    for event in sse_events(raw):
        if all(line.startswith(b":") for line in event):
            continue
        payload = data_of(event)
        if payload != b"[DONE]":
            out.append(json.loads(payload))
    return out


@pytest.fixture(scope="module")
def fakes():
    servers = {f: FakeOpenAIServer(flavor=f, api_key=KEY).start() for f in FLAVORS}
    yield servers
    stoppers = [threading.Thread(target=server.stop) for server in servers.values()]
    for thread in stoppers:
        thread.start()
    for thread in stoppers:
        thread.join()


@pytest.fixture(scope="module")
def http():
    # One client for the module: building an SSL context per test costs more than the tests.
    with httpx.Client(timeout=10) as client:
        yield client


def chat(http, fake, body=None, stream=False, headers=AUTH, **extra):
    payload = {"model": MODEL[fake.flavor], "messages": HELLO, **extra}
    if body is not None:
        payload = body
    if stream:
        payload["stream"] = True
    return http.post(fake.base_url + "/chat/completions", json=payload, headers=headers)


@pytest.fixture(params=FLAVORS)
def fake(request, fakes):
    server = fakes[request.param]
    server.reset()
    return server


# -- runner -----------------------------------------------------------------------------------
def test_server_thread_serves_and_stops():
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request):
        return PlainTextResponse("ok")

    server = ServerThread(Starlette(routes=[Route("/", hello)])).start()
    url = server.url
    assert url.startswith("http://127.0.0.1:") and server.port > 0
    assert httpx.get(url).text == "ok"
    server.stop()
    assert not server.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)


def test_fake_as_context_manager_and_base_url():
    with FakeOpenAIServer(flavor="openai", api_key=KEY) as fake:
        assert fake.base_url == f"http://127.0.0.1:{fake.port}/v1"
        assert httpx.get(fake.base_url + "/models", headers=AUTH).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(fake.base_url + "/models", headers=AUTH)


# -- OpenAI-compatible: shapes --------------------------------------------------------------
def test_non_stream_body(http, fake):
    r = chat(http, fake)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["choices"][0]["message"] == {"role": "assistant", "content": EXPECTED}
    assert body["choices"][0]["finish_reason"] == "stop"
    pieces = -(-len(EXPECTED) // 4)
    assert body["usage"] == {"prompt_tokens": len("hi there"), "completion_tokens": pieces,
                             "total_tokens": len("hi there") + pieces}
    assert fake.usage_log == [body["usage"]]
    if fake.flavor == "glm":
        assert "object" not in body and "request_id" in body
    else:
        assert body["object"] == "chat.completion"


@pytest.mark.parametrize("include_usage", [False, True])
def test_stream_framing_and_usage_placement(http, fake, include_usage):
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    r = chat(http, fake, stream=True, **extra)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    raw = r.content
    assert raw.endswith(b"data: [DONE]\n\n")
    events = sse_events(raw)
    comments = [e for e in events if all(line.startswith(b":") for line in e)]
    if fake.flavor == "deepseek":
        assert [b": keep-alive"] in comments
    elif fake.flavor == "openrouter":
        assert [b": OPENROUTER PROCESSING"] in comments
    else:
        assert comments == []
    for event in events:
        assert all(line.startswith((b"data: ", b":")) for line in event)
    chunks = json_events(raw)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == EXPECTED
    finish = [c for c in chunks if c["choices"] and c["choices"][0].get("finish_reason")]
    assert [c["choices"][0]["finish_reason"] for c in finish] == ["stop"]
    usage_chunks = [c for c in chunks if c.get("usage")]
    flavor = fake.flavor
    if flavor == "moonshot":
        assert usage_chunks == [] and "usage" in finish[0]["choices"][0]
        assert finish[0] is chunks[-1]
        reported = finish[0]["choices"][0]["usage"]
    elif flavor == "glm":
        assert all("object" not in c for c in chunks)
        assert usage_chunks == [chunks[-1]] and chunks[-1] is finish[0]
        reported = chunks[-1]["usage"]
    elif flavor == "openrouter" or include_usage:
        assert usage_chunks == [chunks[-1]] and chunks[-1]["choices"] == []
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        reported = chunks[-1]["usage"]
    else:
        assert usage_chunks == [] and all(c["choices"] for c in chunks)
        assert fake.wait_for(lambda: fake.streams_completed == 1)
        assert fake.usage_log == []
        return
    assert reported["completion_tokens"] == -(-len(EXPECTED) // 4)
    assert fake.wait_for(lambda: len(fake.usage_log) == 1)
    assert fake.usage_log == [reported]


def test_reasoner_streams_reasoning_first(http, fakes):
    fake = fakes["deepseek"]
    r = chat(http, fake, stream=True, model="deepseek-reasoner")
    deltas = [c["choices"][0]["delta"] for c in json_events(r.content) if c["choices"]]
    kinds = ["r" if d.get("reasoning_content") else "c" if d.get("content") else "-"
             for d in deltas]
    assert "".join(kinds).rstrip("-").startswith("r") and "rc" in "".join(kinds)
    assert "cr" not in "".join(kinds)
    body = chat(http, fake, model="deepseek-reasoner").json()
    assert body["choices"][0]["message"]["reasoning_content"]
    assert body["choices"][0]["message"]["content"] == EXPECTED
    history = [*HELLO, {"role": "assistant", "content": "x", "reasoning_content": "y"},
               {"role": "user", "content": "again"}]
    assert chat(http, fake, model="deepseek-reasoner", messages=history).status_code == 400


# -- OpenAI-compatible: errors ----------------------------------------------------------------
def test_wrong_key_gets_flavor_401(http, fake):
    r = chat(http, fake, headers={"Authorization": "Bearer sk-wrong"})
    assert r.status_code == 401
    error = r.json()["error"]
    flavor = fake.flavor
    if flavor in ("openai", "qwen"):
        assert error["code"] == "invalid_api_key" and "type" in error and "param" in error
    elif flavor == "deepseek":
        assert error["type"] == "authentication_error"
    elif flavor == "moonshot":
        assert error["type"] == "invalid_authentication_error" and "code" not in error
    elif flavor == "openrouter":
        assert error["code"] == 401
    else:
        assert error["code"] == "1000"
    assert chat(http, fake, headers={}).status_code == 401
    assert fake.chat_requests and fake.usage_log == []


def test_glm_missing_header_and_jwt(http, fakes):
    import base64
    import hashlib
    import hmac
    import time

    glm = FakeOpenAIServer(flavor="glm", api_key="keyid.secret")
    with glm:
        r = chat(http, glm, headers={})
        assert r.status_code == 401 and r.json()["error"]["code"] == "1001"

        def jwt(exp_ms, secret="secret"):
            enc = lambda obj: base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()  # noqa: E731
            head = enc({"alg": "HS256", "sign_type": "SIGN"})
            payload = enc({"api_key": "keyid", "exp": exp_ms, "timestamp": exp_ms - 210000})
            sig = hmac.new(secret.encode(), f"{head}.{payload}".encode(), hashlib.sha256).digest()
            return f"{head}.{payload}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"

        now = int(time.time() * 1000)
        good = chat(http, glm, headers={"Authorization": f"Bearer {jwt(now + 60000)}"})
        assert good.status_code == 200
        expired = chat(http, glm, headers={"Authorization": f"Bearer {jwt(now - 1)}"})
        assert expired.status_code == 401 and expired.json()["error"]["code"] == "1003"
        forged = chat(http, glm, headers={"Authorization": f"Bearer {jwt(now + 60000, 'x')}"})
        assert forged.status_code == 401 and forged.json()["error"]["code"] == "1000"


def test_validation_errors(http, fake):
    assert chat(http, fake, body={"messages": HELLO}).status_code == 400
    assert chat(http, fake, body={"model": MODEL[fake.flavor]}).status_code == 400
    r = chat(http, fake, model="no-such-model")
    error = r.json()["error"]
    if fake.flavor == "moonshot":
        assert (r.status_code, error["type"]) == (404, "resource_not_found_error")
    elif fake.flavor == "glm":
        assert (r.status_code, error["code"]) == (400, "1211")
    elif fake.flavor == "openrouter":
        assert (r.status_code, error["code"]) == (404, 404)
    elif fake.flavor == "deepseek":  # the body public bug reports show (protocols.md 1.6)
        assert r.status_code == 400
        assert error == {"message": "Model Not Exist", "type": "invalid_request_error", "param": None,
                         "code": "invalid_request_error"}
    else:
        assert (r.status_code, error["code"]) == (404, "model_not_found")
    bad_temp = chat(http, fake, temperature=3)
    assert bad_temp.status_code == (422 if fake.flavor == "deepseek" else 400)
    assert fake.faults == [] and fake.usage_log == []


def test_models_endpoint(http, fake):
    r = http.get(fake.base_url + "/models", headers=AUTH)
    body = r.json()
    assert r.status_code == 200 and body["object"] == "list"
    assert MODEL[fake.flavor] in [m["id"] for m in body["data"]]
    assert http.get(fake.base_url + "/models").status_code == 401


def test_requests_are_recorded(http, fakes):
    fake = fakes["openai"]
    fake.reset()
    chat(http, fake, temperature=0.5)
    record = fake.requests[-1]
    assert record["method"] == "POST" and record["path"] == "/v1/chat/completions"
    assert record["headers"]["authorization"] == f"Bearer {KEY}"
    assert record["json"]["temperature"] == 0.5 and record["query"] == {}


def test_reply_str_and_callable():
    seen = []

    def reply(messages):
        seen.append(messages)
        return "答" * 9

    with FakeOpenAIServer(api_key=None, reply=reply) as fake, httpx.Client() as http:
        body = chat(http, fake, headers={"Authorization": "Bearer anything"}).json()
        assert body["choices"][0]["message"]["content"] == "答" * 9
        assert body["usage"]["completion_tokens"] == 3 and seen == [HELLO]
        fake.reply = "fixed"
        chunks = json_events(chat(http, fake, stream=True).content)
        assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["fixe", "d", None]


# -- OpenAI-compatible: faults ----------------------------------------------------------------
def test_faults_are_fifo_one_per_request(http, fakes):
    fake = fakes["deepseek"]
    fake.reset()
    fake.faults.extend([Fault.status(503), Fault.status(503)])
    assert [chat(http, fake).status_code for _ in range(3)] == [503, 503, 200]
    fake.faults.extend([Fault.none(), Fault.status(500)])
    assert [chat(http, fake).status_code for _ in range(3)] == [200, 500, 200]
    assert len(fake.chat_requests) == 6 and fake.faults == []


def test_status_fault_custom_body_and_headers(http, fakes):
    fake = fakes["openai"]
    fake.reset()
    fake.faults.append(Fault.status(418, body={"x": 1}, headers={"X-Extra": "y"}))
    r = chat(http, fake, stream=True)
    assert r.status_code == 418 and r.json() == {"x": 1} and r.headers["x-extra"] == "y"


def test_status_fault_default_bodies(http, fake):
    for status in (400, 401, 402, 404, 429, 500, 502, 503):
        fake.faults.append(Fault.status(status))
        r = chat(http, fake)
        assert r.status_code == status and "message" in r.json()["error"]
    fake.faults.append(Fault.status(503))
    error = chat(http, fake).json()["error"]
    # A 503 body must not read as a rate limit (Moonshot engine_overloaded / GLM 1305 are 429s).
    assert error.get("type") != "engine_overloaded_error" and error.get("code") != "1305"


QUOTA = {"openai": (429, "code", "insufficient_quota"), "deepseek": (402, "message", "Insufficient Balance"),
         "moonshot": (429, "type", "exceeded_current_quota_error"), "openrouter": (402, "code", 402),
         "glm": (429, "code", "1113"), "qwen": (400, "code", "Arrearage")}


def test_quota_fault_per_flavor(http, fake):
    fake.faults.append(Fault.quota())
    r = chat(http, fake, stream=True)
    status, field, value = QUOTA[fake.flavor]
    assert r.status_code == status and r.json()["error"][field] == value
    assert r.headers["content-type"].startswith("application/json")


def test_rate_limited_fault(http, fake):
    fake.faults.append(Fault.rate_limited(retry_after=2))
    r = chat(http, fake)
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    assert "error" in r.json()


def test_disconnect_mid_stream_and_mid_body(http, fakes):
    fake = fakes["deepseek"]
    fake.reset()
    fake.faults.append(Fault.disconnect_after(2))
    received = b""
    with pytest.raises(httpx.RemoteProtocolError):
        with http.stream("POST", fake.base_url + "/chat/completions", headers=AUTH,
                         json={"model": "deepseek-chat", "messages": HELLO, "stream": True}) as r:
            assert r.status_code == 200
            for part in r.iter_bytes():
                received += part
    assert len(json_events(received)) == 2 and b"[DONE]" not in received
    fake.faults.append(Fault.disconnect_after(0))
    with pytest.raises(httpx.RemoteProtocolError):
        chat(http, fake)
    assert fake.wait_for(lambda: fake.active_streams == 0)
    assert fake.usage_log == [] and fake.streams_completed == 0


def test_malformed_chunk_then_normal(http, fake):
    fake.faults.append(Fault.malformed_chunk(after=1))
    raw = chat(http, fake, stream=True).content
    payloads = [data_of(e) for e in sse_events(raw) if not all(x.startswith(b":") for x in e)]
    broken = []
    for payload in payloads:
        try:
            json.loads(payload)
        except ValueError:
            broken.append(payload)
    assert payloads[-1] == b"[DONE]"
    assert len(broken) == 2 and broken == [payloads[1], b"[DONE]"]
    fake.faults.append(Fault.malformed_chunk())
    body = chat(http, fake).content
    with pytest.raises(ValueError):
        json.loads(body)


def test_error_frame_per_flavor(http, fake):
    fake.faults.append(Fault.error_frame(after=2))
    r = chat(http, fake, stream=True)
    assert r.status_code == 200
    events = [e for e in sse_events(r.content) if not all(x.startswith(b":") for x in e)]
    assert len(events) == 3 and b"[DONE]" not in r.content
    last = json.loads(data_of(events[-1]))
    assert "error" in last
    if fake.flavor == "openrouter":
        assert last["error"]["code"] == 502
        assert last["choices"][0]["finish_reason"] == "error"
    elif fake.flavor == "glm":
        assert b"event: error" in events[-1] and isinstance(last["error"]["code"], str)
    elif fake.flavor == "moonshot":
        assert last["error"]["type"] == "server_error"
    else:
        assert last["error"]["type"] == "server_error"
    fake.faults.append(Fault.error_frame(code="1301", message="blocked"))
    body = chat(http, fake)
    assert body.status_code == 200 and body.json()["error"]["message"] == "blocked"


def test_stall_before_first_byte_times_out_client():
    with FakeOpenAIServer(api_key=KEY) as fake:
        fake.faults.append(Fault.stall(30))
        with httpx.Client(timeout=httpx.Timeout(10, read=0.3)) as http:
            with pytest.raises(httpx.ReadTimeout):
                chat(http, fake, stream=True)
            assert fake.active_streams == 0
        # The client left during the stall; the fake lets go of the connection.
        assert fake.wait_for(lambda: fake.active_connections == 0)
        assert fake.usage_log == [] and fake.max_active_streams == 0


def test_stall_between_events(fakes):
    fake = fakes["moonshot"]
    fake.reset()
    fake.faults.append(Fault.stall_between(30, after=2))
    received = b""
    with httpx.Client(timeout=httpx.Timeout(10, read=0.3)) as http:
        with pytest.raises(httpx.ReadTimeout):
            with http.stream("POST", fake.base_url + "/chat/completions", headers=AUTH,
                             json={"model": "moonshot-v1-8k", "messages": HELLO,
                                   "stream": True}) as r:
                for part in r.iter_bytes():
                    received += part
    assert len(json_events(received)) == 2
    assert fake.wait_for(lambda: fake.streams_cancelled == 1 and fake.active_streams == 0)


def test_keepalive_only_then_normal(http, fakes):
    fake = fakes["deepseek"]
    fake.reset()
    fake.faults.append(Fault.keepalive_only(0.2, interval=0.05))
    events = sse_events(chat(http, fake, stream=True).content)
    first_data = next(i for i, e in enumerate(events) if e[0].startswith(b"data:"))
    assert first_data >= 2 and all(e == [b": keep-alive"] for e in events[:first_data])
    assert events[-1] == [b"data: [DONE]"]
    fake.faults.append(Fault.keepalive_only(0.1, interval=0.05))
    r = chat(http, fake)
    assert r.content.startswith(b"\n") and r.json()["choices"][0]["message"]["content"] == EXPECTED


def test_no_done_leading_blank_lines_crlf(http, fakes):
    fake = fakes["openai"]
    fake.reset()
    fake.faults.append(Fault.no_done())
    raw = chat(http, fake, stream=True).content
    assert b"[DONE]" not in raw and json_events(raw)
    fake.faults.append(Fault.leading_blank_lines(3))
    r = chat(http, fake)
    assert r.content.startswith(b"\n\n\n{") and r.json()["choices"][0]["message"]["content"]
    fake.faults.append(Fault.crlf() + Fault.no_done())
    raw = chat(http, fake, stream=True).content
    assert raw.count(b"\r\n\r\n") >= 3 and b"\n" not in raw.replace(b"\r\n", b"")
    assert b"[DONE]" not in raw
    assert json_events(raw.replace(b"\r\n", b"\n"))


def test_huge_reply(http, fakes):
    fake = fakes["qwen"]
    fake.reset()
    fake.faults.append(Fault.huge(200_000))
    assert len(chat(http, fake).json()["choices"][0]["message"]["content"]) == 200_000
    fake.faults.append(Fault.huge(50_000, piece_chars=5000))
    chunks = json_events(chat(http, fake, stream=True).content)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert len(text) == 50_000 and len(chunks) == 11


def test_invalid_utf8(http, fakes):
    fake = fakes["glm"]
    fake.reset()
    fake.faults.append(Fault.invalid_utf8(after=1))
    raw = chat(http, fake, stream=True).content
    assert raw.count(b"\xff\xfe") == 1 and raw.endswith(b"data: [DONE]\n\n")
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    fake.faults.append(Fault.invalid_utf8())
    assert b"\xff\xfe" in chat(http, fake).content


def test_token_delay_and_concurrent_streams_are_counted(fakes):
    fake = FakeOpenAIServer(flavor="openrouter", api_key=KEY, token_delay=0.05)
    with fake, httpx.Client(timeout=10) as http, contextlib.ExitStack() as stack:
        streams = []
        for _ in range(3):
            r = stack.enter_context(http.stream(
                "POST", fake.base_url + "/chat/completions", headers=AUTH,
                json={"model": MODEL["openrouter"], "messages": HELLO, "stream": True}))
            streams.append(r.iter_bytes())
            next(streams[-1])
        assert fake.active_streams == 3 and fake.max_active_streams == 3
        stack.close()
        http.close()
        assert fake.wait_for(lambda: fake.active_streams == 0 and fake.active_connections == 0)
        assert fake.streams_cancelled == 3 and fake.streams_completed == 0


# -- DashScope native -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dashscope():
    with FakeDashScopeServer(api_key=KEY) as server:
        yield server


def generation(http, fake, *, stream=False, headers=AUTH, body=None, **parameters):
    payload = body if body is not None else {
        "model": "qwen-turbo", "input": {"messages": HELLO}, "parameters": parameters}
    h = dict(headers)
    if stream:
        h.update({"X-DashScope-SSE": "enable", "Accept": "text/event-stream"})
    return http.post(fake.base_url + "/services/aigc/text-generation/generation",
                     json=payload, headers=h)


def test_dashscope_non_stream(http, dashscope):
    dashscope.reset()
    assert dashscope.base_url.endswith("/api/v1")
    body = generation(http, dashscope, result_format="message").json()
    assert body["output"]["choices"][0] == {
        "message": {"role": "assistant", "content": EXPECTED}, "finish_reason": "stop"}
    assert set(body["usage"]) == {"input_tokens", "output_tokens", "total_tokens"}
    assert body["request_id"]
    legacy = generation(http, dashscope).json()
    assert legacy["output"] == {"text": EXPECTED, "finish_reason": "stop"}
    prompt = generation(http, dashscope, body={"model": "qwen-turbo", "input": {"prompt": "hi there"}})
    assert prompt.json()["output"]["text"] == EXPECTED
    # "stream": true in the body does not stream: only the header does.
    r = generation(http, dashscope, body={"model": "qwen-turbo", "input": {"messages": HELLO},
                                         "stream": True})
    assert r.headers["content-type"].startswith("application/json")
    assert dashscope.usage_log[0] == {"prompt_tokens": 8, "completion_tokens": 4,
                                      "total_tokens": 12}


@pytest.mark.parametrize("incremental", [True, False])
def test_dashscope_stream_framing(http, dashscope, incremental):
    dashscope.reset()
    r = generation(http, dashscope, stream=True, result_format="message",
                   incremental_output=incremental)
    assert r.headers["content-type"] == "text/event-stream;charset=UTF-8"
    events = sse_events(r.content)
    assert len(events) == 4
    texts, finishes = [], []
    for n, event in enumerate(events, start=1):
        assert event[:3] == [f"id:{n}".encode(), b"event:result", b":HTTP_STATUS/200"]
        assert event[3].startswith(b"data:{")
        payload = json.loads(event[3][5:])
        choice = payload["output"]["choices"][0]
        texts.append(choice["message"]["content"])
        finishes.append(choice["finish_reason"])
        assert payload["usage"]["output_tokens"] == n
    assert finishes == ["null", "null", "null", "stop"]
    assert b"[DONE]" not in r.content
    if incremental:
        assert "".join(texts) == EXPECTED
    else:
        assert texts[-1] == EXPECTED and all(EXPECTED.startswith(t) for t in texts)
    assert dashscope.wait_for(lambda: len(dashscope.usage_log) == 1)
    assert dashscope.usage_log[0]["completion_tokens"] == 4


def test_dashscope_errors(http, dashscope):
    dashscope.reset()
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}):
        r = generation(http, dashscope, headers=headers, stream=True)
        assert r.status_code == 401 and r.json()["code"] == "InvalidApiKey"
        assert set(r.json()) == {"code", "message", "request_id"}
    r = generation(http, dashscope, body={"model": "qwen-turbo", "messages": HELLO})
    assert r.status_code == 400 and r.json()["code"] == "InvalidParameter"
    r = generation(http, dashscope, body={"input": {"messages": HELLO}})
    assert r.status_code == 400
    cases = [(Fault.quota(), 400, "Arrearage"), (Fault.rate_limited(), 429, "Throttling.RateQuota"),
             (Fault.status(500), 500, "InternalError"), (Fault.status(401), 401, "InvalidApiKey")]
    for fault, status, code in cases:
        dashscope.faults.append(fault)
        r = generation(http, dashscope, stream=True)
        assert (r.status_code, r.json()["code"]) == (status, code)


def test_dashscope_error_frame_and_disconnect(http, dashscope):
    dashscope.reset()
    dashscope.faults.append(Fault.error_frame(after=1))
    r = generation(http, dashscope, stream=True, incremental_output=True)
    assert r.status_code == 200
    events = sse_events(r.content)
    assert len(events) == 2
    assert events[1][:3] == [b"id:2", b"event:error", b":HTTP_STATUS/400"]
    assert json.loads(events[1][3][5:])["code"] == "InvalidParameter"
    dashscope.faults.append(Fault.disconnect_after(1))
    with pytest.raises(httpx.RemoteProtocolError):
        generation(http, dashscope, stream=True)


def test_dashscope_compatible_mode(http, dashscope):
    dashscope.reset()
    base = dashscope.compatible_base_url
    assert base.endswith("/compatible-mode/v1")
    models = http.get(base + "/models", headers=AUTH).json()
    assert "qwen-turbo" in [m["id"] for m in models["data"]]
    dashscope.faults.append(Fault.status(503))
    r = http.post(base + "/chat/completions", headers=AUTH,
                  json={"model": "qwen-turbo", "messages": HELLO})
    assert r.status_code == 503
    r = http.post(base + "/chat/completions", headers=AUTH,
                  json={"model": "qwen-turbo", "messages": HELLO, "stream": True,
                        "stream_options": {"include_usage": True}})
    chunks = json_events(r.content)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    assert len(dashscope.chat_requests) == 2


# -- ERNIE v1 -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ernie():
    with FakeErnieServer(api_key="ak-1", secret_key="sk-1") as server:
        yield server


def get_token(http, fake, ak="ak-1", sk="sk-1"):
    return http.post(fake.base_url + "/oauth/2.0/token", params={
        "grant_type": "client_credentials", "client_id": ak, "client_secret": sk})


def ernie_chat(http, fake, token, endpoint="ernie_speed", **body):
    payload = {"messages": HELLO, **body}
    return http.post(fake.base_url + "/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/" + endpoint,
                     params={"access_token": token} if token else None, json=payload)


def test_ernie_token(http, ernie):
    ernie.reset()
    r = get_token(http, ernie)
    body = r.json()
    assert r.status_code == 200 and body["access_token"].startswith("24.")
    assert body["expires_in"] == 2592000
    wrong_ak = get_token(http, ernie, ak="nope")
    assert wrong_ak.status_code == 401
    assert wrong_ak.json() == {"error": "invalid_client", "error_description": "unknown client id"}
    wrong_sk = get_token(http, ernie, sk="nope")
    assert wrong_sk.status_code == 401
    assert wrong_sk.json()["error_description"] == "Client authentication failed"
    assert ernie.token_requests == 3 and ernie.issued_tokens == [body["access_token"]]


def test_ernie_chat_and_token_errors(http, ernie):
    ernie.reset()
    token = get_token(http, ernie).json()["access_token"]
    body = ernie_chat(http, ernie, token).json()
    assert body["result"] == EXPECTED and body["is_truncated"] is False
    assert body["need_clear_history"] is False and body["finish_reason"] == "normal"
    assert body["usage"]["completion_tokens"] == 4
    assert ernie_chat(http, ernie, None).json()["error_code"] == 110
    assert ernie_chat(http, ernie, "24.bogus").json()["error_code"] == 110
    ernie.expire_tokens()
    expired = ernie_chat(http, ernie, token)
    assert expired.status_code == 200 and expired.json()["error_code"] == 111
    fresh = get_token(http, ernie).json()["access_token"]
    assert "result" in ernie_chat(http, ernie, fresh).json()
    ernie.revoke_tokens()
    assert ernie_chat(http, ernie, fresh).json()["error_code"] == 110


def test_ernie_message_rules(http, ernie):
    ernie.reset()
    token = get_token(http, ernie).json()["access_token"]
    assert ernie_chat(http, ernie, token, endpoint="gpt-5").json()["error_code"] == 336005
    bad = [HELLO + [{"role": "assistant", "content": "a"}],
           [{"role": "system", "content": "s"}] + HELLO,
           [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
            {"role": "user", "content": "c"}],
           []]
    for messages in bad:
        r = ernie_chat(http, ernie, token, messages=messages)
        assert r.status_code == 200 and r.json()["error_code"] == 336006, messages
    seen = []
    ernie.reply = lambda messages: seen.append(messages) or "ok"
    try:
        r = ernie_chat(http, ernie, token, endpoint="completions", system="be brief")
        assert r.json()["result"] == "ok"
        assert seen[0][0] == {"role": "system", "content": "be brief"}
    finally:
        ernie.reply = None
    assert len(ernie.chat_requests) == 6 and len(ernie.usage_log) == 1


def test_ernie_stream_and_stream_errors(http, ernie):
    ernie.reset()
    token = get_token(http, ernie).json()["access_token"]
    r = ernie_chat(http, ernie, token, stream=True)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.content)
    chunks = []
    for event in events:
        assert len(event) == 1 and event[0].startswith(b"data: {")
        chunks.append(json.loads(event[0][6:]))
    assert [c["sentence_id"] for c in chunks] == [0, 1, 2, 3]
    assert [c["is_end"] for c in chunks] == [False, False, False, True]
    assert "".join(c["result"] for c in chunks) == EXPECTED
    assert all("usage" in c for c in chunks) and b"[DONE]" not in r.content
    for fault, code in ((Fault.quota(), 17), (Fault.rate_limited(), 18),
                        (Fault.error_frame(), 336000)):
        ernie.faults.append(fault)
        r = ernie_chat(http, ernie, token, stream=True)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.json()["error_code"] == code
    ernie.faults.append(Fault.error_frame(after=2, code=336100))
    events = sse_events(ernie_chat(http, ernie, token, stream=True).content)
    assert len(events) == 3 and json.loads(events[2][0][6:])["error_code"] == 336100


# -- command line ---------------------------------------------------------------------------------
def test_command_line_serves_until_sigterm():
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-m", "xedullm.testing", "openai", "--flavor",
                             "deepseek", "--api-key", KEY, "--token-delay", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        base_url = proc.stdout.readline().decode().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        r = httpx.post(base_url + "/chat/completions", headers=AUTH,
                       json={"model": "deepseek-chat", "messages": HELLO})
        assert r.json()["choices"][0]["message"]["content"] == EXPECTED
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert KEY.encode() not in proc.stdout.read() + proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
