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


# -- in the browser ------------------------------------------------------------------------------
@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1200, "height": 900}, locale="zh-CN")
    ctx.errors, ctx.bodies = [], []
    ctx.on("weberror", lambda e: ctx.errors.append(str(e.error)))

    def keep(response):
        with contextlib.suppress(Exception):
            ctx.bodies.append((response.url, response.text(), json.dumps(dict(response.headers))))
    ctx.on("response", keep)
    yield ctx
    assert ctx.errors == []
    ctx.close()


def test_the_key_box_saves_a_key_and_the_next_question_is_answered_with_no_key_on_any_page(
        tmp_path, monkeypatch, context, caplog):
    caplog.set_level("INFO", logger="xedullm.server")
    with key_room(tmp_path, monkeypatch) as (url, store, fake, app):
        assert ask(url).status_code == 401
        page = open_admin(context, url, PASSWORD)
        alert = page.locator("#alerts .alert-upstream_auth")
        page.reload()   # the 401 above is in the ledger now: the alert shows, linking to the key box
        expect(alert).to_be_visible()
        expect(alert.locator("a.alert-key-link")).to_have_attribute("href", "#key-deepseek")
        box = page.locator("#key-deepseek")
        expect(box).to_have_attribute("open", "")
        expect(box.locator("a[href='https://platform.deepseek.com/api_keys']").first).to_be_visible()
        expect(box.locator(".key-leaked li")).to_have_count(3)
        expect(box.locator(".key-in-use")).to_contain_text("sk-re…AKED")
        assert page.locator("#key-input-deepseek").get_attribute("type") == "password"
        page.fill("#key-input-deepseek", TEACHER_KEY)
        box.locator("button[type=submit]").click()
        expect(page.locator("#key-status-deepseek")).to_contain_text("已验证并保存")
        assert page.locator("#key-input-deepseek").input_value() == ""
        expect(box.locator(".key-in-use")).to_contain_text("sk-te…b1c3")
        assert store.get("deepseek").api_key == TEACHER_KEY
        answered = ask(url)
        assert answered.status_code == 200, answered.text
        expect(alert).to_have_count(0)       # the next answer cleared it
        # The key scan: every page and API answer the browser got, then the others by hand.
        for path in ("/admin", "/admin/api/overview", "/admin/api/keys", "/admin/api/export.csv",
                     "/admin/static/admin.js", "/admin/static/keys.js", "/", "/api/info"):
            got = page.request.get(f"{url}{path}")   # the page's own session cookie
            assert got.ok, path
            assert_no_key(got.text() + json.dumps(got.headers))
        assert_no_key(page.content())
        assert len(context.bodies) > 10   # what the browser was sent (the save's answer among them)
        for where, body, headers in context.bodies:
            assert_no_key(body + headers)
        assert_no_key(answered.text)
        assert_no_key(caplog.text)
        assert_no_key(caplog.text, WRONG_KEY)
        assert "sk-te…b1c3" in caplog.text   # the log says which key is now in use, masked


def test_the_key_box_refuses_a_key_from_another_computer_behind_the_trusted_proxy(tmp_path, monkeypatch, browser):
    with key_room(tmp_path, monkeypatch, forwarded_allow_ips="127.0.0.1") as (url, store, fake, app):
        before = store.path.read_bytes()
        ctx = browser.new_context(extra_http_headers={"X-Forwarded-For": "10.0.0.7"})
        try:
            page = open_admin(ctx, url, PASSWORD)
            box = page.locator("#key-deepseek")
            expect(box.locator(".status")).to_contain_text("只能在运行服务器的这台电脑上")
            assert page.locator("#key-input-deepseek").is_disabled()
            status = page.evaluate("""async (key) => (await fetch('/admin/api/key', {method: 'POST',
                headers: {'Content-Type': 'application/json', 'X-Xedullm-Admin': '1'},
                body: JSON.stringify({provider: 'deepseek', api_key: key})})).status""", TEACHER_KEY)
            assert status == 403
        finally:
            ctx.close()
        assert store.path.read_bytes() == before and fake.requests == []


def _request(client, server, headers=()):
    from starlette.requests import Request

    return Request({"type": "http", "method": "POST", "path": "/admin/api/key", "client": client,
                    "server": server, "headers": [(k.lower().encode(), v.encode()) for k, v in headers]})


def test_this_machine_is_its_loopback_or_the_address_it_was_reached_at_and_nothing_else():
    from xedullm.server.admin.key_routes import from_this_machine

    lan = ("192.168.1.5", 7860)
    assert from_this_machine(_request(("127.0.0.1", 5000), lan))
    assert from_this_machine(_request(("::1", 5000), ("::1", 7860)))
    # The teacher's browser on the server's own LAN address (a server bound to that address only).
    assert from_this_machine(_request(("192.168.1.5", 5000), lan))
    assert not from_this_machine(_request(("192.168.1.7", 5000), lan))
    assert not from_this_machine(_request(("127.0.0.1", 5000), lan, [("X-Forwarded-For", "192.168.1.7")]))
    assert not from_this_machine(_request(("127.0.0.1", 5000), lan, [("X-Real-IP", "10.0.0.9")]))
    assert not from_this_machine(_request(("127.0.0.1", 5000), lan, [("Forwarded", 'for="[2001:db8::1]"')]))
    assert from_this_machine(_request(("127.0.0.1", 5000), lan, [("X-Forwarded-For", "127.0.0.1")]))
    assert not from_this_machine(_request(None, lan))
