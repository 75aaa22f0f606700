"""Classroom controls for real: access code, student tokens, budgets and rate limits, the
usage ledger in SQLite — our server on 127.0.0.1 in front of a fake provider, driven by the
``openai`` SDK and raw HTTP, restarted on the same data directory where it matters.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import math
import mimetypes
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

import xedullm
from xedullm import Client
from xedullm.server.classroom import student_tokens
from xedullm.server.app import ServerSettings, create_app
from xedullm.server.classroom.room import today
from xedullm.server.store.sqlite import SQLiteStore
from xedullm.testing import Fault, ServerThread

from conftest import TEACHER_KEY, browser_headers, browser_who, rows_written, serve_process, wait_until

ROOT = Path(__file__).resolve().parent.parent
CODE = "math-class-42"
ANSWER = "你好！你刚才说："


@dataclass
class Room:
    url: str
    client: Any
    app: Any
    fake: Any

    @property
    def classroom(self):
        return self.app.state.xedullm.classroom

    @property
    def store(self):
        rows_written(self.app)   # read directly: the server's rows first
        return self.classroom.store


@contextlib.contextmanager
def serving(fake, data_dir, system=None, api_key=TEACHER_KEY, **settings):
    """Our server on ``data_dir`` until the block ends (then it is stopped and its store closed)."""
    client = Client(provider="deepseek", base_url=fake.base_url, api_key=api_key, timeout=10,
                    max_retries=0, verbose=False)
    if system:
        client.set_system(system)
    app = create_app(client, settings=ServerSettings(data_dir=data_dir, **settings))
    try:
        with ServerThread(app) as server:
            yield Room(server.url, client, app, fake)
    finally:
        app.state.xedullm.classroom.close()
        client.close()


@pytest.fixture
def room(teacher_fake, tmp_path):
    """Factory: ``room(**settings)`` — one server on tmp_path for the rest of the test."""
    with contextlib.ExitStack() as stack:
        yield lambda **settings: stack.enter_context(serving(teacher_fake, tmp_path, **settings))


def sdk(room, key="anything"):
    return openai.OpenAI(base_url=f"{room.url}/v1", api_key=key, max_retries=0)


def ask(room, key=None, content="你好", session=None, made_up_session=None, **body):
    """``session``: the browser of that name, with the id the server issued it (as the page
    gets one); ``made_up_session``: an id the caller invented, sent as it is."""
    headers = {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if session:
        headers.update(browser_headers(room.url, session, key or ""))
    if made_up_session:
        headers["X-Xedullm-Session"] = made_up_session
    return httpx.post(f"{room.url}/v1/chat/completions", headers=headers, timeout=20,
                      json={"messages": [{"role": "user", "content": content}], **body})


def make_token(store, name, **limits):
    token = student_tokens.new_token()
    store.add_token(name, student_tokens.digest(token), student_tokens.limits_from(**limits), time.time())
    return token


def ledger(room):
    return list(room.store.rows())


def holds(room):
    store = room.store
    with store._lock:
        return store._db.execute("SELECT COUNT(*) FROM holds").fetchone()[0]


# -- access ----------------------------------------------------------------------------------
def test_access_code_is_checked_before_the_body(room):
    r = room(access_code=CODE)
    assert httpx.get(f"{r.url}/api/info").json()["access_code_required"] is True
    for key in (None, "wrong-code", CODE + "x", "xs-not-a-real-token"):
        stranger = ask(r, key=key, content=None)   # an invalid body too: access is checked first
        assert stranger.status_code == 401, key
        error = stranger.json()["error"]
        assert error["type"] == "authentication_error"
        assert ("访问码" in error["message"] or "令牌" in error["message"]) and "/ " in error["message"]
        assert "messages" not in error["message"]
    assert ask(r, key=CODE, content=None).status_code == 400    # a member hears about the field
    reply = sdk(r, CODE).chat.completions.create(model="m", messages=[{"role": "user", "content": "好"}])
    assert reply.choices[0].message.content == ANSWER + "好"
    with pytest.raises(openai.AuthenticationError, match="访问码"):
        sdk(r, "wrong").chat.completions.create(model="m", messages=[{"role": "user", "content": "好"}])
    with pytest.raises(xedullm.AuthenticationError, match="访问码"):
        Client(xedu_url=r.url, verbose=False, max_retries=0).inference("hi")
    assert Client(xedu_url=r.url, api_key=CODE, verbose=False).inference("hi") == ANSWER + "hi"
    assert len(r.fake.chat_requests) == 2
    rows = ledger(r)
    assert [(row["who"], row["status"], row["admitted"]) for row in rows if row["status"] == 401] == \
        [(None, 401, False)] * 6


def test_a_token_is_a_key_for_the_api_and_the_page_and_revoking_is_immediate(room):
    r = room(access_code=CODE)
    token = make_token(r.store, "第三组")
    assert sdk(r, token).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "一"}]).choices[0].message.content == ANSWER + "一"
    # What the page sends: the token typed as the access code, plus its tab id.
    assert ask(r, key=token, session="tab-1").status_code == 200
    assert ask(r, key=CODE, session="tab-1").status_code == 200
    wait_until(lambda: len(ledger(r)) == 3)   # rows are written just after the answer is sent
    assert [row["who"] for row in ledger(r)] == ["第三组", "第三组", browser_who(r.url, "tab-1")]

    # Revoked from another connection to the same file, as `xedullm tokens revoke` does.
    other = SQLiteStore(r.store.data_dir)
    assert other.revoke_token("第三组", time.time())
    other.close()
    with pytest.raises(openai.AuthenticationError, match="停用") as info:
        sdk(r, token).chat.completions.create(model="m", messages=[{"role": "user", "content": "二"}])
    assert "revoked" in info.value.body["message"]
    assert len(r.fake.chat_requests) == 3


def test_an_expired_token_fails_and_tokens_are_stored_only_as_hashes(room, tmp_path):
    r = room(access_code=CODE)
    expired = make_token(r.store, "去年的", expires="2020-01-01")
    fresh = make_token(r.store, "今年的", expires="2999-12-31")
    assert ask(r, key=expired).status_code == 401 and "过期" in ask(r, key=expired).json()["error"]["message"]
    assert ask(r, key=fresh).status_code == 200
    raw = (tmp_path / "classroom.sqlite3").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.iterdir() if p.name.endswith("-wal"))
    for token in (expired, fresh):
        assert token.encode() not in raw and token[3:].encode() not in raw
        assert student_tokens.digest(token).encode() in raw


def test_without_access_code_everyone_is_let_in_and_browsers_are_told_apart(room):
    r = room()
    assert httpx.get(f"{r.url}/api/info").json()["access_code_required"] is False
    assert ask(r, key="anything").status_code == 200
    assert ask(r, session="tab-2").status_code == 200
    # Ids the server did not issue (made up, overlong, a forged signature) are the address.
    issued = browser_headers(r.url, "tab-2")["X-Xedullm-Session"]
    forged = issued[:-1] + ("1" if issued.endswith("0") else "0")
    for made_up in ("a" * 100, "tab\t2", forged):
        assert ask(r, made_up_session=made_up).status_code == 200
    wait_until(lambda: len(ledger(r)) == 5)
    assert [row["who"] for row in ledger(r)] == ["ip:127.0.0.1", browser_who(r.url, "tab-2")] + ["ip:127.0.0.1"] * 3


def test_allowed_models_are_honoured_only_for_tokens_that_list_them(room):
    r = room()
    chooser = make_token(r.store, "兴趣小组", models=["deepseek-reasoner"])
    plain = make_token(r.store, "普通组")
    assert sdk(r, chooser).chat.completions.create(
        model="deepseek-reasoner", messages=[{"role": "user", "content": "x"}]).model == "deepseek-reasoner"
    sdk(r, chooser).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    sdk(r, plain).chat.completions.create(model="deepseek-reasoner", messages=[{"role": "user", "content": "x"}])
    assert [b["json"]["model"] for b in r.fake.chat_requests] == ["deepseek-reasoner", "deepseek-chat", "deepseek-chat"]


# -- budgets ---------------------------------------------------------------------------------
QUESTION = "算一算"   # prompt 3 characters; answer 11 characters = 3 pieces: 6 tokens a request
COST = 6


async def burst(url, n, key=None, **body):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers,
                                 limits=httpx.Limits(max_connections=n)) as http:
        async def one(i):
            stream = i % 2 == 1
            return await http.post("/v1/chat/completions", json={
                "messages": [{"role": "user", "content": QUESTION}], "stream": stream, **body})
        return await asyncio.gather(*(one(i) for i in range(n)))


def refusals(responses):
    return sorted({(x.status_code, x.json()["error"]["code"]) for x in responses if x.status_code != 200})


def test_class_budget_is_exact_at_the_boundary_under_concurrency(room):
    budget = 40
    r = room(daily_budget=budget)
    r.fake.token_delay = 0.005
    # With max_tokens equal to the real answer length every hold equals the real cost, so the
    # count is exact whatever the timing: admitted while used + held < budget.
    responses = asyncio.run(burst(r.url, 30, max_tokens=3))
    ok = [x for x in responses if x.status_code == 200]
    assert len(ok) == math.ceil(budget / COST) == 7
    assert len(r.fake.chat_requests) == 7
    for refused in (x for x in responses if x.status_code != 200):
        assert refused.status_code == 429
        code = refused.json()["error"]["code"]
        assert code in ("rate_limit_exceeded", "insufficient_quota")
        assert ("Retry-After" in refused.headers) == (code == "rate_limit_exceeded")
    wait_until(lambda: len(ledger(r)) == 30)
    rows = ledger(r)
    assert sum(row["total_tokens"] or 0 for row in rows) == sum(u["total_tokens"] for u in r.fake.usage_log) == 42
    assert r.store.used(today()) == 42 and holds(r) == 0
    after = ask(r, content=QUESTION)
    assert after.status_code == 429 and after.json()["error"]["code"] == "insufficient_quota"
    assert "全班今天的额度" in after.json()["error"]["message"] and "Retry-After" not in after.headers
    with pytest.raises(xedullm.QuotaExceededError, match="额度"):
        Client(xedu_url=r.url, verbose=False, max_retries=0).inference("x")


def test_budget_with_rough_estimates_never_admits_once_reached(room):
    """Without max_tokens the hold is a rough guess; still nothing is admitted once the
    recorded total reaches the budget, so the total passes it by less than one request."""
    budget = 50
    r = room(daily_budget=budget)
    rounds = 0
    while True:
        rounds += 1
        assert rounds < 40
        responses = asyncio.run(burst(r.url, 8))
        assert all(x.status_code in (200, 429) for x in responses)
        if any(x.status_code == 429 and x.json()["error"]["code"] == "insufficient_quota" for x in responses):
            break
    wait_until(lambda: holds(r) == 0)
    total = sum(u["total_tokens"] for u in r.fake.usage_log)
    assert budget <= total < budget + COST
    assert r.store.used(today()) == total


def test_per_student_budgets_count_each_student_separately(room):
    r = room(per_student_daily=12)
    rich = make_token(r.store, "加餐组", daily_tokens=30)
    for session in ("tab-a", "tab-b"):
        assert [ask(r, session=session, content=QUESTION).status_code for _ in range(3)] == [200, 200, 429]
    refused = ask(r, session="tab-a", content=QUESTION)
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert "你今天的额度（12 token）" in refused.json()["error"]["message"]
    assert [ask(r, key=rich, content=QUESTION).status_code for _ in range(6)] == [200] * 5 + [429]
    usage = httpx.get(f"{r.url}/v1/usage", headers={"Authorization": f"Bearer {rich}"}).json()
    assert usage["who"] == "加餐组" and usage["used_tokens"] == 30 and usage["daily_limit"] == 30


def test_a_students_next_request_sees_the_last_answers_usage_at_once(room):
    # The row is queued right after the answer's last bytes are written, before the event loop
    # takes up the student's next request, so the next claim comes after it. With budget_wait=0, a claim
    # that still saw the last answer's hold instead of its usage would be "held, try again".
    r = room(per_student_daily=1, budget_wait=0, browser_ids_per_address=20)   # 20 browsers on one machine
    for i in range(20):
        session = f"tab-{i}"
        assert ask(r, session=session, content=QUESTION, stream=i % 2 == 0).status_code == 200
        again = ask(r, session=session, content=QUESTION)
        assert again.status_code == 429 and again.json()["error"]["code"] == "insufficient_quota", again.text


def test_requests_per_minute_limit_with_retry_after(room):
    r = room()
    token = make_token(r.store, "快手", rpm=3)
    responses = asyncio.run(burst(r.url, 10, key=token))
    assert sum(x.status_code == 200 for x in responses) == 3
    assert refusals(responses) == [(429, "rate_limit_exceeded")]
    refused = next(x for x in responses if x.status_code == 429)
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "每分钟最多可以发 3 个请求" in refused.json()["error"]["message"]
    with pytest.raises(openai.RateLimitError):
        sdk(r, token).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])


def test_concurrent_streams_limit_is_exact(room):
    r = room()
    token = make_token(r.store, "并发组", concurrent=2)
    for _ in range(2):
        r.fake.faults.append(Fault.stall(60))
    socks = [_open_stream(r.url, token) for _ in range(2)]
    assert r.fake.wait_for(lambda: len(r.fake.chat_requests) == 2, 10)
    third = ask(r, key=token)
    assert third.status_code == 429 and third.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(third.headers["retry-after"]) >= 1 and "同时最多可以有 2 个回答" in third.json()["error"]["message"]
    assert ask(r, session="someone-else").status_code == 200      # other students are not affected
    for sock in socks:
        sock.close()
    wait_until(lambda: holds(r) == 0)
    assert ask(r, key=token).status_code == 200
    # Many at once never run more than the limit upstream.
    r.fake.reset()
    r.fake.token_delay = 0.01
    responses = asyncio.run(burst(r.url, 12, key=token))
    assert r.fake.max_active_streams <= 2
    assert sum(x.status_code == 200 for x in responses) >= 2
    assert refusals(responses) in ([], [(429, "rate_limit_exceeded")])


def _open_stream(url, key):
    host, port = url.split("//")[1].split(":")
    sock = socket.create_connection((host, int(port)))
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer " + key.encode() + b"\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    return sock


# -- the ledger ------------------------------------------------------------------------------
def test_ledger_matches_what_the_provider_reported_through_errors_and_disconnects(room):
    r = room()
    client = sdk(r)
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "一"}])
    list(client.chat.completions.create(model="m", stream=True, messages=[{"role": "user", "content": "二二"}]))
    r.fake.faults.append(Fault.status(500))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "三"}])
    r.fake.faults.append(Fault.stall_between(60, after=2))
    sock = _open_stream(r.url, "anything")
    received = b""
    while b"content" not in received:
        received += sock.recv(4096)
    sock.close()
    assert r.fake.wait_for(lambda: r.fake.streams_cancelled == 1, 10)
    asyncio.run(burst(r.url, 10))
    wait_until(lambda: len(ledger(r)) == 14)
    rows = ledger(r)
    assert [row["outcome"] for row in rows[:4]] == ["ok", "ok", "upstream_error", "disconnected"]
    assert rows[3]["status"] == 499 and rows[3]["total_tokens"] is None and rows[3]["charged"] > 0
    reported = [(row["prompt_tokens"], row["completion_tokens"], row["total_tokens"])
                for row in rows if row["total_tokens"] is not None]
    assert sorted(reported) == sorted((u["prompt_tokens"], u["completion_tokens"], u["total_tokens"])
                                      for u in r.fake.usage_log)
    assert all(row["conversation"] is None for row in rows)       # no text unless review is on
    assert all(row["latency"] >= 0 and row["model"] == "deepseek-chat" for row in rows)
    assert holds(r) == 0


def test_classroom_review_keeps_the_conversation(room):
    r = room(review=True, system="你是助教。")
    ask(r, content="秘密问题")
    wait_until(lambda: len(ledger(r)) == 1)
    row = ledger(r)[0]
    assert json.loads(row["conversation"]) == {
        "messages": [{"role": "system", "content": "你是助教。"}, {"role": "user", "content": "秘密问题"}],
        "answer": ANSWER + "秘密问题"}


def test_restart_keeps_the_ledger_tokens_and_limits(teacher_fake, tmp_path):
    with serving(teacher_fake, tmp_path, access_code=CODE, daily_budget=20) as first:
        token = make_token(first.store, "小红", daily_tokens=COST)
        assert ask(first, key=token, content=QUESTION).status_code == 200
        assert ask(first, key=CODE, content=QUESTION).status_code == 200
        assert ask(first, key=token, content=QUESTION).json()["error"]["code"] == "insufficient_quota"
    # No budget given this time: the one set before is remembered.
    with serving(teacher_fake, tmp_path, access_code=CODE) as second:
        assert second.classroom.daily_budget == 20
        assert ask(second, key=token, content=QUESTION).json()["error"]["code"] == "insufficient_quota"
        assert ask(second, key=CODE, content=QUESTION).status_code == 200    # 12 -> 18 of 20
        assert ask(second, key=CODE, content=QUESTION).status_code == 200    # 18 < 20: admitted, ends at 24
        assert ask(second, key=CODE, content=QUESTION).json()["error"]["code"] == "insufficient_quota"
        assert [row["who"] for row in ledger(second)][:3] == ["小红", "code:127.0.0.1", "小红"]
        assert second.store.used(today()) == 24 == sum(u["total_tokens"] for u in teacher_fake.usage_log)


def test_usage_endpoint_shows_only_the_callers_own(room):
    r = room(access_code=CODE)
    a = make_token(r.store, "甲")
    b = make_token(r.store, "乙")
    ask(r, key=a, content=QUESTION)
    ask(r, key=b, content=QUESTION + QUESTION)
    mine = httpx.get(f"{r.url}/v1/usage", params={"who": "乙"}, headers={"Authorization": f"Bearer {a}"})
    assert mine.json()["who"] == "甲" and mine.json()["used_tokens"] == COST
    assert "乙" not in mine.text
    assert httpx.get(f"{r.url}/v1/usage").status_code == 401


def test_js_and_css_are_served_with_module_safe_types_even_if_the_registry_says_otherwise(room):
    mimetypes.add_type("text/plain", ".js")   # what some Windows registries say
    mimetypes.add_type("text/plain", ".css")
    r = room()
    assert httpx.get(f"{r.url}/static/app.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{r.url}/static/style.css").headers["content-type"].startswith("text/css")


# -- the CLI and `xedullm serve` -----------------------------------------------------------------
def run_cli(*args, data_dir):
    env = dict(os.environ, PYTHONPATH=str(ROOT), LANG="en_US.UTF-8")
    return subprocess.run([sys.executable, "-m", "xedullm", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)


def test_tokens_cli_create_list_revoke_against_a_running_server(room, tmp_path):
    r = room(access_code=CODE)
    made = run_cli("tokens", "create", "小明", "--daily-tokens", "100", "--rpm", "5", "--concurrent", "2",
                   "--models", "deepseek-reasoner", "--expires", "2999-12-31", data_dir=tmp_path)
    assert made.returncode == 0, made.stderr
    assert made.stdout.count("\n") == 1  # the token alone: scripts read it
    token = made.stdout.strip()
    assert len(token) == 8 and "shown only this once" in made.stderr
    assert sdk(r, token).chat.completions.create(
        model="deepseek-reasoner", messages=[{"role": "user", "content": "x"}]).model == "deepseek-reasoner"
    listed = run_cli("tokens", "list", data_dir=tmp_path)
    assert listed.returncode == 0 and "小明" in listed.stdout and "active" in listed.stdout
    assert token not in listed.stdout
    again = run_cli("tokens", "create", "小明", data_dir=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr
    revoked = run_cli("tokens", "revoke", "小明", data_dir=tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    assert ask(r, key=token).status_code == 401
    assert "revoked" in run_cli("tokens", "list", data_dir=tmp_path).stdout
    bad = run_cli("tokens", "create", "anonymous", data_dir=tmp_path)
    assert bad.returncode == 1 and "anonymous" in bad.stderr and "Traceback" not in bad.stderr


def test_xedullm_serve_with_classroom_options(teacher_fake, tmp_path):
    args = ["-p", "deepseek", "--base-url", teacher_fake.base_url, "--host", "127.0.0.1", "--port", "0",
            "--access-code", CODE, "--data-dir", str(tmp_path), "--daily-budget", "1000",
            "--per-student-daily", "100", "--review"]
    with serve_process(args, {"DEEPSEEK_API_KEY": TEACHER_KEY}, until="用量记录保存在") as (proc, lines):
        url = next(line for line in lines if line.startswith("Running on local URL:")).split()[-1]
        password = next(line for line in lines if line.startswith("本次管理密码")).split()[-1]
        assert len(password) == 12 and f"{url}/admin" in "".join(lines)
        assert str(tmp_path) in lines[-1]
        assert Client(xedu_url=url, api_key=CODE, verbose=False).inference("hi") == ANSWER + "hi"
        login = httpx.post(f"{url}/admin/login", data={"password": password})
        assert login.status_code == 303
        proc.send_signal(2)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    store = SQLiteStore(tmp_path)
    try:
        assert store.get_setting("daily_budget") == "1000" and store.get_setting("review") == "true"
        assert [row["who"] for row in store.rows()] == ["code:127.0.0.1"]
    finally:
        store.close()
    assert TEACHER_KEY not in "".join(lines) + out + err


def test_a_locked_or_failing_store_gives_a_clear_error_and_recovers(teacher_fake, tmp_path, caplog):
    import sqlite3

    store = SQLiteStore(tmp_path, busy_timeout=0.2)
    with serving(teacher_fake, None, store=store, daily_budget=1000) as r:
        assert ask(r, content="一").status_code == 200
        blocker = sqlite3.connect(str(store.path), isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")   # another program holds the file
        try:
            refused = ask(r, content="二")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert "用量记录暂时不可用" in refused.json()["error"]["message"]
        assert "Classroom store error" in caplog.text
        assert ask(r, content="三").status_code == 200
        assert len(teacher_fake.chat_requests) == 2
