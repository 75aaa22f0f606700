"""Security checks that cut across the project.

- No ``eval``/``exec`` (nor ``compile``, pickle or marshal loads) anywhere in the package:
  nothing a provider or a student sends is ever run as code.
- Keys never leave: a provider that echoes the key back in error bodies, in-stream error
  frames and HTTP 200 error bodies (all three wire protocols) produces exceptions and log
  lines without it; and a whole lesson through a real ``xedullm serve`` process (chat,
  upstream errors echoing the key, bad requests, the admin page, tokens, the CSV export,
  students' usage) leaves the teacher's key in no response body or header, no line the
  process printed, and not in the classroom data file.

Admin XSS, admin password throttling, students shut out of /admin and per-token usage are
tested where those features live (test_admin_page.py, test_classroom_controls.py); the
chat page's XSS cases in test_web_page.py.
"""
from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import List

import httpx
import pytest

from xedullm import Client, LLMError
from xedullm.testing import FakeDashScopeServer, FakeErnieServer, FakeOpenAIServer, Fault

from conftest import serve_process

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-sec-teacher-9d8c7b6a5f4e3d2c1b0aSECRET"
SECRET = "ernie-secret-key-5e6f7a8b9c0dSECRET"
CODE = "class-code-7788"
PASSWORD = "admin-pass-1357-SECRET"


def leaks(text: str, *secrets: str) -> List[str]:
    """Which secrets (or a 12-character slice from their middle) appear in ``text``."""
    found = []
    for secret in secrets:
        middle = secret[len(secret) // 2 - 6: len(secret) // 2 + 6]
        if secret in text or middle in text:
            found.append(secret[:6] + "…")
    return found


# -- no code execution on remote data -----------------------------------------------------
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_ATTRS = {("pickle", "loads"), ("pickle", "load"), ("marshal", "loads"), ("marshal", "load")}
# Every exception must be argued for here, with the reason; it is empty on purpose.
ALLOWED: set = set()


def test_no_eval_exec_or_unpickling_anywhere_in_the_package():
    found = []
    for folder in ("xedullm", "XEdu"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text("utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = None
                if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
                    name = func.id
                elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and \
                        (func.value.id, func.attr) in FORBIDDEN_ATTRS:
                    name = f"{func.value.id}.{func.attr}"
                elif isinstance(func, ast.Attribute) and func.attr in ("eval", "exec") and \
                        isinstance(func.value, ast.Name) and func.value.id == "builtins":
                    name = f"builtins.{func.attr}"
                if name and (str(path.relative_to(ROOT)), name) not in ALLOWED:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}()")
    assert found == []


def test_the_scan_would_see_an_eval(tmp_path):
    # The scan above must be able to fail: the same walk finds eval in a sample.
    tree = ast.parse("import pickle\nx = eval(data)\npickle.loads(b)\n")
    names = [n.func.id if isinstance(n.func, ast.Name) else n.func.attr
             for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert "eval" in names and "loads" in names


# -- keys never leave the client ----------------------------------------------------------
def echoing_faults(stream: bool) -> List[Fault]:
    """Upstream answers that carry the key back, the ways providers do."""
    said = f"Incorrect API key provided: {KEY}. secret={SECRET}"
    faults = [Fault.status(401, body={"error": {"message": said, "code": "invalid_api_key"}, "message": said,
                                      "code": "InvalidApiKey", "error_code": 13, "error_msg": said}),
              Fault.status(500, body=said),                              # a plain-text gateway page
              Fault.status(429, body={"error": {"message": said}})]
    faults.append(Fault.error_frame(after=2 if stream else 0, code="server_error", message=said))
    return faults


def _fakes():
    return [("deepseek", FakeOpenAIServer(flavor="deepseek", api_key=KEY)),
            ("openrouter", FakeOpenAIServer(flavor="openrouter", api_key=KEY)),
            ("qwen", FakeDashScopeServer(api_key=KEY)),
            ("ernie", FakeErnieServer(api_key=KEY, secret_key=SECRET))]


@pytest.mark.parametrize("stream", [False, True])
def test_keys_echoed_by_the_provider_never_reach_exceptions_or_logs(stream, caplog):
    caplog.set_level(logging.DEBUG)
    seen = []
    for provider, fake in _fakes():
        with fake:
            kwargs = dict(base_url=fake.base_url, api_key=KEY, max_retries=0, timeout=5, verbose=False)
            own = (KEY,)   # what this client knows, so must never show (SECRET is ERNIE's only)
            if provider == "ernie":
                kwargs["secret_key"] = SECRET
                own = (KEY, SECRET)
            client = Client(provider=provider, **kwargs)
            for fault in echoing_faults(stream):
                fake.faults.append(fault)
                with pytest.raises(LLMError) as info:
                    if stream:
                        for _ in client.inference("hi", stream=True):
                            pass
                    else:
                        client.inference("hi")
                err = info.value
                seen.append(f"{provider} {type(err).__name__}")
                text = " ".join([str(err), repr(err), repr(err.args), str(err.detail), str(err.message),
                                 repr(err.__dict__)])
                assert leaks(text, *own) == [], (provider, fault, text)
                assert err.__cause__ is None and err.__context__ is None or \
                    leaks(repr(err.__context__), *own) == []
            assert leaks(repr(client), *own) == []
            client.close()
            issued = list(getattr(fake, "issued_tokens", []))
    assert len(seen) == 4 * len(echoing_faults(stream))
    # Logs at DEBUG, httpx and httpcore included: ERNIE sends its keys (token step) and its
    # access token (each chat) in the URL query, which httpx logs at INFO.
    logged = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert issued and "access_token=" in logged
    assert leaks(logged, KEY, SECRET, *issued) == []


# -- a whole lesson through `xedullm serve` ------------------------------------------------
class Recorder:
    """Every response of the lesson, kept for the final scan."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=20)
        self.texts: List[str] = []

    def __call__(self, method: str, path: str, **kwargs) -> httpx.Response:
        reply = self.http.request(method, path, **kwargs)
        self.texts.append(f"{method} {path} -> {reply.status_code}\n{reply.headers}\n{reply.text}")
        return reply


def _serve(upstream: str, data_dir: Path, home: Path):
    home_env = {"DEEPSEEK_API_KEY": KEY, "HOME": str(home), "XDG_CONFIG_HOME": str(home),
                "XDG_DATA_HOME": str(home)}
    return serve_process(["-p", "deepseek", "--base-url", upstream, "--host", "127.0.0.1", "--port", "0",
                          "--data-dir", str(data_dir), "--access-code", CODE,
                          "--admin-password", PASSWORD, "--review"], home_env, until="用量记录保存在")


def test_a_whole_lesson_through_xedullm_serve_leaves_the_key_nowhere(tmp_path):
    said = f"Incorrect API key provided: {KEY}"
    with FakeOpenAIServer(flavor="deepseek", api_key=KEY) as fake:
        with _serve(fake.base_url, tmp_path / "data", tmp_path / "home") as (proc, banner):
            url = next(line for line in banner if line.startswith("Running on local URL:")).split()[-1]
            go = Recorder(url)
            student = {"Authorization": f"Bearer {CODE}"}
            chat = {"messages": [{"role": "user", "content": "你好"}]}

            # the page, its endpoints, a normal lesson
            for path in ("/", "/api/info", "/static/app.js", "/healthz", "/v1/models"):
                assert go("GET", path, headers=student).status_code == 200
            assert go("POST", "/v1/chat/completions", json=chat, headers=student).status_code == 200
            assert go("POST", "/v1/chat/completions", json=dict(chat, stream=True), headers=student).status_code == 200
            # upstream failures that echo the key, as JSON, as plain text, mid-stream
            fake.faults.extend([
                Fault.status(401, body={"error": {"message": said, "code": "invalid_api_key"}}),
                Fault.status(500, body=said),
                Fault.status(400, body={"error": {"message": said, "type": "invalid_request_error"}}),
                Fault.error_frame(after=2, message=said),
                Fault.disconnect_after(2),
            ])
            for stream in (False, False, False, True, True):
                go("POST", "/v1/chat/completions", json=dict(chat, stream=stream), headers=student)
            # hostile students
            go("POST", "/v1/chat/completions", json=chat)                                  # no code
            go("POST", "/v1/chat/completions", json=chat, headers={"Authorization": f"Bearer {KEY}"})
            go("POST", "/v1/chat/completions", content=b"{", headers=student)
            go("GET", "/admin/api/overview", headers=student)
            go("GET", "/v1/usage", headers=student)
            # the teacher: a wrong password, then in; a token; the overview and the export
            go("POST", "/admin/login", data={"password": KEY})
            assert go("POST", "/admin/login", data={"password": PASSWORD}).status_code in (200, 303)
            admin = {"X-Xedullm-Admin": "1"}
            made = go("POST", "/admin/api/tokens", json={"name": "小明"}, headers=admin)
            assert made.status_code == 200, made.text
            token = made.json()["token"]
            assert go("POST", "/v1/chat/completions", json=chat,
                      headers={"Authorization": f"Bearer {token}"}).status_code == 200
            assert go("GET", "/v1/usage", headers={"Authorization": f"Bearer {token}"}).status_code == 200
            assert go("GET", "/admin/api/overview").status_code == 200
            export = go("GET", "/admin/api/export.csv")
            assert export.status_code == 200 and "小明" in export.text
            go.http.close()
            proc.send_signal(2)
            out, err = proc.communicate(timeout=30)
    assert fake.chat_requests, "the lesson never reached the provider"
    assert len(go.texts) == 24
    printed = "".join(banner) + out + err
    assert leaks(printed, KEY, PASSWORD) == [], printed[-2000:]
    assert leaks("\n".join(go.texts), KEY, PASSWORD) == []
    data = b"".join(p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file())
    assert KEY.encode() not in data and PASSWORD.encode() not in data
