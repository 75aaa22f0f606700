"""Programs nobody here wrote, talking to `xedullm serve` as students' code does: the openai SDK,
langchain-openai and LiteLLM, each from its own venv (scripts/client-venvs.sh), each as a
subprocess (tests/clients/*.py) against the real server in front of the DeepSeek fake, with
the class's access code. A venv that cannot be made fails these tests; nothing is skipped."""
from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from xedullm.testing import FakeOpenAIServer

from conftest import TEACHER_KEY, serve_process

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "tests" / "clients"
CODE = "math42"
WEATHER_ARGS = {"city": "示例", "days": 1}          # the fake's example of WEATHER's parameters
PUPIL = {"name": "示例", "grade": 1}


@pytest.fixture(scope="module")
def venvs():
    made = subprocess.run(["bash", str(ROOT / "scripts" / "client-venvs.sh")], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.fail("scripts/client-venvs.sh could not make the client venvs:\n" + made.stderr[-3000:])
    return Path(made.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(our server's /v1 URL, the fake behind it): `xedullm serve` with an access code."""
    with FakeOpenAIServer(flavor="deepseek", api_key=TEACHER_KEY) as fake:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        args = ["-p", "deepseek", "--base-url", fake.base_url, "--host", "127.0.0.1", "--port", str(port),
                "--access-code", CODE, "--data-dir", str(tmp_path_factory.mktemp("classroom"))]
        with serve_process(args, {"DEEPSEEK_API_KEY": TEACHER_KEY}, until="Running on local URL:") as (_, lines):
            yield lines[-1].split()[-1] + "/v1", fake


def run_client(venvs, venv, script, url):
    python = venvs / venv / "bin" / "python"
    # No xedullm on the path: these are other people's programs.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OPENAI_API_KEY", "OPENAI_BASE_URL")}
    done = subprocess.run([str(python), str(SCRIPTS / script), url, CODE], capture_output=True, text=True,
                          cwd=SCRIPTS, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def upstream_since(fake, count):
    return [r["json"] for r in fake.chat_requests[count:]]


def test_openai_sdk_tool_calls_json_mode_and_parse(venvs, served):
    url, fake = served
    before = len(fake.chat_requests)
    got = run_client(venvs, "openai", "openai_sdk.py", url)
    assert got["tool_call"] == {"finish": "tool_calls", "content": None,
                                "calls": [{"name": "get_weather", "arguments": WEATHER_ARGS}]}
    assert got["stream_tool_call"] == {"finish": "tool_calls", "calls": [
        {"name": "get_weather", "arguments": WEATHER_ARGS, "has_id": True}]}
    assert got["after_tool"] == "工具结果是：晴，25 度"
    assert got["json_mode"] == {"answer": "你好！你刚才说：hi"}
    assert got["parsed"] == PUPIL
    sent = upstream_since(fake, before)
    # The SDK's own history (assistant tool_calls with content null, then the tool result) went up.
    assert sent[2]["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert sent[2]["messages"][2]["role"] == "tool"
    assert sent[-1]["response_format"]["type"] == "json_schema"


def test_langchain_openai_bind_tools_and_with_structured_output(venvs, served):
    url, fake = served
    before = len(fake.chat_requests)
    got = run_client(venvs, "langchain-openai", "langchain_openai_client.py", url)
    assert got["bind_tools"] == got["stream_tools"] == [{"name": "GetWeather", "args": WEATHER_ARGS}]
    assert got["after_tool"] == "工具结果是：晴，25 度"
    assert got["structured"] == got["structured_function_calling"] == PUPIL
    assert got["json_mode"] == {"answer": "你好！你刚才说：hi"}
    sent = upstream_since(fake, before)
    assert any(isinstance(b.get("tool_choice"), dict) for b in sent)     # function calling, forced
    assert any((b.get("response_format") or {}).get("type") == "json_object" for b in sent)


def test_litellm_tool_calls_and_json_mode(venvs, served):
    url, fake = served
    got = run_client(venvs, "litellm", "litellm_client.py", url)
    assert got["tool_call"] == {"finish": "tool_calls", "calls": [{"name": "get_weather", "arguments": WEATHER_ARGS}]}
    assert got["stream_tool_call"] == [{"name": "get_weather", "arguments": WEATHER_ARGS}]
    assert got["json_mode"] == {"answer": "你好！你刚才说：hi"}
    assert fake.chat_requests[-1]["json"]["response_format"] == {"type": "json_object"}
