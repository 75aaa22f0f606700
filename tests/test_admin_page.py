"""The teacher's admin page and API for real: password, throttling, the session cookie,
same-origin rules, students shut out — and the page itself driven in headless Chromium.
"""
from __future__ import annotations

import contextlib
import csv
import io
import time
from urllib.parse import urlsplit

import httpx
import openai
import pytest
from playwright.sync_api import expect

from conftest import TEACHER_KEY
from test_classroom_controls import ANSWER, CODE, ask, ledger, make_token, sdk, serving, wait_until

PASSWORD = "teacher-pass-2468"
XSS = '<img src=x onerror="window.__xss=1">'

expect.set_options(timeout=20_000)

ADMIN_PATHS = [
    ("GET", "/admin"), ("GET", "/admin/api/overview"), ("GET", "/admin/api/export.csv"),
    ("GET", "/admin/static/admin.js"), ("GET", "/admin/static/chart.js"), ("GET", "/admin/static/admin.css"),
    ("POST", "/admin/api/tokens"), ("POST", "/admin/api/tokens/update"), ("POST", "/admin/api/tokens/revoke"),
    ("POST", "/admin/api/settings"), ("GET", "/admin/api/keys"), ("POST", "/admin/api/key"),
    ("POST", "/admin/logout"), ("POST", "/admin/login"),
]


@pytest.fixture
def room(teacher_fake, tmp_path):
    with contextlib.ExitStack() as stack:
        yield lambda **settings: stack.enter_context(serving(
            teacher_fake, tmp_path, **{"admin_password": PASSWORD, **settings}))


def teacher(url, password=PASSWORD, **transport):
    """An HTTP client logged in to /admin."""
    http = httpx.Client(base_url=url, timeout=20, transport=httpx.HTTPTransport(**transport))
    response = http.post("/admin/login", data={"password": password})
    assert response.status_code == 303 and response.headers["location"] == "/admin"
    return http


def change(http, path, body, **headers):
    return http.post(path, json=body, headers={"X-Xedullm-Admin": "1", **headers})


# -- the way in ------------------------------------------------------------------------------
def test_admin_needs_the_password_and_sets_a_strict_session_cookie(room):
    r = room(access_code=CODE)
    page = httpx.get(f"{r.url}/admin")
    assert page.status_code == 401 and 'action="/admin/login"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for method, path in ADMIN_PATHS[1:-1]:
        assert httpx.request(method, r.url + path, headers={"X-Xedullm-Admin": "1"}).status_code == 401, path
    wrong = httpx.post(f"{r.url}/admin/login", data={"password": "guess"})
    assert wrong.status_code == 401 and "密码不对" in wrong.text and "Wrong password" in wrong.text
    right = httpx.post(f"{r.url}/admin/login", data={"password": PASSWORD})
    assert right.status_code == 303
    cookie = right.headers["set-cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/admin"):
        assert attribute in cookie
    assert PASSWORD not in cookie
    http = teacher(r.url)
    overview = http.get("/admin/api/overview")
    assert overview.status_code == 200 and overview.json()["settings"]["access_code_required"] is True
    assert http.get("/admin").status_code == 200 and 'id="chart"' in http.get("/admin").text
    value = http.cookies["xedullm_admin"]
    forged = value[:-1] + ("0" if value[-1] != "0" else "1")
    assert httpx.get(f"{r.url}/admin/api/overview", cookies={"xedullm_admin": forged}).status_code == 401
    expired = f"{int(time.time()) - 10}.{value.split('.')[1]}"
    assert httpx.get(f"{r.url}/admin/api/overview", cookies={"xedullm_admin": expired}).status_code == 401


def test_students_reach_no_admin_page_or_api(room):
    r = room(access_code=CODE)
    token = make_token(r.store, "学生甲")
    for key in (CODE, token, TEACHER_KEY):
        for method, path in ADMIN_PATHS:
            response = httpx.request(method, r.url + path, headers={
                "Authorization": f"Bearer {key}", "X-Xedullm-Admin": "1", "X-Xedullm-Session": "s"},
                data={"password": key} if path == "/admin/login" else None)
            assert response.status_code in (401, 403, 429), (key[:6], path, response.status_code)
            assert "session_secret" not in response.text and "学生甲" not in response.text


def test_changes_need_the_custom_header_and_the_same_origin_and_admin_answers_no_cors(room):
    r = room()
    http = teacher(r.url)
    body = {"system_prompt": "改了"}
    assert http.post("/admin/api/settings", json=body).status_code == 403
    assert change(http, "/admin/api/settings", body, Origin="http://evil.example").status_code == 403
    assert change(http, "/admin/api/settings", body, **{"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert http.get("/admin/api/overview", headers={"Sec-Fetch-Site": "same-site"}).status_code == 403
    assert httpx.get(f"{r.url}/api/info").json()["system_prompt"] is None
    assert change(http, "/admin/api/settings", body, Origin=r.url, **{"Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert httpx.get(f"{r.url}/api/info").json()["system_prompt"] == "改了"
    preflight = httpx.options(f"{r.url}/admin/api/settings", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-xedullm-admin, content-type"})
    assert "access-control-allow-origin" not in preflight.headers
    simple = http.get("/admin/api/overview", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in simple.headers
    # Students' endpoints keep their CORS: any origin, the same answer with or without one
    # (so a cached copy serves every page), and a browser's preflight for a chat request passes.
    assert httpx.get(f"{r.url}/v1/models", headers={"Origin": "http://app.local"}).headers[
        "access-control-allow-origin"] == "*"
    assert httpx.get(f"{r.url}/v1/models").headers["access-control-allow-origin"] == "*"
    chat_preflight = httpx.options(f"{r.url}/v1/chat/completions", headers={
        "Origin": "http://app.local", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert chat_preflight.status_code == 200
    assert chat_preflight.headers["access-control-allow-origin"] == "*"
    assert "authorization" in chat_preflight.headers["access-control-allow-headers"].lower()
    answer = httpx.post(f"{r.url}/v1/chat/completions", headers={"Origin": "http://app.local"},
                        json={"messages": [{"role": "user", "content": "你好"}]})
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "*"
    cross_login = httpx.post(f"{r.url}/admin/login", data={"password": PASSWORD},
                             headers={"Origin": "http://evil.example"})
    assert cross_login.status_code == 403 and "set-cookie" not in cross_login.headers


def test_wrong_passwords_are_throttled_per_address_and_across_restarts(teacher_fake, tmp_path):
    with serving(teacher_fake, tmp_path, admin_password=PASSWORD) as r:
        statuses = [httpx.post(f"{r.url}/admin/login", data={"password": f"guess{i}"}).status_code
                    for i in range(4)]
        assert statuses == [401, 401, 429, 429]
        locked = httpx.post(f"{r.url}/admin/login", data={"password": PASSWORD})   # even the right one
        assert locked.status_code == 429 and "set-cookie" not in locked.headers
        assert 1 <= int(locked.headers["retry-after"]) <= 30 and "请等" in locked.text
        # Another computer is not locked out by this one.
        assert teacher(r.url, local_address="127.0.0.2").get("/admin/api/overview").status_code == 200
    with serving(teacher_fake, tmp_path, admin_password=PASSWORD) as again:
        assert httpx.post(f"{again.url}/admin/login", data={"password": PASSWORD}).status_code == 429
        again.store.clear_login_failures("127.0.0.1")   # what waiting out the delay amounts to
        assert teacher(again.url).get("/admin/api/overview").status_code == 200


def test_a_new_password_ends_old_sessions_and_a_generated_one_is_made(teacher_fake, tmp_path):
    with serving(teacher_fake, tmp_path, admin_password=PASSWORD) as first:
        cookie = teacher(first.url).cookies["xedullm_admin"]
        assert httpx.get(f"{first.url}/admin/api/overview", cookies={"xedullm_admin": cookie}).status_code == 200
    with serving(teacher_fake, tmp_path) as second:
        assert second.classroom.password_generated and len(second.classroom.admin_password) == 12
        assert httpx.get(f"{second.url}/admin/api/overview", cookies={"xedullm_admin": cookie}).status_code == 401
        assert teacher(second.url, second.classroom.admin_password).get("/admin/api/overview").status_code == 200


# -- what the teacher can do -------------------------------------------------------------------
def test_tokens_settings_and_export_through_the_admin_api(room):
    r = room(access_code=CODE)
    http = teacher(r.url)
    made = change(http, "/admin/api/tokens", {"name": "=HYPERLINK(\"x\")", "daily_tokens": 500,
                                               "models": "deepseek-reasoner"})
    assert made.status_code == 200
    token = made.json()["token"]
    assert made.headers["cache-control"] == "no-store"
    assert change(http, "/admin/api/tokens", {"name": "=HYPERLINK(\"x\")"}).status_code == 400
    assert change(http, "/admin/api/tokens", {"name": "x", "rpm": -1}).status_code == 400
    assert ask(r, key=token).status_code == 200
    assert change(http, "/admin/api/tokens/update", {"name": "=HYPERLINK(\"x\")", "rpm": 1}).status_code == 200
    assert ask(r, key=token).status_code == 429
    listed = http.get("/admin/api/overview").json()["tokens"]
    assert [(t["name"], t["rpm"], t["daily_tokens"], t["revoked"]) for t in listed] == \
        [("=HYPERLINK(\"x\")", 1, None, None)]
    assert change(http, "/admin/api/tokens/revoke", {"name": "=HYPERLINK(\"x\")"}).status_code == 200
    assert ask(r, key=token).status_code == 401

    assert change(http, "/admin/api/settings", {"system_prompt": "只用中文回答。", "model": "deepseek-reasoner",
                                                 "daily_budget": 100000, "review": True}).status_code == 200
    assert ask(r, key=CODE, content="hi").status_code == 200
    upstream = r.fake.chat_requests[-1]["json"]
    assert upstream["model"] == "deepseek-reasoner"
    assert upstream["messages"][0] == {"role": "system", "content": "只用中文回答。"}
    assert httpx.get(f"{r.url}/api/info", headers={"Authorization": f"Bearer {CODE}"}).json()["system_prompt"] == "只用中文回答。"
    settings = http.get("/admin/api/overview").json()["settings"]
    assert (settings["daily_budget"], settings["review"], settings["model"]) == (100000, True, "deepseek-reasoner")
    assert change(http, "/admin/api/settings", {"daily_budget": "lots"}).status_code == 400

    export = http.get("/admin/api/export.csv")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    assert "attachment" in export.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(export.content.decode("utf-8-sig"))))
    assert rows[0][:4] == ["id", "time", "who", "model"] and rows[0][-1] == "conversation"
    assert len(rows) == 1 + len(ledger(r))
    assert [row[2] for row in rows[1:3]] == ["'=HYPERLINK(\"x\")"] * 2   # no formula in a spreadsheet
    text = export.content.decode("utf-8-sig")
    for secret in (token, token[3:], CODE, TEACHER_KEY, PASSWORD):
        assert secret not in text


# -- the page in a browser ---------------------------------------------------------------------

def test_admin_page_in_a_browser(room, browser, tmp_path):
    r = room(review=True)
    # Students' input shown on the page: a made-up tab id, a token name and a question, all hostile.
    assert ask(r, made_up_session=XSS, content=XSS).status_code == 200
    hostile = make_token(r.store, XSS)
    assert ask(r, key=hostile, content="再来").status_code == 200
    assert ask(r, key="anything", content="第三个").status_code == 200

    context = browser.new_context(viewport={"width": 1200, "height": 900}, locale="zh-CN", accept_downloads=True)
    errors, hosts = [], set()
    context.on("weberror", lambda e: errors.append(str(e.error)))
    context.on("request", lambda q: hosts.add(urlsplit(q.url).hostname))
    try:
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(f"{r.url}/admin")
        page.fill("#password", "not it")
        page.click("button[type=submit]")
        expect(page.locator("#message")).to_contain_text("密码不对")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")

        # Totals, the per-student table, the chart.
        expect(page.locator("#t-requests")).to_have_text("3")
        total = sum(u["total_tokens"] for u in r.fake.usage_log)
        expect(page.locator("#t-tokens")).to_have_text(str(total))
        students = page.locator("#students tbody")
        expect(students).to_contain_text(XSS)          # the token's name
        expect(students).not_to_contain_text("browser:")   # an id the server did not issue is the address
        expect(students).to_contain_text("ip:127.0.0.1")
        assert page.locator("#chart svg rect.bar").count() == 36
        assert sum(int(b.get_attribute("data-tokens")) for b in page.locator("#chart rect.bar").all()) == total
        expect(page.locator("#recent tbody")).to_contain_text("ok")
        page.locator("#recent details summary").last.click()
        expect(page.locator("#recent details").last).to_contain_text(XSS)

        # Create a token, use it, see it counted, revoke it.
        page.fill("#tk-name", "第五组")
        page.fill("#tk-daily", "1000")
        page.click("#tk-submit")
        expect(page.locator("#new-token")).to_be_visible()
        token = page.locator("#new-token-value").inner_text()
        assert len(token) == 8 and not set(token) & set("0O1lI")
        assert sdk(r, token).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "你好"}]).choices[0].message.content == ANSWER + "你好"
        page.click("#refresh")
        row = page.locator("#tokens tbody tr", has_text="第五组")
        expect(row).to_contain_text("有效")
        expect(row.locator("td").nth(1)).not_to_have_text("0")
        row.locator("button.danger").click()
        expect(row).to_contain_text("已停用")
        with pytest.raises(openai.AuthenticationError):
            sdk(r, token).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])

        # Change the system prompt; the next student request carries it.
        page.fill("#system", "你是一位数学老师，只讲数学。")
        page.click("#settings button[type=submit]")
        expect(page.locator("#settings-status")).to_contain_text("已保存")
        assert ask(r, content="1+1=?").status_code == 200
        assert r.fake.chat_requests[-1]["json"]["messages"][0] == {
            "role": "system", "content": "你是一位数学老师，只讲数学。"}

        # Export CSV: the rows, and no token in it.
        wait_until(lambda: len(ledger(r)) == 6)
        with page.expect_download() as download:
            page.click("#export")
        text = (tmp_path / "export.csv")
        download.value.save_as(text)
        rows = list(csv.reader(io.StringIO(text.read_text("utf-8-sig"))))
        assert len(rows) == 7 and rows[0][0] == "id"
        assert token not in text.read_text("utf-8-sig")

        # Nothing hostile ran, nothing left the server, no script errors.
        page.click("#refresh")
        expect(page.locator("#t-requests")).to_have_text("6")
        assert page.locator("#recent details[open]").count() == 1    # what the teacher opened stays open
        assert page.evaluate("window.__xss") is None
        assert page.locator("#students img, #tokens img, #recent img, #errors img").count() == 0
        assert errors == [] and hosts == {"127.0.0.1"}
        assert TEACHER_KEY not in page.content() and PASSWORD not in page.content()
    finally:
        context.close()
