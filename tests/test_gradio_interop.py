"""Old and new classrooms interoperate, tested with the real programs nobody here wrote.

- The original student client, unchanged — xedu-python 2.0.0 with gradio_client 1.3.0, and
  with the current gradio_client 2.x — each in its own venv, run as a subprocess against our
  server (the Gradio face).
- Our ``Client(xedu_url=…)`` against the original teacher server: xedu-python's ``run()`` on
  Gradio 4.44.1, in its venv, in front of our fake provider.
- The face's protocol details over raw HTTP.

The venvs come from scripts/interop-venvs.sh (scripts/test.sh runs it before pytest). These
tests are never skipped: when the venvs cannot be made, they fail and say why.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

import httpx
import pytest

import xedullm
from xedullm import Client
from xedullm.testing import FakeOpenAIServer, Fault

from conftest import TEACHER_KEY, rows_written, serve_process, wait_until

ROOT = Path(__file__).resolve().parent.parent
ANSWER = "你好！你刚才说："      # the fake's answer starts with this, then the question
SYSTEM = "你是一位耐心的小学老师。"
CODE = "math-class-42"
GRADIO_CLIENTS = {"gradio_client-1.3": "xedu-gradio4", "gradio_client-2": "xedu-client2"}
# Third-party programs run offline: no telemetry, no hub look-ups, no display.
THIRD_PARTY_ENV = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_ANALYTICS_ENABLED": "False",
                   "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
STARTUP_GUARD = 300.0   # seconds: only so that a broken install cannot hang the run


@pytest.fixture(scope="session")
def venvs() -> Path:
    done = subprocess.run(["bash", str(ROOT / "scripts" / "interop-venvs.sh")], capture_output=True, text=True)
    if done.returncode:
        pytest.fail(f"scripts/interop-venvs.sh failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def third_party(venvs: Path, venv: str, script: str, *args: str, cwd: Path, **popen: Any) -> subprocess.Popen:
    """``script`` in a third-party venv: none of our code on its path, nothing from outside."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(THIRD_PARTY_ENV)
    return subprocess.Popen([str(venvs / venv / "bin" / "python"), "-c", script, *args], cwd=cwd, env=env,
                            text=True, **popen)


def run_third_party(venvs: Path, venv: str, script: str, *args: str, cwd: Path) -> Dict[str, Any]:
    """Run to the end; the JSON it printed after ``RESULT ``, plus everything it printed."""
    proc = third_party(venvs, venv, script, *args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    results = [line[len("RESULT "):] for line in out.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and results, f"exit {proc.returncode}\n{out}\n{err}"
    return dict(json.loads(results[-1]), stdout=out)


def ledger_rows(room) -> List[Dict[str, Any]]:
    rows_written(room.app)
    return list(room.state.classroom.store.rows())


# -- the original student client against our server -----------------------------------------
LESSON = r'''
import json, sys
from XEdu.LLM import Client
chatbot = Client(xedu_url=sys.argv[1])
first = chatbot.inference("你好")
second = chatbot.inference("我刚才说了什么？", stream=True)
print("RESULT " + json.dumps({"first": first, "second": second, "model": chatbot.model}, ensure_ascii=False))
'''


@pytest.mark.parametrize("venv", GRADIO_CLIENTS.values(), ids=GRADIO_CLIENTS.keys())
def test_original_student_program_gets_answers_from_our_server(venvs, venv, classroom_server, tmp_path):
    room = classroom_server(system=SYSTEM, data_dir=tmp_path)
    got = run_third_party(venvs, venv, LESSON, room.url, cwd=tmp_path)
    assert got["first"] == ANSWER + "你好"
    # xedu-python drops stream=True for a teacher's server and returns the whole text, as it always did.
    assert got["second"] == ANSWER + "我刚才说了什么？"
    # It asked GET /models (with "Bearer None") for a model to show, and showed ours.
    assert got["model"] == "deepseek-chat"
    assert f"|| Selected base URL: {room.url} || Current model: deepseek-chat ||" in got["stdout"]
    # The teacher's system prompt first; one client's messages are one conversation, as on
    # the original server.
    first, second = room.upstream_bodies()
    assert first["messages"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "你好"}]
    assert second["messages"][1:] == [{"role": "user", "content": "你好"},
                                      {"role": "assistant", "content": ANSWER + "你好"},
                                      {"role": "user", "content": "我刚才说了什么？"}]
    # Charged like any student, under the machine's address.
    wait_until(lambda: len(ledger_rows(room)) == 2)
    rows = ledger_rows(room)
    assert [(r["who"], r["status"], r["outcome"]) for r in rows] == [("legacy:127.0.0.1", 200, "ok")] * 2
    assert [r["total_tokens"] for r in rows] == [u["total_tokens"] for u in room.fake.usage_log]


STREAMER = r'''
import json, sys
from gradio_client import Client
job = Client(sys.argv[1], verbose=False).submit("讲个故事", api_name="/chat")
for partial in job:
    print("PARTIAL " + json.dumps(partial, ensure_ascii=False), flush=True)
print("RESULT " + json.dumps({"final": job.result()}, ensure_ascii=False), flush=True)
'''


@pytest.mark.parametrize("venv", GRADIO_CLIENTS.values(), ids=GRADIO_CLIENTS.keys())
def test_original_gradio_client_sees_the_answer_grow_while_it_is_written(venvs, venv, classroom_server, tmp_path):
    room = classroom_server()
    room.fake.faults.append(Fault.stall_between(3.0, after=2))   # upstream pauses mid-answer
    proc = third_party(venvs, venv, STREAMER, room.url, cwd=tmp_path, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    partials, final = [], None
    try:
        for line in proc.stdout:
            if line.startswith("PARTIAL "):
                if not partials:
                    # The first piece reached the student while upstream was still answering.
                    assert room.fake.active_streams == 1
                partials.append(json.loads(line[len("PARTIAL "):]))
            elif line.startswith("RESULT "):
                final = json.loads(line[len("RESULT "):])["final"]
    finally:
        proc.wait()
    assert proc.returncode == 0, proc.stderr.read()
    assert final == ANSWER + "讲个故事"
    assert len(partials) >= 2 and partials[-1] == final
    assert all(later.startswith(earlier) and later != earlier for earlier, later in zip(partials, partials[1:]))


REFUSED = r'''
import json, sys
from XEdu.LLM import Client
try:
    print("RESULT " + json.dumps({"answer": Client(xedu_url=sys.argv[1]).inference("你好")}, ensure_ascii=False))
except Exception as exc:
    print("RESULT " + json.dumps({"error": type(exc).__name__, "message": str(exc)}, ensure_ascii=False))
'''


def test_with_an_access_code_the_old_client_is_told_to_upgrade(venvs, classroom_server, tmp_path):
    room = classroom_server(data_dir=tmp_path, access_code=CODE)
    got = run_third_party(venvs, "xedu-gradio4", REFUSED, room.url, cwd=tmp_path)
    assert got["error"] == "AppError"
    assert "访问码" in got["message"] and "pip install xedullm" in got["message"] and "/ " in got["message"]
    assert f"Client(xedu_url='{room.url}', api_key=" in got["message"]
    assert CODE not in got["message"] + got["stdout"]
    assert room.fake.chat_requests == []
    wait_until(lambda: len(ledger_rows(room)) == 1)
    row = ledger_rows(room)[0]
    assert (row["who"], row["status"]) == ("legacy:127.0.0.1", 401)
    # The current gradio_client hears the same.
    got = run_third_party(venvs, "xedu-client2", REFUSED, room.url, cwd=tmp_path)
    assert got["error"] == "AppError" and "pip install xedullm" in got["message"]


def test_the_teacher_may_let_legacy_clients_in_despite_the_access_code(venvs, classroom_server, tmp_path):
    room = classroom_server(data_dir=tmp_path, access_code=CODE, allow_legacy_clients=True)
    got = run_third_party(venvs, "xedu-gradio4", REFUSED, room.url, cwd=tmp_path)
    assert got == dict(answer=ANSWER + "你好", stdout=got["stdout"])
    wait_until(lambda: len(ledger_rows(room)) == 1)
    assert ledger_rows(room)[0]["who"] == "legacy:127.0.0.1"
    # The code still guards everyone else.
    assert httpx.post(f"{room.url}/v1/chat/completions", timeout=10,
                      json={"messages": [{"role": "user", "content": "hi"}]}).status_code == 401


def test_xedullm_serve_allow_legacy_clients_flag(teacher_fake, tmp_path):
    args = ["-p", "deepseek", "--base-url", teacher_fake.base_url, "--host", "127.0.0.1", "--port", "0",
            "--access-code", CODE, "--data-dir", str(tmp_path)]
    for flags, answered in (([], False), (["--allow-legacy-clients"], True)):
        with serve_process(args + flags, {"DEEPSEEK_API_KEY": TEACHER_KEY}, until="用量记录保存在") as (_, lines):
            url = next(line for line in lines if line.startswith("Running on local URL:")).split()[-1]
            join(url, "你好", "s1")
            done = queue_messages(url, "s1")[-2]
        assert done["success"] is answered, flags


# -- the face over raw HTTP ---------------------------------------------------------------------
def join(url: str, message: Any, session: str, prefix: str = "") -> str:
    reply = httpx.post(f"{url}{prefix}/queue/join", timeout=10,
                       json={"data": [message, None], "fn_index": 0, "session_hash": session})
    assert reply.status_code == 200, reply.text
    return reply.json()["event_id"]


def queue_messages(url: str, session: str, prefix: str = "", on_message=None) -> List[Dict[str, Any]]:
    messages = []
    with httpx.stream("GET", f"{url}{prefix}/queue/data", params={"session_hash": session}, timeout=10) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                messages.append(json.loads(line[len("data: "):]))
                if on_message:
                    on_message(messages[-1])
    return messages


@pytest.mark.parametrize("prefix", ["", "/gradio_api"])
def test_queue_stream_sends_each_piece_as_a_diff_while_upstream_is_still_answering(classroom_server, prefix):
    room = classroom_server()
    room.fake.faults.append(Fault.stall_between(3.0, after=2))
    event_id = join(room.url, "讲个故事", "s1", prefix)
    upstream_busy = []

    def note(message):
        if message["msg"] == "process_generating" and not upstream_busy:
            upstream_busy.append(room.fake.active_streams)

    messages = queue_messages(room.url, "s1", prefix, note)
    assert upstream_busy == [1]
    kinds = [m["msg"] for m in messages]
    assert kinds[:2] == ["estimation", "process_starts"] and kinds[-2:] == ["process_completed", "close_stream"]
    generating = [m["output"]["data"] for m in messages if m["msg"] == "process_generating"]
    assert len(generating) >= 2
    first, *diffs = generating
    assert isinstance(first[0], str) and first[1] is None
    assert all(d[1] == [] and len(d[0]) == 1 and d[0][0][:2] == ["append", []] for d in diffs)
    assert first[0] + "".join(d[0][0][2] for d in diffs) == ANSWER + "讲个故事"
    done = messages[-2]
    assert done["event_id"] == event_id and done["success"] is True
    assert done["output"]["data"] == [ANSWER + "讲个故事", None]


def test_upstream_failure_reaches_the_old_client_as_the_classroom_message(classroom_server):
    room = classroom_server()
    room.fake.faults.append(Fault.status(401))
    join(room.url, "你好", "s1")
    done = [m for m in queue_messages(room.url, "s1") if m["msg"] == "process_completed"]
    assert done[0]["success"] is False and list(done[0]["output"]) == ["error"]
    assert "老师的密钥" in done[0]["output"]["error"] and "/ " in done[0]["output"]["error"]
    assert TEACHER_KEY not in json.dumps(done, ensure_ascii=False)


def test_each_session_keeps_its_own_conversation(classroom_server):
    room = classroom_server()
    for session, text in (("a", "我是小明"), ("b", "我是小红"), ("a", "我是谁？")):
        join(room.url, text, session)
        queue_messages(room.url, session)
    last = room.upstream_bodies()[-1]["messages"]
    assert [m["content"] for m in last] == ["我是小明", ANSWER + "我是小明", "我是谁？"]


def test_one_stream_answers_every_message_its_session_queued(classroom_server):
    room = classroom_server()
    ids = [join(room.url, text, "s1") for text in ("一", "二", 3)]
    done = {m["event_id"]: m for m in queue_messages(room.url, "s1") if m["msg"] == "process_completed"}
    assert set(done) == set(ids)
    assert [done[i]["success"] for i in ids] == [True, True, False]
    assert {done[i]["output"]["data"][0] for i in ids[:2]} == {ANSWER + "一", ANSWER + "二"}
    assert "消息应是文字" in done[ids[2]]["output"]["error"]     # checked like any request body
    assert len(room.upstream_bodies()) == 2


def test_a_whole_conversation_may_be_sent_as_one_message(classroom_server):
    room = classroom_server()
    conversation = [{"role": "user", "content": "一"}, {"role": "assistant", "content": "二"},
                    {"role": "user", "content": "三"}]
    join(room.url, conversation, "s1")
    done = queue_messages(room.url, "s1")[-2]
    assert done["output"]["data"][0] == ANSWER + "三"
    assert room.upstream_bodies()[-1]["messages"] == conversation


def test_student_leaving_mid_answer_cancels_upstream_and_is_recorded(classroom_server, tmp_path):
    room = classroom_server(data_dir=tmp_path)
    room.fake.faults.append(Fault.stall_between(30.0, after=2))
    join(room.url, "讲个长故事", "s1")
    with httpx.stream("GET", f"{room.url}/queue/data", params={"session_hash": "s1"}, timeout=10) as r:
        for line in r.iter_lines():
            if '"process_generating"' in line:
                break
    assert room.fake.wait_for(lambda: room.fake.streams_cancelled == 1)
    wait_until(lambda: len(ledger_rows(room)) == 1)
    row = ledger_rows(room)[0]
    assert (row["who"], row["status"], row["outcome"]) == ("legacy:127.0.0.1", 499, "disconnected")


def test_cancel_stops_a_running_answer(classroom_server):
    room = classroom_server()
    room.fake.faults.append(Fault.stall_between(30.0, after=2))
    event_id = join(room.url, "讲个长故事", "s1")

    def cancel_on_first_piece(message):
        if message["msg"] == "process_generating" and message["output"]["data"][1] is None:
            httpx.post(f"{room.url}/cancel", timeout=10,
                       json={"fn_index": 0, "session_hash": "s1", "event_id": event_id})

    messages = queue_messages(room.url, "s1", on_message=cancel_on_first_piece)
    assert messages[-2] == {"msg": "process_completed", "event_id": event_id, "output": {"error": "已取消。/ Cancelled."},
                            "success": False}
    assert room.fake.wait_for(lambda: room.fake.streams_cancelled == 1)


def test_config_info_heartbeat_models_and_malformed_joins(classroom_server):
    room = classroom_server(access_code=None)
    config = httpx.get(f"{room.url}/config").json()
    assert httpx.get(f"{room.url}/gradio_api/config").json() == config
    assert config["protocol"] == "sse_v3" and config["api_prefix"] == "/gradio_api"
    chat = [d for d in config["dependencies"] if d["api_name"] == "chat"]
    assert len(chat) == 1
    types = {c["id"]: c["type"] for c in config["components"]}
    assert [types[i] for i in chat[0]["inputs"]] == ["textbox", "state"]
    info = httpx.get(f"{room.url}/info", params={"serialize": "False"}).json()
    assert [p["parameter_name"] for p in info["named_endpoints"]["/chat"]["parameters"]] == ["message"]
    with httpx.stream("GET", f"{room.url}/heartbeat/s1", timeout=10) as r:
        assert next(r.iter_lines()) == "data: ALIVE"
    models = httpx.get(f"{room.url}/models", headers={"Authorization": "Bearer None"})
    assert [m["id"] for m in models.json()["data"]] == ["deepseek-chat"]
    for body in (b"not json", b'{"data": "x", "session_hash": "s"}', b'{"data": ["x"], "fn_index": 3, '
                 b'"session_hash": "s"}', b'{"data": ["x"], "fn_index": 0}'):
        reply = httpx.post(f"{room.url}/queue/join", content=body, headers={"Content-Type": "application/json"})
        assert reply.status_code == 422 and "/ " in reply.json()["detail"], body
    assert room.fake.chat_requests == []


# -- our client against the original teacher server ---------------------------------------------
TEACHER = r'''
import sys
from XEdu.LLM import Client
teacher = Client(base_url=sys.argv[1], api_key=sys.argv[2], model="deepseek-chat")
teacher.set_system(sys.argv[3])
teacher.run(host="127.0.0.1", port=int(sys.argv[4]))
'''


@dataclass
class OldTeacher:
    url: str
    fake: FakeOpenAIServer

    def student(self, max_retries: int = 0) -> Client:
        return Client(xedu_url=self.url, verbose=False, max_retries=max_retries)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def old_teacher(venvs, tmp_path_factory):
    """xedu-python 2.0.0's own ``run()`` on Gradio 4.44.1, in front of our fake provider."""
    workdir = tmp_path_factory.mktemp("old-teacher")
    with FakeOpenAIServer(flavor="deepseek", api_key=TEACHER_KEY) as fake, \
            open(workdir / "server.log", "w") as log:
        port = free_port()
        proc = third_party(venvs, "xedu-gradio4", TEACHER, fake.base_url, TEACHER_KEY, SYSTEM, str(port),
                           cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + STARTUP_GUARD
            while True:
                assert proc.poll() is None, (workdir / "server.log").read_text()
                assert time.monotonic() < deadline, (workdir / "server.log").read_text()
                try:
                    if httpx.get(f"{url}/config", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            yield OldTeacher(url, fake)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def teacher(old_teacher):
    old_teacher.fake.reset()
    old_teacher.fake.faults.clear()
    return old_teacher


def test_our_client_gets_answers_from_the_original_teacher_server(teacher):
    student = teacher.student()
    assert student.inference("你好") == ANSWER + "你好"
    assert teacher.fake.chat_requests[-1]["json"]["messages"] == [
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": "你好"}]
    # The old server keeps the conversation, as it did for XEduLLM's own client.
    assert student.inference("再来") == ANSWER + "再来"
    assert len(teacher.fake.chat_requests[-1]["json"]["messages"]) == 4
    assert student.support_model() == ["deepseek-chat"]     # the model the old page shows
    assert student.last_usage is None                       # the old server reports none


def turns_upstream(fake) -> List[int]:
    """How many conversation messages (the teacher's system prompt aside) each chat call carried."""
    return [len([m for m in r["json"]["messages"] if m["role"] != "system"]) for r in fake.chat_requests]


def test_three_questions_are_one_conversation_at_the_original_server(teacher):
    student = teacher.student()
    assert student.inference("我叫小明") == ANSWER + "我叫小明"
    assert "".join(student.inference("继续", stream=True)) == ANSWER + "继续"
    student.inference("为什么？")
    assert turns_upstream(teacher.fake) == [1, 3, 5]
    assert teacher.fake.chat_requests[-1]["json"]["messages"][-2:] == [
        {"role": "assistant", "content": ANSWER + "继续"}, {"role": "user", "content": "为什么？"}]
    student.new_conversation()
    student.inference("重新开始")
    assert turns_upstream(teacher.fake)[-1] == 1


def test_three_questions_are_one_conversation_at_our_server(classroom_server):
    room = classroom_server()
    student = Client(xedu_url=room.url, verbose=False, max_retries=0)
    student.inference("我叫小明")
    "".join(student.inference("继续", stream=True))
    student.inference("为什么？")
    assert turns_upstream(room.fake) == [1, 3, 5]
    assert [m["content"] for m in student.conversation[::2]] == ["我叫小明", "继续", "为什么？"]
    # A list means exactly that list, and does not join the conversation.
    student.inference([{"role": "user", "content": "单独一问"}])
    assert turns_upstream(room.fake)[-1] == 1 and len(student.conversation) == 6
    student.new_conversation()
    student.inference("重新开始")
    assert turns_upstream(room.fake)[-1] == 1


def test_our_client_streams_from_the_original_teacher_server_as_it_answers(teacher):
    teacher.fake.faults.append(Fault.stall_between(3.0, after=2))
    pieces = []
    for piece in teacher.student().inference("讲个故事", stream=True):
        if not pieces:
            assert teacher.fake.active_streams == 1    # upstream is still answering
        assert isinstance(piece, str) and piece
        pieces.append(piece)
    assert len(pieces) >= 2 and "".join(pieces) == ANSWER + "讲个故事"


def test_our_async_client_against_the_original_teacher_server(teacher):
    async def ask():
        student = teacher.student()
        whole = await student.ainference("异步")
        pieces = [p async for p in await student.ainference("异步流", stream=True)]
        await student.aclose()
        return whole, pieces

    whole, pieces = asyncio.run(ask())
    assert whole == ANSWER + "异步"
    assert len(pieces) >= 2 and "".join(pieces) == ANSWER + "异步流"


def test_a_conversation_reaches_the_original_server_written_out_in_one_message(teacher):
    student = teacher.student()
    student.set_system("用一句话回答。")
    answer = student.inference([{"role": "user", "content": "我叫小明"},
                                {"role": "assistant", "content": "你好，小明"},
                                {"role": "user", "content": "我叫什么？"}])
    assert answer.startswith(ANSWER)
    sent = teacher.fake.chat_requests[-1]["json"]["messages"]
    assert sent[0] == {"role": "system", "content": SYSTEM} and len(sent) == 2
    for turn in ("用一句话回答。", "我叫小明", "你好，小明", "我叫什么？"):
        assert turn in sent[1]["content"]


def test_a_failing_original_server_is_an_error_that_sends_the_student_to_the_teacher(teacher):
    # The old server's provider fails; the old server says only that something failed.
    teacher.fake.faults.append(Fault.status(401))
    with pytest.raises(xedullm.ServerError, match="服务器窗口") as caught:
        teacher.student(max_retries=2).inference("你好")
    assert "server window" in str(caught.value) and TEACHER_KEY not in str(caught.value)
    assert len(teacher.fake.chat_requests) == 1     # asking again would only fail again


def test_an_address_that_is_neither_kind_says_what_it_found(teacher):
    # Constructing does no network I/O, even for an address nothing listens on.
    nobody = Client(xedu_url=f"http://127.0.0.1:{free_port()}", verbose=False, max_retries=0)
    with pytest.raises(xedullm.APIConnectionError):
        nobody.inference("你好")
    provider = Client(xedu_url=teacher.fake.url, verbose=False, max_retries=0)   # a provider, not a classroom
    with pytest.raises(xedullm.ConfigurationError, match="GET /config → HTTP 404") as caught:
        provider.inference("你好")
    assert "base_url" in str(caught.value) and teacher.fake.chat_requests == []


def test_a_gradio_app_that_is_not_a_chat_server_is_named_as_such():
    from xedullm.protocols.gradio import ServerProbe

    probe = ServerProbe("http://192.168.1.23:7860")
    assert probe.next_request().url == "http://192.168.1.23:7860/config"
    other_app = {"version": "4.44.1", "components": [{"id": 1, "type": "image"}],
                 "dependencies": [{"id": 0, "api_name": "predict", "inputs": [1], "outputs": [1]}]}
    with pytest.raises(xedullm.ConfigurationError, match="/predict"):
        probe.receive(200, {"content-type": "application/json"}, json.dumps(other_app).encode())
