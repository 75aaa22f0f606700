"""The key box (issue 30): `POST /admin/api/key` checks a key live and saves it where `xedullm
key set` does, only from this computer; `GET /admin/api/keys` shows the seed's guide and the
key in use, masked. Our server on 127.0.0.1 (its own HTTP protocol), a fake DeepSeek that
checks the key, the admin page in headless Chromium."""
from __future__ import annotations

import base64
import contextlib
import json
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import expect

from xedullm import Client
from xedullm.keys.store import FileKeyStore
from xedullm.server.app import create_app
from xedullm.server.runner import connection_protocol
from xedullm.server.settings import ServerSettings
from xedullm.testing import FakeOpenAIServer, ServerThread

from conftest import TEACHER_KEY, open_admin

PASSWORD = "teacher-pass-8642"
WRONG_KEY = "sk-revoked-0a1b2c3d4e5f60718293LEAKED"
ADMIN = {"X-Xedullm-Admin": "1"}

expect.set_options(timeout=20_000)


@contextlib.contextmanager
def key_room(tmp_path, monkeypatch, stored=WRONG_KEY, **settings):
    """A server whose teacher's key comes from the key store in tmp_path/home."""
    home = tmp_path / "home"
    monkeypatch.setenv("XEDULLM_HOME", str(home))
    store = FileKeyStore(home / "keys.json")
    if stored:
        store.set("deepseek", stored)
    with FakeOpenAIServer(flavor="deepseek", api_key=TEACHER_KEY) as fake:
        client = Client(provider="deepseek", base_url=fake.base_url, max_retries=0, timeout=10, verbose=False)
        config = ServerSettings(data_dir=tmp_path / "data", admin_password=PASSWORD, **settings)
        app = create_app(client, settings=config)
        try:
            with ServerThread(app, http=connection_protocol(config)) as server:
                yield server.url, store, fake, app
        finally:
            app.state.xedullm.classroom.close()
            client.close()


def teacher(url):
    http = httpx.Client(base_url=url, timeout=20)
    assert http.post("/admin/login", data={"password": PASSWORD}).status_code == 303
    return http


def ask(url):
    return httpx.post(f"{url}/v1/chat/completions", timeout=20,
                      json={"messages": [{"role": "user", "content": "你好"}]})


def key_forms(key):
    """The ways a key could leak into text: plain, URL-encoded, base64, a 10-character piece."""
    raw = key.encode()
    return [key, quote(key, safe=""), base64.b64encode(raw).decode()[:-4],
            base64.b64encode(b"x:" + raw).decode()[4:-4], key[3:13], key[-10:]]


def assert_no_key(text, key=TEACHER_KEY):
    for form in key_forms(key):
        assert form.lower() not in text.lower(), form


def test_a_key_saved_over_the_api_is_checked_stored_masked_and_used_by_the_next_question(tmp_path, monkeypatch):
    with key_room(tmp_path, monkeypatch) as (url, store, fake, app):
        assert ask(url).status_code == 401
        http = teacher(url)
        wrong = http.post("/admin/api/key", json={"provider": "deepseek", "api_key": "sk-notreal1234567890abcd"},
                          headers=ADMIN)
        assert wrong.status_code == 400 and "没有保存" in wrong.json()["error"]["message"]
        assert store.get("deepseek").api_key == WRONG_KEY
        no_csrf = http.post("/admin/api/key", json={"provider": "deepseek", "api_key": TEACHER_KEY})
        assert no_csrf.status_code == 403 and store.get("deepseek").api_key == WRONG_KEY
        saved = http.post("/admin/api/key", json={"provider": "deepseek", "api_key": f"  Bearer {TEACHER_KEY}\n"},
                          headers=ADMIN)
        assert saved.status_code == 200, saved.text
        assert saved.json()["in_use"]["api_key"] == "sk-te…b1c3" and saved.json()["in_use"]["source"] == "store"
        assert_no_key(saved.text)
        assert store.get("deepseek").api_key == TEACHER_KEY
        answered = ask(url)
        assert answered.status_code == 200, answered.text
        boxes = http.get("/admin/api/keys").json()
        first = boxes["providers"][0]
        assert boxes["local"] is True and first["provider"] == "deepseek"
        assert first["key_url"] == "https://platform.deepseek.com/api_keys" and first["free_quota_zh"]
        assert len(first["leaked_zh"]) == 3 and first["key_url"] in first["leaked_zh"][0]
        assert first["in_use"]["api_key"] == "sk-te…b1c3"
        for path in ("/admin/api/keys", "/admin/api/overview", "/admin/api/export.csv", "/admin",
                     "/admin/static/admin.js", "/api/info"):
            assert_no_key(http.get(path).text)


def test_a_key_from_another_computer_is_refused_and_nothing_is_stored(tmp_path, monkeypatch):
    with key_room(tmp_path, monkeypatch, forwarded_allow_ips="127.0.0.1") as (url, store, fake, app):
        http = teacher(url)
        before = store.path.read_bytes()
        for forwarded in ({"X-Forwarded-For": "10.0.0.7"}, {"X-Forwarded-For": "127.0.0.1, 10.0.0.7"},
                          {"Forwarded": "for=192.168.1.20"}, {"X-Forwarded-For": "unknown"}):
            refused = http.post("/admin/api/key", json={"provider": "deepseek", "api_key": TEACHER_KEY},
                                headers={**ADMIN, **forwarded})
            assert refused.status_code == 403, forwarded
            assert "这台电脑" in refused.json()["error"]["message"]
        assert store.path.read_bytes() == before
        assert fake.requests == []   # not even checked with the provider
        assert http.get("/admin/api/keys", headers={"X-Forwarded-For": "10.0.0.7"}).json()["local"] is False
