"""Hostile input, round three (issue 27): each reproduction re-run against a server started for
real, on 127.0.0.1 only.

- The old-client face is behind the same door as everything else, and joins nobody collects
  cannot fill the server's memory (measured: the RSS of a real `xedullm serve` process).
- Malformed Gradio ids are a 4xx; an admin body over its limit is a 413 naming the limit; a
  lone surrogate in admin input is a 400.
"""
from __future__ import annotations

import json
from pathlib import Path

import httpx

from conftest import TEACHER_KEY, rows_written, serve_process

CODE = "math-class-42"
PASSWORD = "teacher-pass-2468"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# -- 1. the join flood ---------------------------------------------------------------------------
def test_a_join_flood_without_the_access_code_leaves_memory_flat(teacher_fake, tmp_path):
    args = ["-p", "deepseek", "--base-url", teacher_fake.base_url, "--host", "127.0.0.1", "--port", "0",
            "--access-code", CODE, "--data-dir", str(tmp_path)]
    with serve_process(args, {"DEEPSEEK_API_KEY": TEACHER_KEY}, until="用量记录保存在") as (proc, lines):
        url = next(line for line in lines if line.startswith("Running on local URL:")).split()[-1]
        http = httpx.Client(base_url=url, timeout=60)
        assert http.get("/config").status_code == 200
        before = rss_mb(proc.pid)
        # The flood: 20 joins of ~3 MB each (a list of 1.3 M {}), no Authorization.
        big = json.dumps({"data": [[{}] * 1_300_000, None], "fn_index": 0, "session_hash": "flood"}).encode()
        assert len(big) > 3_000_000
        for i in range(20):
            reply = http.post("/queue/join", content=big, headers={"Content-Type": "application/json"})
            assert reply.status_code == 413 and "/ " in reply.json()["detail"], reply.text
        # The same bodies with the code, and without a Content-Length (chunked): refused as they
        # are read, never parsed into a million objects.
        for i in range(5):
            reply = http.post("/queue/join", content=iter([big[j:j + 65536] for j in range(0, len(big), 65536)]),
                              headers={"Content-Type": "application/json", "Authorization": f"Bearer {CODE}"})
            assert reply.status_code == 413, reply.text
        # Many small joins nobody collects, with and without the code, each in a session of its
        # own: a few wait (per address), the rest are turned away.
        statuses = []
        for i in range(300):
            headers = {"Authorization": f"Bearer {CODE}"} if i % 2 else {}
            reply = http.post("/queue/join", headers=headers, json={
                "data": ["hello " * 5_000, None], "fn_index": 0, "session_hash": f"s{i}"})
            statuses.append(reply.status_code)
        assert statuses.count(200) <= 16 and statuses.count(503) >= 284, statuses
        after = rss_mb(proc.pid)
        print(f"RSS before {before:.0f} MB, after the flood {after:.0f} MB")
        assert after - before < 40, (before, after)
        assert teacher_fake.chat_requests == []


def test_a_refused_join_keeps_no_message_and_a_join_with_the_code_is_answered(classroom_server, tmp_path):
    room = classroom_server(data_dir=tmp_path, access_code=CODE)
    # Without the code the join is refused at the door: its stream says why, nothing went upstream.
    reply = httpx.post(f"{room.url}/queue/join", timeout=10,
                       json={"data": ["秘密问题", None], "fn_index": 0, "session_hash": "x1"})
    assert reply.status_code == 200
    got = _stream(room.url, "x1")
    assert got[-2]["success"] is False and "访问码" in got[-2]["output"]["error"]
    # A wrong code is refused in the policy's own words.
    reply = httpx.post(f"{room.url}/queue/join", timeout=10, headers={"Authorization": "Bearer wrong-code"},
                       json={"data": ["秘密问题", None], "fn_index": 0, "session_hash": "x2"})
    got = _stream(room.url, "x2")
    assert got[-2]["success"] is False and "访问码" in got[-2]["output"]["error"]
    assert room.fake.chat_requests == []
    # With the code it is answered.
    reply = httpx.post(f"{room.url}/queue/join", timeout=10, headers={"Authorization": f"Bearer {CODE}"},
                       json={"data": ["你好", None], "fn_index": 0, "session_hash": "x3"})
    got = _stream(room.url, "x3")
    assert got[-2]["success"] is True, got
    assert len(room.fake.chat_requests) == 1


def _stream(url, session):
    messages = []
    with httpx.stream("GET", f"{url}/queue/data", params={"session_hash": session}, timeout=10) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                messages.append(json.loads(line[len("data: "):]))
    return messages


# -- 6. malformed gradio ids ---------------------------------------------------------------------
def test_cancel_with_ids_that_are_not_strings_is_a_4xx(classroom_server):
    room = classroom_server(access_code=None)
    for prefix in ("", "/gradio_api"):
        for body in ({"session_hash": ["a"], "event_id": "e"}, {"session_hash": "s", "event_id": {"a": 1}},
                     {"session_hash": {}, "event_id": []}, ["not", "an", "object"]):
            reply = httpx.post(f"{room.url}{prefix}/cancel", json=body, timeout=10)
            assert 400 <= reply.status_code < 500 and "/ " in reply.json()["detail"], (prefix, body, reply.text)
        assert httpx.post(f"{room.url}{prefix}/cancel", timeout=10,
                          json={"session_hash": "s", "event_id": "e"}).json() == {"success": False}


# -- 7. admin bodies -----------------------------------------------------------------------------
def test_admin_body_over_the_limit_is_a_413_and_a_lone_surrogate_a_400(classroom_server, tmp_path):
    room = classroom_server(data_dir=tmp_path, admin_password=PASSWORD)
    http = httpx.Client(base_url=room.url, timeout=20)
    assert http.post("/admin/login", data={"password": PASSWORD}).status_code == 303
    admin = {"X-Xedullm-Admin": "1", "Content-Type": "application/json"}
    huge = json.dumps({"system_prompt": "长" * 5_000_000}).encode()
    reply = http.post("/admin/api/settings", content=huge, headers=admin)
    assert reply.status_code == 413, reply.text
    message = reply.json()["error"]["message"]
    assert "65536" in message and "/ " in message
    for path, body in (("/admin/api/settings", b'{"model": "\\ud800"}'),
                       ("/admin/api/settings", b'{"system_prompt": "a\\udfffb"}'),
                       ("/admin/api/tokens", b'{"name": "\\ud83d"}')):
        reply = http.post(path, content=body, headers=admin)
        assert reply.status_code == 400, (path, body, reply.text)
        assert "/ " in reply.json()["error"]["message"]
    # What was sent before stays as it was; a normal change still works.
    assert http.post("/admin/api/settings", json={"system_prompt": "你是老师。"}, headers=admin).json() == {"ok": True}


# -- 3. guessing tokens and access codes ---------------------------------------------------------
def _admin(url):
    http = httpx.Client(base_url=url, timeout=20)
    assert http.post("/admin/login", data={"password": PASSWORD}).status_code == 303
    http.headers["X-Xedullm-Admin"] = "1"
    return http


def test_wrong_tokens_are_throttled_per_address_with_retry_after_and_alert_the_teacher(classroom_server, tmp_path):
    import secrets
    import time

    from xedullm.server.classroom import student_tokens

    room = classroom_server(data_dir=tmp_path, access_code=CODE, admin_password=PASSWORD)
    admin = _admin(room.url)
    made = admin.post("/admin/api/tokens", json={"name": "小明"}).json()
    assert len(made["token"]) >= 8
    guesser = httpx.Client(base_url=room.url, timeout=20)
    statuses, started = [], time.monotonic()
    for _ in range(300):
        guess = "".join(secrets.choice(student_tokens.ALPHABET) for _ in range(6))
        reply = guesser.get("/v1/usage", headers={"Authorization": f"Bearer {guess}"})
        statuses.append(reply.status_code)
        if reply.status_code == 429:
            assert int(reply.headers["Retry-After"]) >= 1 and "/ " in reply.json()["error"]["message"]
    elapsed = time.monotonic() - started
    checked = statuses.count(401)
    print(f"{len(statuses)} guesses in {elapsed:.1f} s: {checked} checked (401), {statuses.count(429)} refused (429)")
    assert checked <= 11 and statuses.count(429) >= 289, statuses
    # Wrong access codes count the same, on the chat route and the old-client face.
    reply = guesser.post("/v1/chat/completions", headers={"Authorization": "Bearer not-the-code"},
                         json={"messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 429 and "Retry-After" in reply.headers
    # While it waits even the right token is not checked from that address…
    assert guesser.get("/v1/usage", headers={"Authorization": f"Bearer {made['token']}"}).status_code == 429
    # …but another address is not held up by it.
    other = httpx.Client(base_url=room.url, timeout=20, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    assert other.get("/v1/usage", headers={"Authorization": f"Bearer {made['token']}"}).status_code == 200
    assert other.get("/v1/usage", headers={"Authorization": "Bearer abcdefgh"}).status_code == 401
    # The teacher sees the burst.
    found = [a for a in admin.get("/admin/api/overview").json()["alerts"] if a["kind"] == "guessing"]
    assert len(found) == 1 and "127.0.0.1" in found[0]["message"] and "/ " in found[0]["message"]
    assert room.fake.chat_requests == []


# -- 2. per-student limits follow only ids the server issued -----------------------------------------
def _chat(http, headers):
    return http.post("/v1/chat/completions", headers=headers, json={"messages": [{"role": "user", "content": "你好"}]})


def _charged(room):
    """Tokens charged per student (the ledger's ``who``)."""
    rows_written(room.app)
    charged = {}
    for row in room.app.state.xedullm.classroom.store.rows():
        charged[row["who"]] = charged.get(row["who"], 0) + row["charged"]
    return charged


def test_a_fresh_session_header_gets_no_fresh_budget(classroom_server, tmp_path):
    # The reproduction (access code, a per-student budget, a new made-up
    # X-Xedullm-Session on every request), with a budget of a few answers.
    room = classroom_server(data_dir=tmp_path, access_code=CODE, per_student_daily=20, admin_password=PASSWORD)
    http = httpx.Client(base_url=room.url, timeout=20)
    auth = {"Authorization": f"Bearer {CODE}"}
    statuses = [_chat(http, dict(auth, **{"X-Xedullm-Session": f"new-student-{i}"})).status_code for i in range(15)]
    assert statuses[0] == 200 and statuses[-1] == 429, statuses
    charged = _charged(room)
    assert list(charged) == ["code:127.0.0.1"]            # fifteen made-up ids, one student
    assert charged["code:127.0.0.1"] <= 20 + max(u["total_tokens"] for u in room.fake.usage_log)
    # An id signed by another class (another data folder) is not this class's either.
    other = classroom_server(data_dir=tmp_path / "other", access_code=CODE)
    foreign = httpx.post(f"{other.url}/api/browser-id", headers=auth).json()["browser_id"]
    assert _chat(http, dict(auth, **{"X-Xedullm-Session": foreign})).status_code == 429


def test_browser_ids_are_issued_behind_the_door_and_a_few_a_day_per_address(classroom_server, tmp_path):
    room = classroom_server(data_dir=tmp_path, access_code=CODE, per_student_daily=30, admin_password=PASSWORD)
    http = httpx.Client(base_url=room.url, timeout=20)
    auth = {"Authorization": f"Bearer {CODE}"}
    assert http.post("/api/browser-id").status_code == 401                      # no code: no id
    ids = [http.post("/api/browser-id", headers=auth) for _ in range(8)]
    assert [r.status_code for r in ids] == [200] * 5 + [429] * 3
    refused = ids[-1].json()
    assert refused["browser_id"] is None and refused["error"]["code"] == "browser_ids_used_up"
    assert "/ " in refused["error"]["message"]
    issued = [r.json()["browser_id"] for r in ids[:5]]
    assert len(set(issued)) == 5
    # Asking again with an id held gives that id back, past the cap too: a reload costs nothing.
    again = http.post("/api/browser-id", headers=dict(auth, **{"X-Xedullm-Session": issued[0]}))
    assert again.status_code == 200 and again.json()["browser_id"] == issued[0]
    # Each issued id is a student of its own; what a program gains by fetching ids is bounded:
    # five browsers' budgets and the address's own, then nothing.
    for browser in [*issued, None, "made-up"]:
        headers = dict(auth, **({"X-Xedullm-Session": browser} if browser else {}))
        while _chat(http, headers).status_code == 200:
            pass
    charged = _charged(room)
    assert sorted(charged) == sorted(["code:127.0.0.1", *("browser:" + i.split(".")[0] for i in issued)])
    assert all(used <= 30 + max(u["total_tokens"] for u in room.fake.usage_log) for used in charged.values())
    # The teacher is told an address had all its ids (a class behind one NAT looks like this),
    # and can raise the number live.
    admin = _admin(room.url)
    found = [a for a in admin.get("/admin/api/overview").json()["alerts"] if a["kind"] == "browser_ids"]
    assert len(found) == 1 and "127.0.0.1" in found[0]["message"] and "--browser-ids-per-address" in found[0]["message"]
    assert admin.post("/admin/api/settings", json={"browser_ids_per_address": 40}).status_code == 200
    assert http.post("/api/browser-id", headers=auth).status_code == 200
    assert not [a for a in admin.get("/admin/api/overview").json()["alerts"] if a["kind"] == "browser_ids"]


def test_ids_survive_a_restart_and_the_open_server_keeps_none(classroom_server, tmp_path, teacher_fake):
    first = classroom_server(data_dir=tmp_path, per_student_daily=30)
    issued = httpx.post(f"{first.url}/api/browser-id").json()["browser_id"]
    second = classroom_server(data_dir=tmp_path, per_student_daily=30)    # the same class, started again
    assert httpx.post(f"{second.url}/api/browser-id", headers={"X-Xedullm-Session": issued}).json() == {
        "browser_id": issued}
    assert _chat(httpx.Client(base_url=second.url, timeout=20), {"X-Xedullm-Session": issued}).status_code == 200
    rows_written(second.app)
    assert [row["who"] for row in second.app.state.xedullm.classroom.store.rows()] == [
        "browser:" + issued.split(".")[0]]
    # Without classroom controls nothing is counted per student, so nothing is issued.
    assert httpx.post(f"{classroom_server().url}/api/browser-id").json() == {"browser_id": None}


def test_classroom_controls_without_a_store_are_refused_not_silently_off(teacher_fake):
    import pytest

    from xedullm import Client
    from xedullm.errors import ConfigurationError
    from xedullm.server.app import ServerSettings, create_app

    client = Client(provider="deepseek", base_url=teacher_fake.base_url, api_key=TEACHER_KEY, verbose=False)
    with pytest.raises(ConfigurationError) as caught:
        create_app(client, settings=ServerSettings(access_code=CODE))
    assert "data_dir" in str(caught.value) and "access_code" in str(caught.value)
    client.close()


def test_a_batch_cannot_make_tokens_shorter_than_eight(classroom_server, tmp_path):
    from xedullm.server.classroom import student_tokens

    assert student_tokens.NEW_LENGTHS[0] == 8
    room = classroom_server(data_dir=tmp_path, admin_password=PASSWORD)
    made = _admin(room.url).post("/admin/api/tokens/batch", json={"count": 40, "prefix": "t"}).json()
    assert len(made["tokens"]) == 40 and min(len(t["token"]) for t in made["tokens"]) >= 8
    # Years to find one of 500 at the throttled rate from 256 addresses at once.
    per_year = 365 * 24 * 3600 / 900 * 256
    assert len(student_tokens.ALPHABET) ** 8 / 500 / per_year > 1


# -- 4. blocked words: invisible characters and tool fields --------------------------------------
import pytest  # noqa: E402

from test_safety import answer_of, ask, fake, serving, user, words_file  # noqa: E402,F401
from xedullm.server.classroom.blocked_words import MASK, normalise  # noqa: E402

INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\u00ad", "\ufeff", "\ufe0f", "\U000e0062", "\U000e0100"]
CALL = {"id": "c1", "type": "function", "function": {"name": "look", "arguments": "{}"}}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("mark", INVISIBLE)
def test_invisible_characters_do_not_hide_a_blocked_word_in_a_question(fake, words_file, mark, stream):
    with serving(fake, blocked_words=words_file) as url:
        for question in (f"这是坏{mark}词吗", f"看看 bad{mark}wo{mark}rd"):
            response = ask(url, [user(question)], stream)
            assert response.status_code == 400 and response.json()["error"]["code"] == "blocked_word", question
    assert fake.chat_requests == []


@pytest.mark.parametrize("messages, tools", [
    ([user("天气")], [{"type": "function", "function": {"name": "look", "description": "说一个坏词"}}]),
    ([user("天气")], [{"type": "function", "function": {"name": "look", "parameters": {
        "type": "object", "properties": {"q": {"type": "string", "description": "badword here"}}}}}]),
    ([user("天气"), {"role": "assistant", "content": None, "tool_calls": [
        {**CALL, "function": {"name": "look", "arguments": '{"q": "坏\u200b词"}'}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "晴"}], None),
    ([user("天气"), {"role": "assistant", "content": None, "tool_calls": [
        {**CALL, "function": {"name": "look", "arguments": '{"q": "\\u574f\\u8bcd"}'}}]},   # \u-escaped 坏词
      {"role": "tool", "tool_call_id": "c1", "content": "晴"}], None),
    ([user("天气"), {"role": "assistant", "content": None, "tool_calls": [CALL]},
      {"role": "tool", "tool_call_id": "c1", "content": "结果：bad\u2060word"}], None),
])
def test_tool_descriptions_arguments_and_results_are_checked_too(fake, words_file, messages, tools):
    body = {"messages": messages, **({"tools": tools} if tools else {})}
    with serving(fake, blocked_words=words_file) as url:
        response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=20)
        assert response.status_code == 400 and response.json()["error"]["code"] == "blocked_word", response.text
    assert fake.chat_requests == []


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_with_invisible_characters_inside_a_word_is_masked(fake, words_file, stream):
    fake.reply = lambda messages: "前面坏\u200b\u200b\u200b词后面，还有 b\u00ada\ufeffd\u2060w\u200dor\U000e0041d 结束"
    fake.token_delay = 0.02
    with serving(fake, blocked_words=words_file) as url:
        response = ask(url, [user("你好")], stream)
        assert response.status_code == 200
        text, _ = answer_of(response, stream)
    flat = normalise(text)[0]
    assert "坏词" not in flat and "badword" not in flat, repr(text)
    assert text.startswith("前面" + MASK) and text.endswith(" 结束") and "后面，还有" in text


# -- 5. early leavers are charged ---------------------------------------------------------------
from conftest import wait_until  # noqa: E402
from test_gradio_interop import ledger_rows  # noqa: E402
from xedullm.testing import Fault  # noqa: E402


def _leave_after(url, body, frames, patience=1.0):
    """Stream ``body``, read ``frames`` data frames (0: none) or until the stream is silent for
    ``patience`` seconds, then hang up."""
    seen = 0
    with httpx.Client(timeout=httpx.Timeout(20, read=patience)) as http:
        with http.stream("POST", f"{url}/v1/chat/completions", json=body,
                         headers={"Authorization": f"Bearer {CODE}"}) as reply:
            if frames:
                try:
                    for line in reply.iter_lines():
                        if line.startswith("data: "):
                            seen += 1
                            if seen >= frames:
                                break
                except httpx.ReadTimeout:
                    pass
    return seen


def test_a_student_who_leaves_before_the_provider_answers_is_charged_the_prompt(classroom_server, tmp_path):
    room = classroom_server(data_dir=tmp_path, access_code=CODE, admin_password=PASSWORD)
    prompt = "长" * 20_000
    for _ in range(3):
        room.fake.faults.append(Fault.stall(30))
        try:
            _leave_after(room.url, {"messages": [user(prompt)], "stream": True}, 0)
        except httpx.ReadTimeout:
            pass   # the provider is still silent: the student gives up
    wait_until(lambda: len(room.fake.chat_requests) == 3)
    wait_until(lambda: len(ledger_rows(room)) == 3)
    rows = ledger_rows(room)
    assert [r["outcome"] for r in rows] == ["disconnected"] * 3
    assert all(r["charged"] >= 20_000 and r["total_tokens"] is None for r in rows), rows
    export = _admin(room.url).get("/admin/api/export.csv").text.splitlines()
    assert export[0].rstrip().endswith(",estimated") and all(line.rstrip().endswith(",yes") for line in export[1:])


def test_a_student_who_leaves_during_the_reasoning_is_charged_it(classroom_server, tmp_path):
    room = classroom_server(data_dir=tmp_path, access_code=CODE, model="deepseek-reasoner")
    room.fake.faults.append(Fault.stall_between(30, after=40))
    room.fake.token_delay = 0.02   # paced: pieces that arrive together are joined into one frame
    question = "为什么天空是蓝色的？" * 20
    seen = _leave_after(room.url, {"messages": [user(question)], "stream": True}, 30, patience=8.0)
    print("frames seen", seen)
    assert seen >= 5
    wait_until(lambda: len(ledger_rows(room)) == 1)
    row = ledger_rows(room)[0]
    assert row["outcome"] == "disconnected" and row["total_tokens"] is None
    # The prompt, plus the reasoning that reached the student (the fake's pieces: 4 characters).
    assert row["charged"] >= len(question) + 4 * (seen - 2), row
