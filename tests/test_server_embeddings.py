"""``/v1/embeddings`` through the classroom server: LangChain's ``OpenAIEmbeddings`` and the
openai SDK get vectors with the class's access code and are refused without it, behind the
same budgets and rate limits as chat; every request is a ledger row marked as an embedding."""
from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from xedullm import AuthenticationError, Client
from xedullm.server.app import ServerSettings, create_app
from xedullm.server.classroom import student_tokens
from xedullm.server.classroom.room import today
from xedullm.testing import FakeOpenAIServer, ServerThread

from conftest import TEACHER_KEY, rows_written, serve_process, wait_until

ROOT = Path(__file__).resolve().parent.parent
CODE = "math42"
PASSAGES = ["光合作用在叶绿体里进行", "地球绕着太阳转一圈是一年", "植物的叶子里有叶绿体"]


@contextlib.contextmanager
def glm_class(tmp_path, **settings):
    with FakeOpenAIServer("glm", api_key=TEACHER_KEY) as fake:
        client = Client(provider="glm", base_url=fake.base_url, api_key=TEACHER_KEY, model="glm-4-flash",
                        max_retries=0, verbose=False)
        app = create_app(client, settings=ServerSettings(access_code=CODE, data_dir=str(tmp_path), **settings))
        with ServerThread(app) as server:
            yield server.url, fake, app
        client.close()


def sdk(url, key=CODE):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def ledger(app):
    rows_written(app)
    return list(app.state.xedullm.classroom.store.rows())


def test_the_sdk_and_our_client_get_vectors_and_the_ledger_counts_them(tmp_path):
    with glm_class(tmp_path) as (url, fake, app):
        got = sdk(url).embeddings.create(model="embedding-3", input=PASSAGES)   # the SDK asks for base64
        assert [d.index for d in got.data] == [0, 1, 2] and all(len(d.embedding) == 64 for d in got.data)
        assert got.usage.total_tokens == sum(len(p) for p in PASSAGES) and got.model == "embedding-3"
        assert fake.requests[-1]["json"] == {"model": "embedding-3", "input": PASSAGES}
        student = Client(xedu_url=url, api_key=CODE, verbose=False)
        vectors = student.embed(PASSAGES)
        assert max(abs(a - b) for a, b in zip(vectors[0], got.data[0].embedding)) < 1e-6
        assert student.last_usage.total_tokens == got.usage.total_tokens
        # A model the teacher's provider does not have is not sent upstream: its own is used.
        assert sdk(url).embeddings.create(model="text-embedding-3-large", input="你好").model == "embedding-3"
        wait_until(lambda: len(ledger(app)) == 3)
        rows = ledger(app)
        assert [r["model"] for r in rows] == ["embedding:embedding-3"] * 3
        assert all(r["outcome"] == "ok" and r["who"] == "code:127.0.0.1" for r in rows)
        store = app.state.xedullm.classroom.store
        assert store.used(today()) == 2 * sum(len(p) for p in PASSAGES) + 2 == sum(r["charged"] for r in rows)


def test_without_the_code_budgets_and_rate_limits_refuse_as_for_chat(tmp_path):
    with glm_class(tmp_path, per_student_daily=40) as (url, fake, app):
        with pytest.raises(openai.AuthenticationError):
            sdk(url, "not-the-code").embeddings.create(model="embedding-3", input="你好")
        with pytest.raises(AuthenticationError, match="访问码"):
            Client(xedu_url=url, verbose=False).embed("你好")
        assert fake.requests == []
        sdk(url).embeddings.create(model="embedding-3", input=PASSAGES * 2)       # 72 tokens: over the 40
        with pytest.raises(openai.RateLimitError) as caught:
            sdk(url).embeddings.create(model="embedding-3", input="你好")
        assert caught.value.body["code"] == "insufficient_quota"
        token = student_tokens.new_token()
        store = app.state.xedullm.classroom.store
        store.add_token("第一组", student_tokens.digest(token), student_tokens.limits_from(rpm=1, daily_tokens=1000),
                        time.time())
        sdk(url, token).embeddings.create(model="embedding-3", input="你好")
        with pytest.raises(openai.RateLimitError, match="每分钟"):
            sdk(url, token).embeddings.create(model="embedding-3", input="你好")
        wait_until(lambda: len(ledger(app)) == 6)
        assert [r["status"] for r in ledger(app)] == [401, 401, 200, 429, 200, 429]


def test_batches_are_bounded_and_bad_input_is_a_clear_400(tmp_path):
    with glm_class(tmp_path) as (url, fake, app):
        for body, words in (({"model": "embedding-3", "input": ["段"] * 65}, "最多 64"),
                            ({"model": "embedding-3", "input": [[1, 2, 3]]}, "check_embedding_ctx_length"),
                            ({"model": "embedding-3", "input": ""}, "不能为空"),
                            ({"model": "embedding-3", "input": "x", "encoding_format": "int8"}, "base64")):
            reply = httpx.post(f"{url}/v1/embeddings", json=body, headers={"Authorization": f"Bearer {CODE}"})
            assert reply.status_code == 400 and words in reply.json()["error"]["message"], body
        assert fake.requests == []
        # Our Client splits a long list into batches the server takes.
        assert len(Client(xedu_url=url, api_key=CODE, verbose=False).embed([f"第 {i} 段" for i in range(130)])) == 130
        assert [len(r["json"]["input"]) for r in fake.requests] == [64, 64, 2]


def test_blocked_words_keep_a_text_from_being_embedded(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("作弊\n", encoding="utf-8")
    with glm_class(tmp_path, blocked_words=str(words)) as (url, fake, app):
        with pytest.raises(openai.BadRequestError):
            sdk(url).embeddings.create(model="embedding-3", input=["光合作用", "怎么作弊"])
        assert fake.requests == []
        wait_until(lambda: len(ledger(app)) == 1)
        assert ledger(app)[0]["flagged"] and ledger(app)[0]["outcome"] == "flagged"


def test_a_provider_without_embeddings_says_which_have_them(classroom_server):
    room = classroom_server()   # DeepSeek
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(room.url, "anything").embeddings.create(model="x", input="你好")
    assert "text-embedding-v4" in caught.value.body["message"] and "embedding-3" in caught.value.body["message"]


# -- programs nobody here wrote: LangChain's OpenAIEmbeddings and the openai SDK, in their own venv ----
@pytest.fixture(scope="module")
def venvs():
    made = subprocess.run(["bash", str(ROOT / "scripts" / "client-venvs.sh")], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.fail("scripts/client-venvs.sh could not make the client venvs:\n" + made.stderr[-3000:])
    return Path(made.stdout.strip().splitlines()[-1])


def test_langchain_openai_embeddings_and_the_sdk_through_xedullm_serve(venvs, tmp_path):
    with FakeOpenAIServer(flavor="glm", api_key=TEACHER_KEY) as fake:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        args = ["-p", "glm", "--base-url", fake.base_url, "--host", "127.0.0.1", "--port", str(port),
                "--access-code", CODE, "--data-dir", str(tmp_path)]
        with serve_process(args, {"ZHIPUAI_API_KEY": TEACHER_KEY}, until="Running on local URL:") as (_, lines):
            url = lines[-1].split()[-1] + "/v1"
            env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OPENAI_API_KEY", "OPENAI_BASE_URL")}
            done = subprocess.run([str(venvs / "langchain-openai" / "bin" / "python"), "embeddings_client.py", url, CODE],
                                  capture_output=True, text=True, cwd=ROOT / "tests" / "clients", env=env, timeout=300)
            assert done.returncode == 0, done.stderr[-3000:]
            got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got == {"langchain_documents": [64, 64], "langchain_query": 64, "langchain_same_as_documents": True,
                   "sdk_dims": [64, 64], "sdk_close": True, "sdk_usage": len(PASSAGES[0]) + len(PASSAGES[1]),
                   "without_code": 401}
    assert all(r["json"]["model"] == "embedding-3" for r in fake.requests if r["path"].endswith("/embeddings"))


# -- the lessons in docs/examples, run as a student runs them -----------------------------------
def run_example(name, *args):
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "examples" / name), *args], capture_output=True,
                          text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_knowledge_base_and_picture_lessons_in_docs_run_through_a_classroom_server(tmp_path):
    picture = tmp_path / "leaf.png"
    picture.write_bytes(base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="))
    with FakeOpenAIServer("glm", api_key=TEACHER_KEY) as fake:
        client = Client(provider="glm", base_url=fake.base_url, api_key=TEACHER_KEY, model="glm-4v-flash",
                        max_retries=0, verbose=False)
        app = create_app(client, settings=ServerSettings(access_code=CODE, data_dir=str(tmp_path)))
        with ServerThread(app) as server:
            out = run_example("knowledge_base_lesson.py", server.url, CODE)
            assert "最相关的段落 / closest passage: 光合作用在叶绿体里进行" in out
            asked = fake.chat_requests[-1]["json"]["messages"][-1]["content"]
            assert "资料：光合作用" in asked and "问题：植物为什么需要阳光？" in asked
            out = run_example("picture_question.py", server.url, CODE, str(picture))
            assert "我看到了 1 张图片。" in out
        client.close()
