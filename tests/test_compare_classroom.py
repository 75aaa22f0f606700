"""Compare mode in the classroom (issue 19): ``xedullm serve --compare …`` for real.

Two fake providers with different answers sit behind our server; each compare column is one
``/v1/chat/completions`` request with ``model`` set to the column's id, through the same
policy, budget and ledger as any question. The page's side-by-side view and the admin page's
preset picker run in headless Chromium.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

import httpx
import pytest
from playwright.sync_api import expect

import xedullm
from xedullm import Client
from xedullm.server.app import ServerSettings, create_app
from xedullm.server.store.sqlite import SQLiteStore
from xedullm.testing import Fault, FakeOpenAIServer, ServerThread

from conftest import ROOT, browser_headers, browser_who, open_admin, serve_process
from test_web_page import new_context, save_screenshot

ANSWER_A = "甲：深度求索这样回答。"
ANSWER_B = "乙：月之暗面这样回答。"
ADMIN_PASSWORD = "teacher-compare-1357"


@pytest.fixture
def fakes():
    # api_key=None: the fakes take any key (ours come from the environment).
    with FakeOpenAIServer(flavor="deepseek", api_key=None, models=["deepseek-chat", "model-a"],
                          reply=ANSWER_A) as a, \
            FakeOpenAIServer(flavor="openai", api_key=None, models=["model-b"], reply=ANSWER_B) as b:
        yield a, b


def compare_spec(a, b) -> str:
    return f"deepseek:model-a@{a.base_url},moonshot:model-b@{b.base_url}"


@contextlib.contextmanager
def compare_server(fakes, data_dir, *extra, compare=True):
    a, b = fakes
    args = ["-p", "deepseek", "--base-url", a.base_url, "--host", "127.0.0.1", "--port", "0",
            "--data-dir", str(data_dir), *extra]
    if compare:
        args += ["--compare", compare_spec(a, b)]
    env = {"DEEPSEEK_API_KEY": "sk-compare-deepseek-111", "MOONSHOT_API_KEY": "sk-compare-moonshot-222"}
    with serve_process(args, env, until="用量记录保存在") as (proc, lines):
        url = next(line for line in lines if line.startswith("Running on local URL:")).split()[-1]
        yield url
        proc.send_signal(2)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        for key in env.values():
            assert key not in err and key not in "".join(lines)


def ask(url, model, session="s1", question="比较一下"):
    return httpx.post(f"{url}/v1/chat/completions", timeout=30, headers=browser_headers(url, session),
                      json={"model": model, "stream": True, "messages": [{"role": "user", "content": question}]})


def streamed_text(response) -> str:
    text = []
    for line in response.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            for choice in json.loads(line[6:]).get("choices", []):
                text.append(choice.get("delta", {}).get("content") or "")
    return "".join(text)


def test_each_column_is_answered_by_its_provider_and_written_to_the_ledger(fakes, tmp_path):
    a, b = fakes
    with compare_server(fakes, tmp_path) as url:
        info = httpx.get(f"{url}/api/info").json()
        assert info["compare"] == [
            {"id": "compare:deepseek", "label": "幻方-深度求索", "model": "model-a"},
            {"id": "compare:moonshot", "label": "月之暗面-Kimi", "model": "model-b"},
        ]
        listed = [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]]
        assert listed == ["deepseek-chat", "compare:deepseek", "compare:moonshot"]
        assert httpx.get(f"{url}/v1/models/compare:moonshot").status_code == 200
        first, second = ask(url, "compare:deepseek"), ask(url, "compare:moonshot")
        assert first.status_code == second.status_code == 200
        assert streamed_text(first) == ANSWER_A and streamed_text(second) == ANSWER_B
        # Each provider got exactly its own column's request, with its own model.
        assert [r["json"]["model"] for r in a.chat_requests] == ["model-a"]
        assert [r["json"]["model"] for r in b.chat_requests] == ["model-b"]
        used = httpx.get(f"{url}/v1/usage", headers=browser_headers(url, "s1")).json()["used_tokens"]
        s1 = browser_who(url, "s1")
    store = SQLiteStore(tmp_path)
    try:
        rows = list(store.rows())
    finally:
        store.close()
    assert [(r["model"], r["outcome"], r["who"]) for r in rows] == [
        ("model-a", "ok", s1), ("model-b", "ok", s1)]
    # The student's usage today is both columns' answers.
    assert used == sum(r["total_tokens"] for r in rows) and all(r["total_tokens"] > 0 for r in rows)


def test_the_budget_counts_every_column(fakes, tmp_path):
    a, b = fakes
    # One answer uses more than 1 token, so after the first column this student's day is over.
    with compare_server(fakes, tmp_path, "--per-student-daily", "1") as url:
        assert ask(url, "compare:deepseek").status_code == 200
        refused = ask(url, "compare:moonshot")
        assert refused.status_code == 429
        assert "额度" in refused.json()["error"]["message"]
        assert b.chat_requests == []   # never sent upstream
        # Another student still has their own budget, on either column.
        assert streamed_text(ask(url, "compare:moonshot", session="s2")) == ANSWER_B


def test_unknown_compare_id_is_refused_clearly(fakes, tmp_path):
    a, b = fakes
    with compare_server(fakes, tmp_path) as url:
        reply = ask(url, "compare:glm")
        assert reply.status_code == 400
        error = reply.json()["error"]
        assert error["param"] == "model"
        assert "compare:glm" in error["message"] and "compare:deepseek, compare:moonshot" in error["message"]
        # An ordinary model name is still the teacher's choice, as before compare mode.
        assert streamed_text(ask(url, "gpt-4o")) == ANSWER_A
    assert len(a.chat_requests) == 1 and b.chat_requests == []


def test_a_compare_id_does_nothing_when_compare_mode_is_off(fakes, tmp_path):
    a, b = fakes
    with compare_server(fakes, tmp_path, compare=False) as url:
        assert "compare" not in httpx.get(f"{url}/api/info").json()
        reply = ask(url, "compare:moonshot")
        assert reply.status_code == 400
        message = reply.json()["error"]["message"]
        assert "没有开启多模型对比" in message and "--compare" in message
    assert a.chat_requests == [] and b.chat_requests == []


# ---- the page, in headless Chromium ------------------------------------------------------------

LONG_A = "甲：" + "深度求索一步一步地讲。" * 6
LONG_B = "乙：" + "月之暗面换一个角度讲。" * 6
CODE_B = "print('乙')"


@contextlib.contextmanager
def compare_page_server(fakes, data_dir, **settings):
    """Our server (create_app, as `serve --compare` builds it) in front of both fakes."""
    a, b = fakes
    made = [Client(provider="deepseek", base_url=a.base_url, api_key="sk-page-a", timeout=10,
                   max_retries=0, verbose=False),
            Client(provider="deepseek", model="model-a", base_url=a.base_url, api_key="sk-page-a",
                   timeout=10, max_retries=0, verbose=False),
            Client(provider="moonshot", model="model-b", base_url=b.base_url, api_key="sk-page-b",
                   timeout=10, max_retries=0, verbose=False)]
    teacher, *columns = made
    app = create_app(teacher, settings=ServerSettings(data_dir=data_dir, compare_clients=tuple(columns),
                                                      **settings))
    try:
        with ServerThread(app) as server:
            yield server.url, app
    finally:
        app.state.xedullm.classroom.close()
        for client in made:
            client.close()


def column(page, column_id):
    return page.locator(f'.compare-column[data-column="{column_id}"]')


def test_the_compare_view_streams_each_model_into_its_own_column(browser, fakes, tmp_path):
    a, b = fakes
    a.reply, b.reply = LONG_A, f"{LONG_B}\n\n```python\n{CODE_B}\n```"
    a.token_delay = b.token_delay = 0.05
    with compare_page_server(fakes, tmp_path) as (url, app):
        ctx = new_context(browser, viewport={"width": 1100, "height": 700})
        try:
            page = ctx.new_page()
            page.goto(url)
            toggle = page.locator("#compare-toggle")
            expect(toggle).to_have_text("并排对比 / Compare")
            expect(page.locator("#compare")).to_be_hidden()
            toggle.click()
            expect(page.locator("#compare")).to_be_visible()
            expect(page.locator("#composer")).to_be_hidden()   # the chat steps aside
            expect(page.locator(".compare-column h3")).to_have_text(["幻方-深度求索model-a", "月之暗面-Kimimodel-b"])
            page.locator("#compare-input").fill("讲讲光合作用")
            page.locator("#compare-input").press("Enter")
            first, second = column(page, "compare:deepseek"), column(page, "compare:moonshot")
            # Text arrives in each column while the answers stream…
            expect(first.locator(".compare-answer")).to_contain_text("甲：深度求索")
            expect(second.locator(".compare-answer")).to_contain_text("乙：月之暗面")
            # …and each ends with its own model's whole answer, none of the other's. (Waited for
            # first: mid-stream, a code fence not yet complete is rightly a paragraph of its own.)
            expect(first.locator(".compare-status")).to_contain_text("完成")
            expect(second.locator(".compare-status")).to_contain_text("完成")
            expect(first.locator(".compare-answer")).to_have_text(LONG_A)
            expect(second.locator(".compare-answer p")).to_have_text(LONG_B)
            # Markdown as in the chat: a highlighted code block with a labelled copy button.
            expect(second.locator(".compare-answer .code-block code")).to_have_text(CODE_B)
            expect(second.locator(".compare-answer .copy-code")).to_have_text("复制")
            expect(first.locator(".code-block")).to_have_count(0)
            left, right = first.bounding_box(), second.bounding_box()
            assert abs(left["y"] - right["y"]) < 1 and right["x"] >= left["x"] + left["width"]  # side by side
            save_screenshot(page, "compare-view.png")
            # Both questions went upstream once each, as the student's question with the column's model.
            assert [r["json"]["model"] for r in a.chat_requests] == ["model-a"]
            assert [r["json"]["model"] for r in b.chat_requests] == ["model-b"]
            assert a.chat_requests[0]["json"]["messages"][-1]["content"] == "讲讲光合作用"
            page.set_viewport_size({"width": 390, "height": 844})
            top, bottom = first.bounding_box(), second.bounding_box()
            assert abs(top["x"] - bottom["x"]) < 1 and bottom["y"] >= top["y"] + top["height"]  # stacked
            assert top["x"] + top["width"] <= 390
            box = toggle.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390   # the header fits the phone too
            save_screenshot(page, "compare-phone.png")
            toggle.click()
            expect(page.locator("#composer")).to_be_visible()
            ctx.watch.assert_clean()
            html = page.content()
            assert "sk-page-a" not in html and "sk-page-b" not in html
        finally:
            ctx.close()


def test_the_preset_picker_fills_the_system_prompt_and_saving_changes_what_every_model_receives(
        browser, fakes, tmp_path):
    a, b = fakes
    socratic = next(p for p in xedullm.presets() if p.id == "socratic")
    with compare_page_server(fakes, tmp_path, admin_password=ADMIN_PASSWORD) as (url, app):
        ctx = new_context(browser, viewport={"width": 1200, "height": 900})
        try:
            page = open_admin(ctx, url, ADMIN_PASSWORD)
            picker = page.locator("#preset")
            # Every preset is offered, by its Chinese and English names.
            expect(picker.locator("option")).to_have_count(len(xedullm.presets()) + 1)
            expect(picker).to_contain_text("苏格拉底式导师")
            picker.select_option("socratic")
            expect(page.locator("#system")).to_have_value(socratic.text)
            expect(page.locator("#preset-description")).to_have_text(socratic.description)
            save_screenshot(page, "preset-picker.png", page.locator("#settings"))
            # Picking is not saving: students still get the old (empty) system prompt.
            assert app.state.xedullm.live.get("system_prompt") is None
            page.click("#settings button[type=submit]")
            expect(page.locator("#settings-status")).to_contain_text("已保存")
            # (The login page itself answers 401, so only script errors and CSP are checked here.)
            assert ctx.watch.errors == [] and ctx.watch.csp_violations() == []
        finally:
            ctx.close()
        assert streamed_text(ask(url, None, question="为什么天是蓝的")) == ANSWER_A
        assert streamed_text(ask(url, "compare:moonshot", question="为什么天是蓝的")) == ANSWER_B
    # The teacher's model and a compare column both got the preset first, then the question.
    for fake in (a, b):
        sent = fake.chat_requests[-1]["json"]["messages"]
        assert sent == [{"role": "system", "content": socratic.text}, {"role": "user", "content": "为什么天是蓝的"}]


def test_a_compare_model_without_a_key_stops_the_start_naming_it(fakes, tmp_path):
    a, _ = fakes
    env = dict(os.environ, PYTHONPATH=str(ROOT), DEEPSEEK_API_KEY="sk-compare-deepseek-111",
               XEDULLM_HOME=str(tmp_path))
    for name in ("ZHIPUAI_API_KEY", "GLM_API_KEY"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-m", "xedullm", "serve", "-p", "deepseek", "--base-url", a.base_url,
                           "--host", "127.0.0.1", "--port", "0", "--data-dir", str(tmp_path),
                           "--compare", f"deepseek@{a.base_url},glm"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert done.returncode != 0
    assert "对比模型 'glm'（--compare）" in done.stderr and "ZHIPUAI_API_KEY" in done.stderr
    assert "sk-compare-deepseek-111" not in done.stdout + done.stderr


def test_the_per_student_cap_on_running_answers_counts_every_column(fakes, tmp_path):
    a, b = fakes
    a.faults.append(Fault(pause=(60.0, 1)))   # the first column keeps streaming
    with compare_page_server(fakes, tmp_path, max_per_caller=1) as (url, app):
        body = {"model": "compare:deepseek", "stream": True, "messages": [{"role": "user", "content": "慢慢讲"}]}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30,
                          headers=browser_headers(url, "s1")) as running:
            assert running.status_code == 200
            lines = running.iter_lines()   # kept: a dropped iterator would close the stream
            assert "甲" in next(lines)      # its answer has begun
            busy = ask(url, "compare:moonshot")
            assert busy.status_code == 429 and "个回答在进行" in busy.json()["error"]["message"]
            assert b.chat_requests == []
            # Another student is not held up by this one's columns.
            assert streamed_text(ask(url, "compare:moonshot", session="s2")) == ANSWER_B
