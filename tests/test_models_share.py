"""A second machine pulls a local model from a running `xedullm serve`, behind the class's
access code; Range, many downloads at once, and the chat still answering meanwhile."""
from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
import threading

import httpx
import pytest

from conftest import ROOT, TEACHER_KEY, serve_process
from xedullm import Client
from xedullm.errors import AuthenticationError
from xedullm.models import find_local_model, find_model_file
from xedullm.models.pull import pull

CODE = "class-7b"
QWEN = find_local_model("qwen2.5-0.5b")


def fake_gguf(size: int = 3 * 1024 * 1024) -> bytes:
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 0)
    return (head + hashlib.sha256(b"share").digest() * (size // 32 + 1))[:size]


@pytest.fixture
def teacher(teacher_fake, tmp_path):
    yield from _serve(teacher_fake, tmp_path, 3 * 1024 * 1024)


@pytest.fixture
def teacher_with_a_big_file(teacher_fake, tmp_path):
    # Larger than what the loopback's socket buffers take in at once: a download not read
    # stays under way.
    yield from _serve(teacher_fake, tmp_path, 48 * 1024 * 1024)


def _serve(teacher_fake, tmp_path, size):
    """`xedullm serve` for real, with the class's access code, on a teacher home holding qwen2.5-0.5b."""
    home = tmp_path / "teacher"
    (home / "models").mkdir(parents=True)
    data = fake_gguf(size)
    (home / "models" / QWEN.file).write_bytes(data)
    args = ["-p", "deepseek", "--base-url", teacher_fake.base_url, "--host", "127.0.0.1", "--port", "0",
            "--access-code", CODE, "--data-dir", str(tmp_path / "data")]
    # The teacher's own models folder (not a shared XEDULLM_MODELS_DIR the test run may have).
    env = {"DEEPSEEK_API_KEY": TEACHER_KEY, "XEDULLM_HOME": str(home), "XEDULLM_MODELS_DIR": str(home / "models")}
    with serve_process(args, env, until="用量记录保存在") as (proc, lines):
        url = next(line for line in lines if line.startswith("Running on local URL:")).split()[-1]
        yield url, data


@pytest.fixture
def student(tmp_path, monkeypatch):
    home = tmp_path / "student"
    monkeypatch.setenv("XEDULLM_HOME", str(home))
    monkeypatch.delenv("XEDULLM_MODELS_DIR", raising=False)
    return home


def test_a_second_machine_pulls_with_the_access_code_and_is_refused_without(teacher, student):
    url, data = teacher
    with pytest.raises(AuthenticationError) as caught:
        pull("qwen2.5-0.5b", from_url=url)
    assert "访问码" in str(caught.value) and "access code" in str(caught.value)
    with pytest.raises(AuthenticationError):
        pull("qwen2.5-0.5b", from_url=url, access_code="wrong")
    assert not (student / "models").exists() or list((student / "models").iterdir()) == []
    path = pull("qwen2.5-0.5b", from_url=url, access_code=CODE)
    assert path.read_bytes() == data and find_model_file("qwen2.5-0.5b") == path


def test_a_cut_pull_from_the_teacher_continues(teacher, student):
    url, data = teacher
    part = student / "models" / (QWEN.file + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:1_234_567])   # what a cut left behind
    assert pull("qwen2.5-0.5b", from_url=url, access_code=CODE).read_bytes() == data
    assert not part.exists()


def test_the_listing_and_ranges_on_the_wire(teacher):
    url, data = teacher
    auth = {"Authorization": f"Bearer {CODE}"}
    assert httpx.get(f"{url}/v1/local-models").status_code == 401
    listing = httpx.get(f"{url}/v1/local-models", headers=auth).json()
    assert listing["data"] == [{"id": "qwen2.5-0.5b", "object": "local_model", "file": QWEN.file,
                                "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                "label": QWEN.label, "languages": ["zh", "en"], "license": "Apache-2.0"}]
    part = httpx.get(f"{url}/v1/local-models/qwen2.5-0.5b", headers={**auth, "Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    tail = httpx.get(f"{url}/v1/local-models/qwen2.5-0.5b", headers={**auth, "Range": f"bytes={len(data) - 5}-"})
    assert tail.status_code == 206 and tail.content == data[-5:]
    past = httpx.get(f"{url}/v1/local-models/qwen2.5-0.5b", headers={**auth, "Range": f"bytes={len(data)}-"})
    assert past.status_code == 416
    assert httpx.get(f"{url}/v1/local-models/qwen2.5-1.5b", headers=auth).status_code == 404
    assert httpx.get(f"{url}/v1/local-models/qwen2.5-0.5b").status_code == 401


def test_many_downloads_at_once_are_bounded_and_the_chat_still_answers(teacher_with_a_big_file):
    url, data = teacher_with_a_big_file
    auth = {"Authorization": f"Bearer {CODE}"}
    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=20)) as http:
        streams = []
        try:
            for _ in range(8):   # eight machines mid-download, none reading
                stream = http.stream("GET", f"{url}/v1/local-models/qwen2.5-0.5b", headers=auth)
                response = stream.__enter__()
                assert response.status_code == 200
                streams.append(stream)
            busy = http.get(f"{url}/v1/local-models/qwen2.5-0.5b", headers=auth)
            assert busy.status_code == 503 and busy.headers["retry-after"] == "5"
            # Meanwhile a student's question is answered.
            answer = Client(xedu_url=url, api_key=CODE, verbose=False).inference("你好")
            assert "你好" in answer
        finally:
            for stream in streams:
                stream.__exit__(None, None, None)
        # The slots are free again once those machines left.
        for _ in range(50):
            again = http.get(f"{url}/v1/local-models/qwen2.5-0.5b", headers=auth)
            if again.status_code == 200:
                break
        assert again.status_code == 200 and again.content == data


def _cli(home, *args):
    environ = {k: v for k, v in os.environ.items() if k != "XEDULLM_MODELS_DIR"}
    environ.update(XEDULLM_HOME=str(home), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "xedullm", "--lang", "en", "models", "pull", *args], env=environ,
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_the_cli_pulls_from_the_teacher_with_the_access_code_and_is_refused_without(teacher, tmp_path):
    url, data = teacher
    home = tmp_path / "second-machine"
    refused = _cli(home, "qwen2.5-0.5b", "--from", url)
    assert refused.returncode == 1
    assert "访问码" in refused.stderr and "access code" in refused.stderr and "Traceback" not in refused.stderr
    assert not (home / "models" / QWEN.file).exists()
    done = _cli(home, "qwen2.5-0.5b", "--from", url, "--access-code", CODE)
    assert done.returncode == 0, done.stderr
    assert (home / "models" / QWEN.file).read_bytes() == data
    assert CODE not in done.stdout + done.stderr   # the code is never echoed
    # A model the teacher does not have: say who must pull it first.
    missing = _cli(tmp_path / "third", "qwen2.5-1.5b", "--from", url, "--access-code", CODE)
    assert missing.returncode == 1 and "ask your teacher to run xedullm models pull qwen2.5-1.5b" in missing.stderr


def test_a_ninth_pull_waits_for_a_free_slot_while_the_chat_answers(teacher_with_a_big_file, student):
    url, data = teacher_with_a_big_file
    auth = {"Authorization": f"Bearer {CODE}"}
    result = {}
    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=20)) as http:
        streams = []
        try:
            for _ in range(8):   # eight machines mid-download hold every slot
                stream = http.stream("GET", f"{url}/v1/local-models/qwen2.5-0.5b", headers=auth)
                assert stream.__enter__().status_code == 200
                streams.append(stream)
            ninth = threading.Thread(target=lambda: result.update(
                path=pull("qwen2.5-0.5b", from_url=url, access_code=CODE)))
            ninth.start()
            answer = Client(xedu_url=url, api_key=CODE, verbose=False).inference("你好")
            assert "你好" in answer
            # The ninth cannot have its file while all eight slots are held (each stalled mid-file).
            assert ninth.is_alive() and "path" not in result
        finally:
            for stream in streams:
                stream.__exit__(None, None, None)
    ninth.join(120)   # it heard 503 + Retry-After, waited, and got a slot
    assert result["path"].read_bytes() == data
