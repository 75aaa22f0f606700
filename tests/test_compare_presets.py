"""Comparing models side by side, and classroom prompt presets — library, CLI and `serve`."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import httpx
import pytest

import xedullm
from xedullm import APIConnectionError, Client, ConfigurationError, compare, compare_stream
from xedullm.testing import FakeOpenAIServer

from conftest import ROOT, serve_process

QUESTION = "为什么天是蓝的"
ANSWER = "你好！你刚才说：" + QUESTION


@pytest.fixture(scope="module")
def fakes():
    with FakeOpenAIServer(flavor="deepseek", api_key=None, token_delay=0.005) as one, \
            FakeOpenAIServer(flavor="moonshot", api_key=None) as two:
        yield one, two


def _down_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def _clients(fakes):
    one, two = fakes
    make = lambda provider, url: Client(provider=provider, base_url=url, api_key="sk-test-compare",  # noqa: E731
                                        max_retries=0, timeout=5, verbose=False)
    return [make("deepseek", one.base_url), make("glm", _down_url()), make("moonshot", two.base_url)]


def test_compare_returns_every_answer_in_order_and_reports_a_failure(fakes):
    results = compare(QUESTION, _clients(fakes))
    assert [r.label for r in results] == ["deepseek", "glm", "moonshot"]
    first, failed, third = results
    assert first.answer == third.answer == ANSWER and first.error is None and third.error is None
    assert isinstance(failed.error, APIConnectionError) and failed.answer == ""
    assert first.usage.total_tokens > 0 and first.seconds > 0 and first.model == "deepseek-chat"


def test_compare_stream_interleaves_pieces_and_ends_each_answer_once(fakes):
    texts = {0: "", 1: "", 2: ""}
    done = []
    for piece in compare_stream(QUESTION, _clients(fakes)):
        if piece.done:
            done.append((piece.index, type(piece.error).__name__ if piece.error else None))
        else:
            texts[piece.index] += piece.text
    assert sorted(done) == [(0, None), (1, "APIConnectionError"), (2, None)]
    assert texts == {0: ANSWER, 1: "", 2: ANSWER}


def test_two_clients_of_one_provider_are_told_apart_by_model(fakes):
    one, _ = fakes
    a = Client(provider="deepseek", base_url=one.base_url, api_key="k-test", verbose=False)
    b = Client(provider="deepseek", base_url=one.base_url, api_key="k-test", model="deepseek-reasoner", verbose=False)
    assert [r.label for r in compare(QUESTION, [a, b])] == ["deepseek · deepseek-chat", "deepseek · deepseek-reasoner"]
    with pytest.raises(ConfigurationError):
        compare(QUESTION, [])


def test_the_compare_command_prints_each_answer_with_time_and_tokens(fakes):
    one, two = fakes
    env = dict(os.environ, PYTHONPATH=str(ROOT), DEEPSEEK_API_KEY="sk-test-a", MOONSHOT_API_KEY="sk-test-b",
               XEDULLM_KEYRING="0")
    done = subprocess.run([sys.executable, "-m", "xedullm", "compare", QUESTION,
                           "-p", f"deepseek@{one.base_url}", "-p", f"moonshot:kimi-latest@{two.base_url}"],
                          capture_output=True, text=True, encoding="utf-8", env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count(ANSWER) == 2 and "== deepseek" in out and "== moonshot" in out and "tokens" in out
    assert "sk-test-a" not in out + done.stderr


def test_at_least_eight_bilingual_presets():
    found = xedullm.presets()
    assert len(found) >= 8 and len({p.id for p in found}) == len(found)
    for preset in found:
        assert preset.name_zh and preset.name_en and preset.text and " / " in preset.description
    names = {p.name_zh for p in found}
    assert {"夸夸怪", "苏格拉底式导师", "作文批改", "英语口语陪练", "小学数学讲解", "科学实验助手",
            "CO-STAR 写作框架", "古诗词赏析"} <= names


def test_use_preset_changes_what_the_model_receives(fakes):
    one, _ = fakes
    one.reset()
    client = Client(provider="deepseek", base_url=one.base_url, api_key="k-test", verbose=False)
    for name in ("socratic", "苏格拉底式导师", "Socratic Tutor"):
        assert client.use_preset(name).id == "socratic"
    client.inference(QUESTION)
    sent = one.chat_requests[-1]["json"]["messages"]
    assert sent[0]["role"] == "system" and sent[0]["content"] == client.system_prompt
    assert "苏格拉底" in sent[0]["content"]
    with pytest.raises(ConfigurationError) as caught:
        client.use_preset("夸夸")
    assert "夸夸怪" in str(caught.value)  # did you mean


def test_serve_preset_changes_what_the_model_receives(fakes, tmp_path):
    one, _ = fakes
    one.reset()
    args = ["-p", "deepseek", "--base-url", one.base_url, "--host", "127.0.0.1", "--port", "0",
            "--data-dir", str(tmp_path), "--preset", "夸夸怪"]
    with serve_process(args, {"DEEPSEEK_API_KEY": "sk-test-serve", "XEDULLM_HOME": str(tmp_path)},
                       until="Running on local URL") as (proc, lines):
        url = lines[-1].split()[-1]
        info = httpx.get(f"{url}/api/info").json()
        assert "夸夸怪" in info["system_prompt"]
        httpx.post(f"{url}/v1/chat/completions", timeout=20,
                   json={"messages": [{"role": "user", "content": QUESTION}]}).raise_for_status()
    assert "夸夸怪" in one.chat_requests[-1]["json"]["messages"][0]["content"]
