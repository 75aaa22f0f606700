"""The running server follows the key store (issue 30): a key rotated with `xedullm key rotate`
in another process is used by the next question, no restart — `xedullm serve` as its own
process, the CLI as another, a fake DeepSeek that checks the key, all on 127.0.0.1."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from xedullm.keys.store import FileKeyStore
from xedullm.testing import FakeOpenAIServer

from conftest import TEACHER_KEY, serve_process, wait_until

ROOT = Path(__file__).resolve().parent.parent
WRONG_KEY = "sk-revoked-0a1b2c3d4e5f60718293LEAKED"


def ask(url: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", timeout=20,
                      json={"messages": [{"role": "user", "content": "你好"}]})


def test_a_key_rotated_in_another_terminal_answers_the_next_question_without_restart(tmp_path):
    home = tmp_path / "home"
    FileKeyStore(home / "keys.json").set("deepseek", WRONG_KEY)
    env = {"XEDULLM_HOME": str(home), "XEDULLM_KEYRING": "0", "PYTHONIOENCODING": "utf-8"}
    with FakeOpenAIServer(flavor="deepseek", api_key=TEACHER_KEY) as fake:
        args = ["-p", "deepseek", "--base-url", fake.base_url, "--host", "127.0.0.1", "--port", "0",
                "--data-dir", str(tmp_path / "data"), "--admin-password", "teacher-pass-1234", "--no-browser"]
        with serve_process(args, env, until="用量记录保存在") as (proc, lines):
            url = next(line for line in lines if line.startswith("Running on local URL:")).split()[-1]
            refused = ask(url)
            assert refused.status_code == 401, refused.text
            # A long answer on the old key is running while the key changes; it finishes.
            rotate = subprocess.run(
                [sys.executable, "-m", "xedullm", "key", "rotate", "deepseek", "--stdin",
                 "--base-url", fake.base_url],
                input=TEACHER_KEY + "\n", capture_output=True, text=True, cwd=ROOT,
                env=dict(os.environ, PYTHONPATH=str(ROOT), **env))
            assert rotate.returncode == 0, rotate.stderr
            rotated = time.monotonic()
            took = wait_until(lambda: ask(url).status_code == 200, timeout=5.0, step=0.2)
            assert time.monotonic() - rotated < 5.0, took
            print(f"answered {took:.2f} s after the rotate ended")
            assert fake.chat_requests[-1]["headers"]["authorization"] == f"Bearer {TEACHER_KEY}"
            assert proc.poll() is None   # the same server, never restarted
        out = proc.communicate()
    printed = "".join(lines) + "".join(part or "" for part in out)
    assert TEACHER_KEY not in printed and WRONG_KEY not in printed


def test_an_answer_in_flight_finishes_on_the_old_key_and_the_next_uses_the_new(tmp_path, monkeypatch):
    from xedullm import Client

    monkeypatch.setenv("XEDULLM_HOME", str(tmp_path))
    store = FileKeyStore(tmp_path / "keys.json")
    store.set("deepseek", WRONG_KEY)
    with FakeOpenAIServer(flavor="deepseek", api_key=None) as fake:
        client = Client(provider="deepseek", base_url=fake.base_url, verbose=False, max_retries=0)
        assert client.reload_credentials() is False      # nothing changed yet
        pieces = client.inference("讲一个长故事", stream=True)
        first = next(pieces)
        store.set("deepseek", TEACHER_KEY)
        assert client.reload_credentials() is True
        assert client.key_info["source"] == "store" and client.key_info["api_key"] == "sk-te…b1c3"
        rest = "".join(pieces)                          # the running answer goes on to its end
        assert (first + rest).startswith("你好")
        assert fake.chat_requests[-1]["headers"]["authorization"] == f"Bearer {WRONG_KEY}"
        client.inference("再来")
        assert fake.chat_requests[-1]["headers"]["authorization"] == f"Bearer {TEACHER_KEY}"
        assert client.reload_credentials() is False      # the file did not change again
        assert TEACHER_KEY not in repr(client) and TEACHER_KEY not in repr(client.key_info)
        client.close()


def test_a_key_given_in_the_environment_is_not_replaced_by_the_store(tmp_path, monkeypatch):
    from xedullm import Client

    monkeypatch.setenv("XEDULLM_HOME", str(tmp_path))
    monkeypatch.setenv("DEEPSEEK_API_KEY", TEACHER_KEY)
    client = Client(provider="deepseek", verbose=False)
    FileKeyStore(tmp_path / "keys.json").set("deepseek", WRONG_KEY)
    assert client.reload_credentials() is False
    assert client.key_info["source"] == "env:DEEPSEEK_API_KEY"


def test_the_admin_page_opens_only_on_a_desktop_session():
    from xedullm.server.runner import desktop_session

    desktop = {"DISPLAY": ":0"}
    assert desktop_session(desktop)
    assert not desktop_session({**desktop, "SSH_CONNECTION": "10.0.0.2 5000 10.0.0.1 22"})
    assert not desktop_session({**desktop, "SSH_TTY": "/dev/pts/1"})
    assert not desktop_session({**desktop, "XEDULLM_NO_BROWSER": "1"})
    assert not desktop_session({**desktop, "CI": "true"})
    if sys.platform.startswith("linux"):
        assert not desktop_session({})
        assert desktop_session({"WAYLAND_DISPLAY": "wayland-0"})


def test_serve_without_a_key_starts_tells_students_to_wait_and_answers_once_the_key_is_saved(tmp_path):
    home = tmp_path / "home"
    env = {"XEDULLM_HOME": str(home), "XEDULLM_KEYRING": "0", "PYTHONIOENCODING": "utf-8"}
    password = "teacher-pass-1234"
    with FakeOpenAIServer(flavor="deepseek", api_key=TEACHER_KEY) as fake:
        args = ["-p", "deepseek", "--base-url", fake.base_url, "--host", "127.0.0.1", "--port", "0",
                "--data-dir", str(tmp_path / "data"), "--admin-password", password]
        with serve_process(args, env, until="获取密钥 / Get a key") as (proc, lines):
            url = next(line for line in lines if line.startswith("Running on local URL:")).split()[-1]
            printed = "".join(lines)
            assert f"{url}/admin" in printed and "xedullm key set deepseek" in printed
            waiting = ask(url)
            assert waiting.status_code == 503, waiting.text
            error = waiting.json()["error"]
            assert error["code"] == "teacher_setting_up" and "老师还在设置" in error["message"]
            assert "still setting up" in error["message"] and fake.requests == []
            http = httpx.Client(base_url=url, timeout=20)
            assert http.post("/admin/login", data={"password": password}).status_code == 303
            alert = http.get("/admin/api/overview").json()["alerts"][0]
            assert alert["kind"] == "key_missing" and alert["key_box"] == "#key-deepseek"
            saved = http.post("/admin/api/key", json={"provider": "deepseek", "api_key": TEACHER_KEY},
                              headers={"X-Xedullm-Admin": "1"})
            assert saved.status_code == 200, saved.text
            answered = ask(url)
            assert answered.status_code == 200, answered.text
            assert FileKeyStore(home / "keys.json").get("deepseek").api_key == TEACHER_KEY
            assert all(a["kind"] != "key_missing" for a in http.get("/admin/api/overview").json()["alerts"])
        out = proc.communicate()
    assert TEACHER_KEY not in "".join(lines) + "".join(part or "" for part in out)
