"""One student, careless or hostile, cannot freeze, starve or bill the class (issue 14).

Each test reproduces one attack a curious student can make from the classroom LAN, against
our server for real on 127.0.0.1 in front of a fake provider.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx
import pytest

from xedullm import Client
from xedullm.server.app import ServerSettings, create_app
from xedullm.server.store.sqlite import SQLiteStore
from xedullm.testing import Fault, ServerThread

from conftest import TEACHER_KEY, browser_headers, rows_written, wait_until

CODE = "fair-class-7"


class Room:
    def __init__(self, url: str, app: Any, fake: Any) -> None:
        self.url, self.app, self.fake = url, app, fake

    @property
    def store(self):
        rows_written(self.app)   # read directly: the server's rows first
        return self.app.state.xedullm.classroom.store

    def holds(self) -> int:
        store = self.store
        with store._lock:
            return store._db.execute("SELECT COUNT(*) FROM holds").fetchone()[0]

    def rows(self):
        return list(self.store.rows())


@contextlib.contextmanager
def serving(fake, data_dir=None, **settings):
    client = Client(provider="deepseek", base_url=fake.base_url, api_key=TEACHER_KEY, timeout=10,
                    max_retries=0, verbose=False)
    app = create_app(client, settings=ServerSettings(data_dir=data_dir, **settings))
    try:
        with ServerThread(app) as server:
            yield Room(server.url, app, fake)
    finally:
        app.state.xedullm.classroom.close()
        client.close()


def post(room, raw: Any, key=None, headers=None) -> httpx.Response:
    headers = dict(headers or {})
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = raw if isinstance(raw, (bytes, str)) else json.dumps(raw)
    headers.setdefault("content-type", "application/json")
    return httpx.post(f"{room.url}/v1/chat/completions", content=data, headers=headers, timeout=20)


def hello(content="你好", **body):
    return {"messages": [{"role": "user", "content": content}], **body}


# -- recording never leaves a hold behind -----------------------------------------------------
class ConversationWriteFails(SQLiteStore):
    """A real SQLite store whose write of a row with conversation text fails, as a full disk
    or an encoding error would."""

    def __init__(self, data_dir, error: BaseException) -> None:
        super().__init__(data_dir)
        self.error = error

    def record(self, row, claim_id=None):
        if row.conversation is not None:
            raise self.error
        super().record(row, claim_id)


@pytest.mark.parametrize("error", [RuntimeError("disk I/O error"),
                                   UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")],
                         ids=["runtime", "unicode"])
def test_a_failing_ledger_write_still_releases_the_hold_and_writes_a_row(teacher_fake, tmp_path, error):
    store = ConversationWriteFails(tmp_path, error)
    with serving(teacher_fake, store=store, review=True, daily_budget=20000) as room:
        assert post(room, hello("第一个问题")).status_code == 200
        wait_until(lambda: room.holds() == 0)   # the row is written just after the answer is sent
        [row] = room.rows()
        assert row["outcome"] == "ok" and row["charged"] > 0 and row["conversation"] is None
        # Nothing of the budget stays frozen: a classmate is answered.
        assert post(room, hello("同学的问题")).status_code == 200


# -- text and numbers checked at the edge -------------------------------------------------------
def test_a_lone_surrogate_is_a_400_naming_the_field_and_holds_nothing(teacher_fake, tmp_path):
    with serving(teacher_fake, tmp_path, review=True, daily_budget=20000) as room:
        cases = {
            "messages[0].content": b'{"messages": [{"role": "user", "content": "hi \\ud800"}]}',
            "stop": b'{"messages": [{"role": "user", "content": "hi"}], "stop": "\\udfff"}',
            "model": b'{"messages": [{"role": "user", "content": "hi"}], "model": "m\\ud83d"}',
            "user": b'{"messages": [{"role": "user", "content": "hi"}], "user": "\\udc00"}',
            "messages[0]": b'{"messages": [{"role": "user", "content": "hi", "\\ud800": "\\ud800"}]}',
            "messages[0].content[0].text":
                b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "\\ud800"}]}]}',
        }
        for param, raw in cases.items():
            reply = post(room, raw)
            assert reply.status_code == 400, reply.text
            error = reply.json()["error"]
            assert error["param"] == param and " / " in error["message"]
        assert room.holds() == 0 and teacher_fake.chat_requests == []
        # A correct pair (an emoji) is fine, and classmates are not refused.
        assert post(room, b'{"messages": [{"role": "user", "content": "\\ud83d\\ude00"}]}').status_code == 200


@pytest.mark.parametrize("field,raw", [
    ("max_tokens", "1000000000000000000000000000000"),
    ("max_tokens", str(2 ** 31)),
    ("max_completion_tokens", str(10 ** 20)),
    ("temperature", "NaN"),
    ("temperature", "Infinity"),
    ("top_p", "-Infinity"),
    ("temperature", "1e400"),
])
def test_absurd_numbers_are_a_400_naming_the_field(teacher_fake, tmp_path, field, raw):
    with serving(teacher_fake, tmp_path, daily_budget=20000) as room:
        reply = post(room, '{"messages": [{"role": "user", "content": "hi"}], "%s": %s}' % (field, raw))
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["param"] == field
        assert room.holds() == 0 and teacher_fake.chat_requests == []


def test_a_non_finite_number_anywhere_is_a_400_naming_where(teacher_fake, tmp_path):
    with serving(teacher_fake, tmp_path, daily_budget=20000) as room:
        reply = post(room, '{"messages": [{"role": "user", "content": "hi"}], "metadata": {"x": [1, NaN]}}')
        assert reply.status_code == 400 and reply.json()["error"]["param"] == "metadata.x[1]"
        assert teacher_fake.chat_requests == []


# -- redaction catches the key in every form a provider may echo --------------------------------
def _redaction_cases():
    import base64
    from urllib.parse import quote

    key = "sk-fair-3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
    basic = base64.b64encode(f"user:{key}".encode()).decode()
    return key, {
        "upper case": f"Invalid key {key.upper()} provided",
        "mixed case": f"key={key[:12].upper()}{key[12:]}",
        "url-encoded": f"GET /v1?key={quote(key, safe='')}&x=1",
        "base64": f"token {base64.b64encode(key.encode()).decode()}",
        "base64 inside Basic auth": f"Authorization: Basic {basic}",
        "base64url": f"t={base64.urlsafe_b64encode(b'xy' + key.encode()).decode()}",
        "partly masked": f"Incorrect API key provided: {key[:20]}****************{key[-4:]}",
        "tail fragment": f"key ending ...{key[-14:]} is wrong",
    }


@pytest.mark.parametrize("form", list(_redaction_cases()[1]))
def test_redact_catches_each_form_of_the_key(form):
    from xedullm.keys import redact

    key, cases = _redaction_cases()
    out = redact(cases[form], [key])
    assert not any(key[i:i + 10].lower() in out.lower() for i in range(len(key) - 9)), out
    import base64
    for pad in range(3):
        encoded = base64.b64encode(b"u" * pad + key.encode()).decode()[4:-4]
        assert encoded not in out and encoded.replace("+", "-").replace("/", "_") not in out, out
    assert "sk-fa…6b5c" in out


def test_redact_leaves_text_without_the_key_alone():
    from xedullm.keys import redact

    key, _ = _redaction_cases()
    text = "模型 deepseek-chat 出错了 / Upstream error 429: slow down, sk-other-0123"
    assert redact(text, [key, None, "abc"]) == text
    # Text whose lower-case form is longer (İ) keeps its positions right.
    assert redact(f"İİ {key} İ", [key]) == "İİ sk-fa…6b5c İ"


# -- the classroom data is the teacher's alone --------------------------------------------------
def _mode(path) -> int:
    import stat
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(__import__("os").name != "posix", reason="file modes exist only on POSIX")
def test_the_data_directory_and_database_files_are_private_on_creation_and_on_open(tmp_path):
    import os
    from pathlib import Path

    old = os.umask(0o022)   # the usual umask: new files world-readable unless we say otherwise
    try:
        data = tmp_path / "fresh" / "server"
        store = SQLiteStore(data)
        store.set_setting("k", "v")
        files = [data / "classroom.sqlite3", Path(f"{data}/classroom.sqlite3-wal"), Path(f"{data}/classroom.sqlite3-shm")]
        assert _mode(data) == 0o700 and [_mode(f) for f in files] == [0o600] * 3
        store.close()
        # A folder left world-readable by an older version is fixed when opened.
        os.chmod(data, 0o755)
        for f in files:
            if f.exists():
                os.chmod(f, 0o644)
        store = SQLiteStore(data)
        store.set_setting("k", "w")
        assert _mode(data) == 0o700
        assert [_mode(f) for f in files if f.exists()] == [0o600] * len([f for f in files if f.exists()])
        store.close()
    finally:
        os.umask(old)


# -- fair holds -----------------------------------------------------------------------------------
def held_tokens(room) -> list:
    with room.store._lock:
        return [r[0] for r in room.store._db.execute("SELECT tokens FROM holds ORDER BY started")]


def stream_body(content, **body):
    return {"messages": [{"role": "user", "content": content}], "stream": True, **body}


async def _open(client, url, body, headers=None):
    """Start a streaming request and return once its response headers are due (never read)."""
    return await client.send(client.build_request("POST", f"{url}/v1/chat/completions", json=body,
                                                  headers=headers or {}), stream=True)


def test_one_long_request_does_not_hold_the_whole_budget(teacher_fake, tmp_path):
    teacher_fake.reply = "短答。"
    with serving(teacher_fake, tmp_path, daily_budget=20000) as room:
        teacher_fake.faults.append(Fault.stall(30))

        async def scenario():
            async with httpx.AsyncClient(timeout=20) as client:
                big = asyncio.ensure_future(_open(client, room.url, stream_body("长" * 12000, max_tokens=8192)))
                while not teacher_fake.chat_requests:
                    await asyncio.sleep(0.01)
                classmate = await client.post(f"{room.url}/v1/chat/completions", json=hello("同学"))
                # The classmate's hold is released just after its answer is sent.
                for _ in range(1000):
                    held = held_tokens(room)
                    if len(held) == 1:
                        break
                    await asyncio.sleep(0.01)
                big.cancel()
                return classmate, held

        classmate, held = asyncio.run(scenario())
        assert classmate.status_code == 200, classmate.text
        # The long request holds its prompt and a usual answer (at most the teacher's cap)...
        assert held == [12000 + 1024]
        # ...and upstream is told that cap, not the student's 8192.
        assert teacher_fake.chat_requests[0]["json"]["max_tokens"] == 2048


def test_holds_follow_what_this_classes_answers_really_use(teacher_fake, tmp_path):
    teacher_fake.reply = "一二三四五六七八"   # 8 characters: a few tokens an answer
    with serving(teacher_fake, tmp_path, daily_budget=100000) as room:
        for i in range(12):
            assert post(room, hello(f"问{i}")).status_code == 200
        teacher_fake.faults.append(Fault.stall(30))

        async def scenario():
            async with httpx.AsyncClient(timeout=20) as client:
                pending = asyncio.ensure_future(_open(client, room.url, stream_body("问题")))
                while len(teacher_fake.chat_requests) < 13:
                    await asyncio.sleep(0.01)
                held = held_tokens(room)
                pending.cancel()
                return held

        [held] = asyncio.run(scenario())
        answer = max(u["completion_tokens"] for u in teacher_fake.usage_log)
        assert held <= 2 + answer < 100   # not 2 + 1024 as before the class had answered


def test_a_request_refused_only_for_held_budget_waits_for_it(teacher_fake, tmp_path):
    teacher_fake.reply = "好"
    with serving(teacher_fake, tmp_path, daily_budget=1000) as room:
        teacher_fake.faults.append(Fault.stall(1.0))   # the first answer holds the whole budget a while

        async def scenario():
            async with httpx.AsyncClient(timeout=40) as client:
                first = asyncio.ensure_future(client.post(f"{room.url}/v1/chat/completions", json=hello("一")))
                while not teacher_fake.chat_requests:
                    await asyncio.sleep(0.01)
                assert held_tokens(room) == [1000]
                second = await client.post(f"{room.url}/v1/chat/completions", json=hello("二"))
                return await first, second

        first, second = asyncio.run(scenario())
        assert first.status_code == 200 and second.status_code == 200, second.text
        wait_until(lambda: len(room.rows()) == 2)
        assert [row["outcome"] for row in room.rows()] == ["ok", "ok"]


def test_the_wait_for_held_budget_is_bounded(teacher_fake, tmp_path):
    with serving(teacher_fake, tmp_path, daily_budget=1000, budget_wait=0.2) as room:
        teacher_fake.faults.append(Fault.stall(30))

        async def scenario():
            async with httpx.AsyncClient(timeout=20) as client:
                first = asyncio.ensure_future(_open(client, room.url, stream_body("一")))
                while not teacher_fake.chat_requests:
                    await asyncio.sleep(0.01)
                second = await client.post(f"{room.url}/v1/chat/completions", json=hello("二"))
                first.cancel()
                return second

        second = asyncio.run(scenario())
        assert second.status_code == 429 and "retry-after" in second.headers
        assert "占用" in second.json()["error"]["message"]


# -- per-caller fairness and identity ---------------------------------------------------------------
def test_one_caller_cannot_fill_the_gate(teacher_fake, tmp_path):
    with serving(teacher_fake, tmp_path, access_code=CODE, max_per_caller=2) as room:
        for _ in range(2):
            teacher_fake.faults.append(Fault.stall(5))
        auth = {"Authorization": f"Bearer {CODE}"}

        async def scenario():
            async with httpx.AsyncClient(timeout=20) as client:
                streams = [asyncio.ensure_future(_open(client, room.url, stream_body("占"), auth)) for _ in range(2)]
                while len(teacher_fake.chat_requests) < 2:
                    await asyncio.sleep(0.01)
                third = await client.post(f"{room.url}/v1/chat/completions", json=hello("三"), headers=auth)
                other = await client.post(f"{room.url}/v1/chat/completions", json=hello("同学"),
                                          headers=dict(auth, **browser_headers(room.url, "classmate", CODE)))
                for s in streams:
                    s.cancel()
                return third, other

        third, other = asyncio.run(scenario())
        assert third.status_code == 429 and "2 个回答在进行" in third.json()["error"]["message"]
        assert other.status_code == 200
        assert len(teacher_fake.chat_requests) == 3   # the third never went upstream


def test_access_code_programs_are_told_apart_by_address(teacher_fake, tmp_path):
    with serving(teacher_fake, tmp_path, access_code=CODE, per_student_daily=5) as room:
        auth = {"Authorization": f"Bearer {CODE}"}
        first = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.1"), timeout=20)
        second = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=20)
        with first, second:
            url = f"{room.url}/v1/chat/completions"
            assert first.post(url, json=hello("用完我的额度"), headers=auth).status_code == 200
            assert first.post(url, json=hello("再来"), headers=auth).status_code == 429
            # Another student's program, with the same code from another computer, is not refused.
            assert second.post(url, json=hello("我的"), headers=auth).status_code == 200
        wait_until(lambda: len(room.rows()) == 3)
        assert [r["who"] for r in room.rows()] == ["code:127.0.0.1", "code:127.0.0.1", "code:127.0.0.2"]


# -- the server itself: slow senders, socket hoarders, readers that never read ----------------------
@contextlib.contextmanager
def real_server(fake, data_dir, **options):
    """``xedullm serve``'s own uvicorn server (runner.make_server) in a thread, on 127.0.0.1."""
    import threading

    from xedullm.server.runner import bind_socket, make_server

    client = Client(provider="deepseek", base_url=fake.base_url, api_key=TEACHER_KEY, timeout=30,
                    max_retries=0, verbose=False)
    sock = bind_socket("127.0.0.1", 0)
    server = make_server(client, sock, data_dir=str(data_dir), **options)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive()
            threading.Event().wait(0.01)
        room = Room(f"http://127.0.0.1:{sock.getsockname()[1]}", server.config.app, fake)
        room.server = server
        yield room, sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        server.classroom.close()
        client.close()


def _closed_by_server(sock, trickle: bytes = b"") -> bool:
    """True once the server closes ``sock`` (reading gives EOF or a reset); sends ``trickle``
    a byte at a time meanwhile, as a slowloris client does. False after 15 s."""
    import socket as _socket
    import time as _time

    sock.settimeout(0.2)
    give_up = _time.monotonic() + 15
    sent = 0
    while _time.monotonic() < give_up:
        try:
            if sent < len(trickle):
                sock.send(trickle[sent:sent + 1])
                sent += 1
            if sock.recv(65536) == b"":
                return True
        except _socket.timeout:
            continue
        except OSError:
            return True
    return False


def test_slow_senders_are_cut_off_and_a_classmate_is_answered(teacher_fake, tmp_path):
    import socket as _socket

    with real_server(teacher_fake, tmp_path, read_timeout=1.0) as (room, port):
        half_open = [_socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        try:
            for s in half_open:
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")   # headers never finished
            slow_body = _socket.create_connection(("127.0.0.1", port))
            slow_body.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                              b"\r\nContent-Length: 500\r\n\r\n{")
            assert post(room, hello("同学")).status_code == 200
            assert all(_closed_by_server(s, b"X-Slow: 1\r\n" * 100) for s in half_open)
            assert _closed_by_server(slow_body, b" " * 100)
        finally:
            for s in half_open:
                s.close()


def test_one_address_cannot_hold_every_connection(teacher_fake, tmp_path):
    import socket as _socket

    with real_server(teacher_fake, tmp_path, max_connections_per_address=5) as (room, port):
        held = [_socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        try:
            extra = _socket.create_connection(("127.0.0.1", port))
            assert _closed_by_server(extra)
            # Another computer (address) is served meanwhile.
            other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=20)
            with other:
                assert other.post(f"{room.url}/v1/chat/completions", json=hello("同学")).status_code == 200
        finally:
            for s in held:
                s.close()


def test_a_reader_that_never_reads_is_dropped_and_frees_its_upstream_call(teacher_fake, tmp_path):
    import socket as _socket
    import time as _time

    teacher_fake.faults.append(Fault(huge_chars=8_000_000, huge_piece_chars=4096))
    with real_server(teacher_fake, tmp_path, send_timeout=1.0) as (room, port):
        reader = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        reader.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, 4096)
        reader.connect(("127.0.0.1", port))
        body = json.dumps(stream_body("写一篇很长的作文")).encode()
        reader.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        try:
            state = room.app.state.xedullm
            give_up = _time.monotonic() + 60
            while not (room.rows() and state.gate.active == 0):
                assert _time.monotonic() < give_up, "the stalled reader still holds its slot"
                _time.sleep(0.05)
            [row] = room.rows()
            assert row["outcome"] == "disconnected" and room.holds() == 0
        finally:
            reader.close()


def test_the_server_parses_http_with_httptools(teacher_fake, tmp_path):
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    with real_server(teacher_fake, tmp_path) as (room, _):
        with httpx.Client(timeout=20) as http:   # its connection stays open (keep-alive)
            assert http.post(f"{room.url}/v1/chat/completions", json=hello()).status_code == 200
            [connection] = room.server.server_state.connections
            assert isinstance(connection, HttpToolsProtocol)


def _raw_reply(sock) -> bytes:
    """Everything the server sends on ``sock`` until it closes it."""
    sock.settimeout(20)
    out = b""
    while True:
        piece = sock.recv(65536)
        if not piece:
            return out
        out += piece


def test_a_request_head_too_large_is_refused_and_a_big_usual_one_is_served(teacher_fake, tmp_path):
    import socket as _socket

    with real_server(teacher_fake, tmp_path) as (room, port):
        # Many cookies of other programs on the same computer: far below the limit, served.
        assert post(room, hello(), headers={"Cookie": "; ".join(f"c{i}={'x' * 90}" for i in range(80))}
                    ).status_code == 200
        huge = _socket.create_connection(("127.0.0.1", port))
        with huge:
            # Never finished: without the limit the parser would buffer it until the read deadline.
            huge.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20000)
            assert _raw_reply(huge).startswith(b"HTTP/1.1 400 ")
        assert post(room, hello("同学")).status_code == 200


def test_a_connection_idle_between_requests_is_kept_but_stray_bytes_are_cut(teacher_fake, tmp_path):
    import http.client
    import socket as _socket
    import time as _time

    body = json.dumps(hello())
    with real_server(teacher_fake, tmp_path, read_timeout=1.0) as (room, port):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        try:
            for _ in range(2):
                conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
                reply = conn.getresponse()
                assert reply.status == 200 and reply.read()
                # Idle longer than the read deadline: uvicorn's keep-alive (15 s) decides, so the
                # same connection (http.client does not reconnect by itself) answers again.
                _time.sleep(2.5)
        finally:
            conn.close()
        stray = _socket.create_connection(("127.0.0.1", port))
        with stray:
            raw = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" \
                  f"Content-Length: {len(body.encode())}\r\n\r\n{body}".encode()
            stray.sendall(raw)
            stray.settimeout(20)
            assert stray.recv(65536).startswith(b"HTTP/1.1 200 ")
            # Line ends after the answer, never a request: uvicorn stops its keep-alive timer on
            # any byte, so only the read deadline ends this.
            assert _closed_by_server(stray, b"\r\n" * 30)


def test_an_answer_slower_than_the_read_deadline_is_not_cut(teacher_fake, tmp_path):
    import socket as _socket

    teacher_fake.faults.append(Fault.stall(2.5))
    with real_server(teacher_fake, tmp_path, read_timeout=1.0) as (room, port):
        body = json.dumps(hello()).encode()
        sock = _socket.create_connection(("127.0.0.1", port))
        with sock:
            # The line end after the body is an old-client habit; the request is complete before it.
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body + b"\r\n")
            reply = _raw_reply(sock)
        assert reply.startswith(b"HTTP/1.1 200 ") and b'"chat.completion"' in reply


def test_expect_100_continue_is_answered_and_a_body_too_large_is_refused_unsent(teacher_fake, tmp_path):
    import socket as _socket

    body = json.dumps(hello()).encode()
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\nContent-Length: ")
    with real_server(teacher_fake, tmp_path) as (room, port):
        sock = _socket.create_connection(("127.0.0.1", port))
        with sock:
            sock.sendall(head + str(len(body)).encode() + b"\r\n\r\n")
            sock.settimeout(20)
            assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(body)
            assert _raw_reply(sock).startswith(b"HTTP/1.1 200 ")
        too_big = room.app.state.xedullm.settings.limits.max_body_bytes + 1
        sock = _socket.create_connection(("127.0.0.1", port))
        with sock:
            sock.sendall(head + str(too_big).encode() + b"\r\n\r\n")
            reply = _raw_reply(sock)   # no "100 Continue": the student's program never sends the body
        assert reply.startswith(b"HTTP/1.1 400 ") and "请求太大" in reply.decode()
        assert len(teacher_fake.chat_requests) == 1


def _responses(sock, n: int) -> list:
    """The next ``n`` HTTP responses on ``sock``, parsed from one buffered reader."""
    import http.client
    import io
    import socket as _socket

    class _Kept(io.BufferedReader):
        def close(self):   # each response closes its reader at its end; the next reads on
            pass

    reader = _Kept(_socket.SocketIO(sock, "rb"))

    class _Source:
        def makefile(self, *args, **kwargs):
            return reader

    out = []
    for _ in range(n):
        response = http.client.HTTPResponse(_Source())
        response.begin()
        response.body = response.read()
        out.append(response)
    return out


def test_an_offer_to_switch_to_http2_is_declined_and_the_request_answered(teacher_fake, tmp_path):
    import socket as _socket

    body = json.dumps(hello("你好")).encode()
    offer = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + offer
    with real_server(teacher_fake, tmp_path) as (room, port):
        # What Java's and JetBrains' clients send: head and body together, apart, or chunked;
        # then (pipelined) a plain request on the same connection.
        chunked = b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        for parts in ([head + b"Content-Length: %d\r\n\r\n" % len(body) + body],
                      [head + b"Content-Length: %d\r\n\r\n" % len(body), body],
                      [head + chunked]):
            sock = _socket.create_connection(("127.0.0.1", port))
            with sock:
                for part in parts:
                    sock.sendall(part)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                sock.settimeout(20)
                first, second = _responses(sock, 2)
                assert first.status == 200 and "你好" in json.loads(first.body)["choices"][0]["message"]["content"]
                assert second.status == 200 and json.loads(second.body) == {"status": "ok"}
        assert len(teacher_fake.chat_requests) == 3
        sock = _socket.create_connection(("127.0.0.1", port))
        with sock:   # a proxy's tunnel request is no switch we could decline: refused, and closed
            sock.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
            assert _raw_reply(sock).startswith(b"HTTP/1.1 4")


def test_a_malformed_request_is_a_400_and_a_classmate_is_answered(teacher_fake, tmp_path):
    import socket as _socket

    with real_server(teacher_fake, tmp_path) as (room, port):
        # Bare line feeds too (h11 took them; httptools takes them only with bare CRs as well,
        # which a proxy in front may read otherwise): a hand-written request must use CRLF.
        for garbage in (b"HELLO THERE\r\n\r\n", b"GET / HTTP/1.1\r\nHost x\r\n\r\n", b"GET / HTTP/1.1\nHost: x\n\n",
                        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"):
            sock = _socket.create_connection(("127.0.0.1", port))
            with sock:
                sock.sendall(garbage)
                assert _raw_reply(sock).startswith(b"HTTP/1.1 400 "), garbage
        assert post(room, hello("同学")).status_code == 200


def test_forwarded_for_is_trusted_only_from_a_named_proxy(teacher_fake, tmp_path):
    forged = {"X-Forwarded-For": "10.9.8.7", "Authorization": f"Bearer {CODE}"}
    with real_server(teacher_fake, tmp_path / "a", access_code=CODE) as (room, _):
        assert post(room, hello("我是谁"), headers=forged).status_code == 200
        wait_until(lambda: room.rows())
        assert [r["who"] for r in room.rows()] == ["code:127.0.0.1"]
    with real_server(teacher_fake, tmp_path / "b", access_code=CODE, forwarded_allow_ips="127.0.0.1") as (room, _):
        assert post(room, hello("经过代理"), headers=forged).status_code == 200
        wait_until(lambda: room.rows())
        assert [r["who"] for r in room.rows()] == ["code:10.9.8.7"]


# -- the teacher's way in ----------------------------------------------------------------------------
PASSWORD = "teacher-pass-2468"


def _login(url, password, headers=None) -> httpx.Response:
    return httpx.post(f"{url}/admin/login", data={"password": password}, headers=headers or {}, timeout=20)


def test_logins_sent_together_are_counted_before_they_are_tried(teacher_fake, tmp_path):
    import socket as _socket
    from urllib.parse import urlsplit

    with serving(teacher_fake, tmp_path, admin_password=PASSWORD) as room:
        port = urlsplit(room.url).port
        socks, bodies = [], []
        for i in range(60):
            body = f"password={PASSWORD if i == 59 else f'guess{i:04d}'}".encode()
            s = _socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /admin/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
                      b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
            socks.append(s)
            bodies.append(body)
        for s, body in zip(socks, bodies):   # every header is in before any password
            s.sendall(body)
        statuses = []
        for s in socks:
            s.settimeout(20)
            statuses.append(int(s.recv(4096).split(b" ", 2)[1]))
            s.close()
        # Only the first few were looked at; the right password, sent last, is refused too.
        assert statuses.count(401) <= 3 and 303 not in statuses, statuses
        assert statuses.count(429) >= 56


def test_a_forged_forwarded_for_does_not_reset_the_login_throttle(teacher_fake, tmp_path):
    with real_server(teacher_fake, tmp_path, admin_password=PASSWORD) as (room, _):
        statuses = [_login(room.url, f"guess{i}", {"X-Forwarded-For": f"10.0.0.{i}"}).status_code
                    for i in range(6)]
        assert statuses[:2] == [401, 401] and set(statuses[3:]) == {429}, statuses


def test_logout_ends_the_session_on_the_server(teacher_fake, tmp_path):
    with serving(teacher_fake, tmp_path, admin_password=PASSWORD) as room:
        login = _login(room.url, PASSWORD)
        assert login.status_code == 303
        cookie = login.headers["set-cookie"].split(";")[0]
        copied = {"Cookie": cookie}
        assert httpx.get(f"{room.url}/admin/api/overview", headers=copied).status_code == 200
        out = httpx.post(f"{room.url}/admin/logout", headers=dict(copied, **{"X-Xedullm-Admin": "1"}))
        assert out.status_code == 200
        # A copy of the cookie (another tab, a shared computer) no longer opens anything.
        assert httpx.get(f"{room.url}/admin/api/overview", headers=copied).status_code == 401


def test_a_new_admin_password_ends_the_old_sessions(teacher_fake, tmp_path):
    with serving(teacher_fake, tmp_path, admin_password=PASSWORD) as room:
        cookie = _login(room.url, PASSWORD).headers["set-cookie"].split(";")[0]
    with serving(teacher_fake, tmp_path, admin_password="another-pass-1357") as room:
        assert httpx.get(f"{room.url}/admin/api/overview", headers={"Cookie": cookie}).status_code == 401
        with room.store._lock:
            assert room.store._db.execute("SELECT COUNT(*) FROM admin_sessions").fetchone()[0] == 0
