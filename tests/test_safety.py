"""Safety for minors, for real: our server on 127.0.0.1 in front of a fake provider, with the
teacher's blocked words (``--blocked-words FILE``, ``--builtin-blocked-words``). A question with
one never reaches the model; an answer with one reaches the student masked (streamed answers
too, a word split across the fake's 4-character pieces included); the provider's own moderation
reaches the student as a kind message; the teacher sees all of it flagged, by student name.
"""
from __future__ import annotations

import contextlib
import json
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import expect

from xedullm import Client
from xedullm.errors import ConfigurationError
from xedullm.server.app import ServerSettings, create_app
from xedullm.server.classroom.blocked_words import MASK, normalise
from xedullm.testing import Fault, FakeOpenAIServer, ServerThread

from conftest import TEACHER_KEY, browser_headers
from test_admin_page import PASSWORD, teacher
from test_gradio_interop import join, queue_messages
from test_web_page import new_context

WORDS = "# 老师的屏蔽词\n坏词\nbadword\n"


@pytest.fixture
def words_file(tmp_path):
    path = tmp_path / "blocked.txt"
    path.write_text(WORDS, "utf-8")
    return str(path)


@contextlib.contextmanager
def serving(fake, **settings):
    client = Client(provider="deepseek", base_url=fake.base_url, api_key=TEACHER_KEY, timeout=10, max_retries=0,
                    verbose=False)
    app = create_app(client, settings=ServerSettings(**settings))
    try:
        with ServerThread(app) as server:
            yield server.url
    finally:
        if app.state.xedullm.classroom is not None:
            app.state.xedullm.classroom.close()
        client.close()


@pytest.fixture
def fake():
    with FakeOpenAIServer(flavor="deepseek", api_key=TEACHER_KEY) as server:
        yield server


def ask(url, messages, stream, name=None, session="s-1"):
    headers = browser_headers(url, session)
    if name:
        headers["X-XEduLLM-Name"] = quote(name)
    body = {"messages": messages, "stream": stream}
    if not stream:
        return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=20)
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=20) as response:
        response.read()
        return response


def answer_of(response, stream):
    """(text the student got, the frames' JSON) of a reply."""
    if not stream:
        body = response.json()
        return body["choices"][0]["message"]["content"], [body]
    frames = [json.loads(line[6:]) for line in response.text.splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    text = "".join((f["choices"][0]["delta"].get("content") or "") for f in frames if f.get("choices"))
    return text, frames


def user(text):
    return {"role": "user", "content": text}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("question", [
    [user("这是坏词吗")],
    [user("这是坏 词吗")],                       # spaced
    [user("什么是ＢＡＤ ＷＯＲＤ？")],             # full width, upper case, spaced
    [user("这是坏词"), {"role": "assistant", "content": "嗯"}, user("继续")],   # an earlier turn
    [{"role": "user", "content": [{"type": "text", "text": "看看 badword"}]}],  # content parts
])
def test_a_question_with_a_blocked_word_never_reaches_the_model(fake, words_file, question, stream):
    with serving(fake, blocked_words=words_file) as url:
        response = ask(url, question, stream)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "blocked_word"
        assert "没有发给大模型" in error["message"] and "not sent to the model" in error["message"]
        assert fake.chat_requests == []
        # A clean question still goes through.
        assert ask(url, [user("你好")], stream).status_code == 200
        assert len(fake.chat_requests) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_a_blocked_word_in_the_answer_is_masked_even_split_across_chunks(fake, words_file, stream):
    # The fake streams 4-character pieces: "前面的坏" + "词后面的" splits 坏词 in two; the
    # full-width, spaced ＢＡＤ ｗｏｒｄ spans pieces too.
    fake.reply = lambda messages: "前面的坏词后面的话，还有ＢＡＤ ｗｏｒｄ和 bad word 结束"
    # Paced, so that each piece arrives on its own: pieces that arrive together are joined
    # (engines/http.py), and the frame count below is about what the masker holds back.
    fake.token_delay = 0.02
    with serving(fake, blocked_words=words_file) as url:
        response = ask(url, [user("你好")], stream)
        assert response.status_code == 200
        text, frames = answer_of(response, stream)
    flat = normalise(text)[0]
    assert "坏词" not in flat and "badword" not in flat
    assert text.startswith("前面的" + MASK * 2 + "后面的话，还有")
    assert text.endswith("和 " + MASK * 8 + " 结束")
    assert text.count(MASK) == 2 + len("ＢＡＤ ｗｏｒｄ") + len("bad word")
    if stream:
        # Held back just enough: the answer still came in several frames, not at once at the end.
        assert sum(1 for f in frames if f.get("choices") and f["choices"][0]["delta"].get("content")) > 3


@pytest.mark.parametrize("stream", [False, True])
def test_the_builtin_list_works_without_a_file(fake, stream):
    fake.reply = "有人说 FUCK 这不好"
    with serving(fake, builtin_blocked_words=True) as url:
        assert ask(url, [user("色情是什么")], stream).json()["error"]["code"] == "blocked_word"
        text, _ = answer_of(ask(url, [user("你好")], stream), stream)
    assert text == "有人说 " + MASK * 4 + " 这不好"


def test_an_unreadable_word_list_stops_the_start_with_a_clear_message(fake, tmp_path):
    bad = tmp_path / "gbk.txt"
    bad.write_bytes("坏词".encode("gbk"))
    client = Client(provider="deepseek", base_url=fake.base_url, api_key=TEACHER_KEY, verbose=False)
    for path in (str(bad), str(tmp_path / "missing.txt")):
        with pytest.raises(ConfigurationError) as caught:
            create_app(client, settings=ServerSettings(blocked_words=path))
        assert "屏蔽词文件" in str(caught.value) and "UTF-8" in str(caught.value)


def test_the_teacher_sees_flagged_questions_and_answers_by_name(fake, words_file, tmp_path):
    fake.reply = lambda messages: ("坏词就在这里" if "讲讲" in messages[-1]["content"] else "好的")
    with serving(fake, blocked_words=words_file, data_dir=str(tmp_path / "data"), admin_password=PASSWORD) as url:
        assert ask(url, [user("坏词")], True, name="张三", session="s-a").status_code == 400
        assert ask(url, [user("讲讲")], False, name="李四", session="s-b").status_code == 200
        assert ask(url, [user("你好")], True, name="王五", session="s-c").status_code == 200
        with contextlib.closing(teacher(url)) as http:
            data = http.get("/admin/api/overview").json()
            csv_text = http.get("/admin/api/export.csv").text
    flagged = data["flagged"]
    assert flagged["count"] == 2
    assert sorted((s["name"], s["count"]) for s in flagged["students"]) == [("张三", 1), ("李四", 1)]
    assert [(r["name"], r["outcome"]) for r in flagged["recent"]] == [("李四", "ok"), ("张三", "flagged")]
    assert len(fake.chat_requests) == 2   # 张三's question never went upstream
    assert "flagged" in csv_text.splitlines()[0]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("code", ["DataInspectionFailed", "1301"])
def test_the_providers_moderation_reaches_the_student_kindly_and_the_teacher_flagged(fake, tmp_path, code,
                                                                                     stream):
    fake.faults.append(Fault.error_frame(after=1 if stream else 0, code=code, message="Output data may contain "
                                                                                      "inappropriate content."))
    with serving(fake, data_dir=str(tmp_path), admin_password=PASSWORD) as url:
        response = ask(url, [user("你好")], stream, name="赵六")
        if stream:
            error = next(f for f in answer_of(response, True)[1] if "error" in f)["error"]
        else:
            assert response.status_code == 400
            error = response.json()["error"]
        assert error["code"] == "content_filter"
        assert "安全审核" in error["message"] and "ask your teacher" in error["message"]
        assert "inappropriate" not in error["message"]   # the provider's words stay in the teacher's log
        with contextlib.closing(teacher(url)) as http:
            flagged = http.get("/admin/api/overview").json()["flagged"]
    assert flagged["count"] == 1 and flagged["students"][0]["name"] == "赵六"
    assert flagged["recent"][0]["outcome"] == "content_filter"


def test_the_admin_page_shows_the_flagged_count_and_who(fake, words_file, tmp_path, browser):
    with serving(fake, blocked_words=words_file, data_dir=str(tmp_path), admin_password=PASSWORD) as url:
        assert ask(url, [user("坏词")], True, name="张三").status_code == 400
        context = new_context(browser)
        try:
            page = context.new_page()
            page.goto(url + "/admin")
            page.locator("input[type=password]").fill(PASSWORD)
            page.locator("input[type=password]").press("Enter")
            expect(page.locator("#t-flagged")).to_have_text("1")
            expect(page.locator("#flagged tbody tr")).to_have_count(1)
            expect(page.locator("#flagged tbody")).to_contain_text("张三")
            expect(page.locator("#flagged tbody")).to_contain_text("提问被拒绝 / question refused")
            # (The login page itself answers 401, so only script errors and CSP are checked.)
            assert context.watch.errors == [] and context.watch.csp_violations() == []
        finally:
            context.close()


def test_the_old_xedu_client_face_gets_the_same_treatment(fake, words_file):
    """/queue/join (the Gradio face of the old XEdu student client) goes through the same ChatCall."""
    fake.reply = "前面的坏词后面"
    with serving(fake, blocked_words=words_file) as url:
        join(url, "坏 词是什么", "s1")
        refused = next(m for m in queue_messages(url, "s1") if m["msg"] == "process_completed")
        assert refused["success"] is False and "没有发给大模型" in refused["output"]["error"]
        assert fake.chat_requests == []
        join(url, "你好", "s1")
        done = next(m for m in queue_messages(url, "s1") if m["msg"] == "process_completed")
    assert done["success"] is True and done["output"]["data"][0] == "前面的" + MASK * 2 + "后面"
