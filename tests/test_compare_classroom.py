"""Compare mode in the classroom (issue 19): ``xedullm serve --compare …`` for real.

Two fake providers with different answers sit behind our server; each compare column is one
``/v1/chat/completions`` request with ``model`` set to the column's id, through the same
policy, budget and ledger as any question. The page's side-by-side view and the admin page's
preset picker run in headless Chromium.
"""
from __future__ import annotations

import contextlib
import json

import httpx
import pytest

from xedullm.server.store.sqlite import SQLiteStore
from xedullm.testing import FakeOpenAIServer

from conftest import serve_process

ANSWER_A = "甲：深度求索这样回答。"
ANSWER_B = "乙：月之暗面这样回答。"


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
    return httpx.post(f"{url}/v1/chat/completions", timeout=30, headers={"x-xedullm-session": session},
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
        first, second = ask(url, "compare:deepseek"), ask(url, "compare:moonshot")
        assert first.status_code == second.status_code == 200
        assert streamed_text(first) == ANSWER_A and streamed_text(second) == ANSWER_B
        # Each provider got exactly its own column's request, with its own model.
        assert [r["json"]["model"] for r in a.chat_requests] == ["model-a"]
        assert [r["json"]["model"] for r in b.chat_requests] == ["model-b"]
        used = httpx.get(f"{url}/v1/usage", headers={"x-xedullm-session": "s1"}).json()["used_tokens"]
    store = SQLiteStore(tmp_path)
    try:
        rows = list(store.rows())
    finally:
        store.close()
    assert [(r["model"], r["outcome"], r["who"]) for r in rows] == [
        ("model-a", "ok", "browser:s1"), ("model-b", "ok", "browser:s1")]
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
