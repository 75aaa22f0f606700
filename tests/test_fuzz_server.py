"""Hostile input against the real classroom server: property-based fuzzing of
``POST /v1/chat/completions`` and the page endpoints over real sockets.

Whatever a student (or their script) sends, the server answers 2xx or 4xx, never 5xx; a
4xx carries a bilingual OpenAI-style error message; and a well-behaved student keeps
getting answers while the barrage goes on (a background thread asks normal questions
throughout and every one must succeed).
"""
from __future__ import annotations

import json
import re
import threading

import httpx
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from xedullm import Client
from xedullm.server.app import ServerSettings, create_app
from xedullm.server.api import limits as L
from xedullm.testing import FakeOpenAIServer
from xedullm.testing.server_thread import ServerThread

KEY = "sk-fuzz-teacher-0123456789abcdefSECRET"
FUZZ = settings(max_examples=150, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])
CHAT = "/v1/chat/completions"
_CJK = re.compile(r"[\u4e00-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]{3,}")


class Bystander:
    """A student asking normal questions in a loop while the fuzzer runs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ok = 0
        self.failures = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            i = 0
            while not self._stop.is_set():
                i += 1
                question = f"第{i}个问题"
                body = {"messages": [{"role": "user", "content": question}], "stream": i % 2 == 0}
                try:
                    reply = http.post(CHAT, json=body)
                    if reply.status_code != 200 or question not in answer_text(reply):
                        self.failures.append((reply.status_code, reply.text[:300]))
                    else:
                        self.ok += 1
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))

    def __enter__(self) -> "Bystander":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)


def answer_text(reply: httpx.Response) -> str:
    """The assistant's text of a JSON or SSE chat reply."""
    if not reply.headers.get("content-type", "").startswith("text/event-stream"):
        return reply.json()["choices"][0]["message"]["content"]
    text = []
    for line in reply.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            for choice in json.loads(line[6:]).get("choices", []):
                text.append(choice["delta"].get("content") or "")
    return "".join(text)


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer(flavor="deepseek", api_key=KEY) as fake:
        client = Client(provider="deepseek", base_url=fake.base_url, api_key=KEY, timeout=10,
                        max_retries=0, verbose=False)
        app = create_app(client, settings=ServerSettings())
        with ServerThread(app) as running:
            with httpx.Client(base_url=running.url, timeout=30) as http:
                with Bystander(running.url) as bystander:
                    yield http, bystander
                assert not bystander.failures, bystander.failures[:5]
                assert bystander.ok > 0
        client.close()


def check(reply: httpx.Response) -> None:
    """The server's promise for any request: no 5xx; a 4xx says in both languages what's wrong."""
    assert reply.status_code < 500, (reply.status_code, reply.text[:500])
    if reply.status_code >= 400:
        error = reply.json()["error"]
        message = error["message"]
        assert _CJK.search(message) and _LATIN.search(message), message
        assert KEY not in reply.text


# -- strategies -----------------------------------------------------------------------
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)
roles = st.sampled_from(["user", "system", "assistant", "developer", "tool", "function", "",
                         "USER", " user", "用户"]) | json_scalars
contents = (st.text(max_size=200) | json_values
            | st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]),
                                               "text": st.text(max_size=20) | json_scalars}), max_size=3))
messages = st.lists(st.fixed_dictionaries({}, optional={"role": roles, "content": contents,
                                                        "name": json_values}), max_size=6)
options = st.fixed_dictionaries({}, optional={
    "model": json_values, "stream": st.booleans() | json_scalars,
    "temperature": st.floats(allow_nan=True, allow_infinity=True) | json_values,
    "top_p": st.floats(-1, 2) | json_values, "max_tokens": st.integers(-5, 10**12) | json_values,
    "max_completion_tokens": st.integers(-5, 100) | json_values,
    "stop": st.lists(st.text(max_size=5), max_size=6) | json_values,
    "n": st.integers(-1, 3) | json_values, "stream_options": json_values,
    "tools": json_values, "user": json_values,
})


@st.composite
def chat_bodies(draw):
    body = draw(options)
    if draw(st.booleans()):
        body["messages"] = draw(messages | json_values)
    else:
        body["messages"] = draw(messages)
    return body


# -- /v1/chat/completions ------------------------------------------------------------
@FUZZ
@given(body=chat_bodies())
def test_any_json_body_gets_an_answer_or_a_clear_4xx(server, body):
    http, _ = server
    check(http.post(CHAT, content=json.dumps(body, allow_nan=True)))


@FUZZ
@given(body=json_values)
def test_any_json_document_at_all(server, body):
    http, _ = server
    check(http.post(CHAT, content=json.dumps(body, allow_nan=True)))


@FUZZ
@given(raw=st.binary(max_size=2000) | st.text(max_size=500).map(lambda s: s.encode("utf-8", "surrogatepass")))
def test_garbage_bytes(server, raw):
    http, _ = server
    check(http.post(CHAT, content=raw, headers={"content-type": "application/json"}))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(depth=st.integers(1, 200_000), kind=st.sampled_from(["[", "{\"a\":"]),
       where=st.sampled_from(["top", "content", "option"]))
def test_deep_nesting(server, depth, kind, where):
    closer = "]" if kind == "[" else "}"
    nested = kind * depth + "1" + closer * depth
    if where == "top":
        raw = nested
    elif where == "content":
        raw = '{"messages":[{"role":"user","content":' + nested + "}]}"
    else:
        raw = '{"messages":[{"role":"user","content":"hi"}],"user":' + nested + "}"
    check(http_post(server, raw.encode()))


@pytest.mark.parametrize("first", ["NaN", "1e999", "-Infinity"])
def test_an_unsendable_number_ahead_of_deep_nesting_is_still_a_400(server, first):
    # The parse stops at the number, then the body is parsed again for the error naming the
    # field: that second parse meets the nesting and must end in the same 400.
    raw = ('{"messages":[{"role":"user","content":"hi"}],"user":[' + first + "," + "[" * 100_000
           + "]" * 100_000 + "]}")
    reply = http_post(server, raw.encode())
    check(reply)
    assert reply.status_code == 400


def http_post(server, raw: bytes, **headers) -> httpx.Response:
    http, _ = server
    return http.post(CHAT, content=raw, headers={"content-type": "application/json", **headers})


CONTENT_TYPES = ["application/json", "text/plain", "application/x-www-form-urlencoded",
                 "multipart/form-data; boundary=xyz", "application/json; charset=utf-16",
                 "application/json; charset=gbk", "", "*/*", "application/xml", "\u00e9/\u00e9"]


@FUZZ
@given(content_type=st.sampled_from(CONTENT_TYPES),
       auth=st.none() | st.sampled_from(["Bearer", "Bearer x y", "Basic Zm9vOmJhcg==", "Bearer \u00e9\u00e8",
                                          "Bearer " + "x" * 5000, "\t"]),
       accept=st.none() | st.sampled_from(["text/event-stream", "*/*", "application/xml", "\u00ff"]),
       extra=st.dictionaries(st.from_regex(r"\Ax-[a-z]{1,12}\Z"),
                             st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=50),
                             max_size=3),
       stream=st.booleans(),
       encoding=st.sampled_from(["utf-8", "utf-16", "gbk", "latin-1"]))
def test_odd_headers_and_encodings(server, content_type, auth, accept, extra, stream, encoding):
    body = json.dumps({"messages": [{"role": "user", "content": "你好 hello"}], "stream": stream},
                      ensure_ascii=False)
    headers = dict(extra)
    headers["content-type"] = content_type
    if auth is not None:
        headers["authorization"] = auth
    if accept is not None:
        headers["accept"] = accept
    http, _ = server
    try:
        reply = http.post(CHAT, content=body.encode(encoding), headers=headers)
    except (httpx.LocalProtocolError, UnicodeEncodeError):
        reject()  # a header no HTTP client can send
    check(reply)
    if encoding == "utf-8":  # a valid body is answered whatever the headers say
        assert reply.status_code == 200 and "你好 hello" in answer_text(reply)


def test_empty_and_missing_bodies(server):
    http, _ = server
    for raw in (b"", b" ", b"null", b"{}", b"[]", b'""', b"0", b'{"messages":[]}',
                b'{"messages":null}', b'{"messages":[{}]}', b'{"messages":[{"role":"user"}]}',
                b'{"messages":[{"content":"hi"}]}', b'{"messages":[{"role":"system","content":"x"}]}',
                b'{"messages":[{"role":"user","content":"hi"}]} trailing', b"\xef\xbb\xbf{}"):
        reply = http_post(server, raw)
        check(reply)
        assert reply.status_code == 400, raw


def test_empty_content_is_answered(server):
    http, _ = server
    reply = http.post(CHAT, json={"messages": [{"role": "user", "content": ""}]})
    check(reply)
    assert reply.status_code == 200


# -- limits -----------------------------------------------------------------------------
def test_oversized_body_is_refused(server):
    raw = b'{"messages":[{"role":"user","content":"' + b"a" * (L.DEFAULT.max_body_bytes + 10) + b'"}]}'
    reply = http_post(server, raw)
    check(reply)
    assert reply.status_code == 400
    assert "MB" in reply.json()["error"]["message"]


def test_oversized_body_without_content_length_is_refused(server):
    # Chunked upload: the limit holds even when the client does not announce a length.
    def chunks():
        yield b'{"messages":[{"role":"user","content":"'
        for _ in range(L.DEFAULT.max_body_bytes // 65536 + 2):
            yield b"b" * 65536
        yield b'"}]}'

    http, _ = server
    reply = http.post(CHAT, content=chunks(), headers={"content-type": "application/json"})
    check(reply)
    assert reply.status_code == 400


def test_too_many_messages_are_refused(server):
    many = [{"role": "user" if i % 2 == 0 else "assistant", "content": "x"}
            for i in range(L.DEFAULT.max_messages + 1)]
    http, _ = server
    reply = http.post(CHAT, json={"messages": many})
    check(reply)
    assert reply.status_code == 400 and str(L.DEFAULT.max_messages) in reply.json()["error"]["message"]
    assert http.post(CHAT, json={"messages": many[:L.DEFAULT.max_messages - 1]}).status_code == 200


def test_too_long_content_is_refused(server):
    http, _ = server
    long = "长" * (L.DEFAULT.max_content_chars + 1)
    reply = http.post(CHAT, json={"messages": [{"role": "user", "content": long}]})
    check(reply)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "messages[0].content"
    reply = http.post(CHAT, json={"messages": [{"role": "user", "content": long[:-1]}]})
    assert reply.status_code == 200


def test_limits_are_configurable():
    tight = L.Limits(max_body_bytes=2000, max_messages=2, max_content_chars=10)
    with FakeOpenAIServer(flavor="deepseek", api_key=KEY) as fake:
        client = Client(provider="deepseek", base_url=fake.base_url, api_key=KEY, max_retries=0,
                        verbose=False)
        app = create_app(client, settings=ServerSettings(limits=tight))
        with ServerThread(app) as running, httpx.Client(base_url=running.url) as http:
            assert http.post(CHAT, json={"messages": [{"role": "user", "content": "x" * 10}]}).status_code == 200
            assert http.post(CHAT, json={"messages": [{"role": "user", "content": "x" * 11}]}).status_code == 400
            three = [{"role": "user", "content": "a"}] * 3
            assert http.post(CHAT, json={"messages": three}).status_code == 400
            assert http.post(CHAT, content=b" " * 2001 + b"{}").status_code == 400
        client.close()
        assert not fake.chat_requests or all(
            len(r["json"]["messages"]) <= 2 for r in fake.chat_requests)


# -- the page's endpoints ---------------------------------------------------------------
path_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="?#"), max_size=40)


@FUZZ
@given(path=st.sampled_from(["/", "/api/info", "/static/app.js", "/static/", "/healthz", "/v1/models",
                             CHAT, "/admin", "/api", "/static"])
       | path_text.map(lambda p: "/static/" + p) | path_text.map(lambda p: "/" + p),
       method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
       query=st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=3),
       headers=st.dictionaries(st.sampled_from(["accept", "accept-language", "origin", "range",
                                                "if-none-match", "x-forwarded-for", "cookie"]),
                               st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
                               max_size=3))
def test_page_endpoints(server, path, method, query, headers):
    http, _ = server
    try:
        request = http.build_request(method, path, params=query, headers=headers)
        reply = http.send(request)
    except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeEncodeError):
        reject()  # not sendable as HTTP at all (e.g. a header value of only spaces)
    assert reply.status_code < 500, (method, path, reply.status_code, reply.text[:300])
    if method != "HEAD" and reply.status_code >= 400 and \
            reply.headers.get("content-type", "").startswith("application/json"):
        check(reply)
    assert KEY not in reply.text


@pytest.mark.parametrize("path", ["/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py",
                                  "/static/%2e%2e%2f%2e%2e%2fpyproject.toml", "/static//etc/passwd",
                                  "/static/....//app.py"])
def test_static_never_serves_files_outside_its_folder(server, path):
    http, _ = server
    reply = http.get(path)
    assert reply.status_code in (400, 404), (path, reply.status_code)
    assert "create_app" not in reply.text and "root:" not in reply.text


def test_info_and_page_are_well_formed(server):
    http, _ = server
    info = http.get("/api/info", headers={"accept": "text/html"}).json()
    assert set(info) >= {"provider", "model", "access_code_required"}
    assert KEY not in json.dumps(info)
    page = http.get("/", headers={"accept": "application/json"})
    assert page.status_code == 200 and "Content-Security-Policy" in page.headers
