"""The teacher's side of a real lesson, for real: names beside callers, review per student,
getting in (QR codes read back by an independent decoder, short tokens in batches, printable
sheets), alerts when the teacher's own key or balance is the problem, pausing the class and
changing the access code live — our server on 127.0.0.1 in front of a fake provider, the
pages in headless Chromium, the CLI as a subprocess.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import numpy
import pytest
import zxingcpp
from playwright.sync_api import expect

from xedullm import Client
from xedullm.server.class_address import lan_addresses
from xedullm.server.classroom import student_tokens
from xedullm.server.store.contract import LedgerRow
from xedullm.server.store.sqlite import SQLiteStore
from xedullm.testing import Fault

from conftest import TEACHER_KEY, browser_headers, browser_who, open_admin, serve_process
from test_admin_page import PASSWORD, change, teacher
from test_classroom_controls import ANSWER, CODE, ask, make_token, run_cli
from test_classroom_controls import serving as classroom_serving
from test_web_page import open_page, send

ROOT = Path(__file__).resolve().parent.parent
NAME_HEADER = "X-XEduLLM-Name"

expect.set_options(timeout=20_000)


def serving(fake, data_dir, **settings):
    """The classroom controls' server, with the teacher's admin password set."""
    return classroom_serving(fake, data_dir, **{"admin_password": PASSWORD, **settings})


@pytest.fixture
def room(teacher_fake, tmp_path):
    """Factory: ``room(api_key=TEACHER_KEY, **settings)``, one server on tmp_path."""
    with contextlib.ExitStack() as stack:
        yield lambda **settings: stack.enter_context(serving(teacher_fake, tmp_path, **settings))


def named(r, name, session, key=None, content="你好"):
    headers = {NAME_HEADER: quote(name), **browser_headers(r.url, session, key or "")}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(f"{r.url}/v1/chat/completions", headers=headers, timeout=20,
                      json={"messages": [{"role": "user", "content": content}]})


def overview(http):
    response = http.get("/admin/api/overview")
    assert response.status_code == 200
    return response.json()


def expected_class_url(url):
    """What the admin page should put in its QR code when the teacher opens it on 127.0.0.1."""
    parts = urlsplit(url)
    lan = lan_addresses()
    return f"http://{lan[0]}:{parts.port}" if lan else url


def decode(pixels):
    """The text of the one QR code in a grey image (list of rows, 0 = black), read by zxing-cpp."""
    image = numpy.array(pixels, dtype=numpy.uint8)
    found = zxingcpp.read_barcodes(image)
    assert len(found) == 1, f"{len(found)} codes found"
    return found[0].text


# -- names ---------------------------------------------------------------------------------------
def test_names_reach_the_table_the_review_and_the_csv_with_the_browser_id_beside_them(room):
    r = room(review=True)
    assert named(r, "张三", "tab-a", content="太阳为什么是热的？").status_code == 200
    assert named(r, "张三", "tab-b", content="月亮呢？").status_code == 200   # another 张三
    assert named(r, "李四 ", "tab-c", content="一加一").status_code == 200
    token = make_token(r.store, "第二组")
    assert named(r, "假名字", "tab-d", key=token, content="令牌的问题").status_code == 200
    http = teacher(r.url)
    students = {s["who"]: s["name"] for s in overview(http)["students"]}
    assert students == {browser_who(r.url, "tab-a"): "张三", browser_who(r.url, "tab-b"): "张三", browser_who(r.url, "tab-c"): "李四",
                        "第二组": "第二组"}   # a token's own name wins over what the page says

    everyone = http.get("/admin/api/review").json()
    assert everyone["review"] is True
    assert [c["question"] for c in everyone["conversations"]] == ["令牌的问题", "一加一", "月亮呢？", "太阳为什么是热的？"]
    one = http.get("/admin/api/review", params={"who": browser_who(r.url, "tab-b")}).json()["conversations"]
    assert [(c["name"], c["question"], c["answer"]) for c in one] == [("张三", "月亮呢？", ANSWER + "月亮呢？")]
    searched = http.get("/admin/api/review", params={"q": "太阳"}).json()["conversations"]
    assert [c["who"] for c in searched] == [browser_who(r.url, "tab-a")]
    by_name = http.get("/admin/api/review", params={"q": "张三"}).json()["conversations"]
    assert sorted(c["who"] for c in by_name) == [browser_who(r.url, "tab-a"), browser_who(r.url, "tab-b")]

    rows = list(csv.DictReader(io.StringIO(http.get("/admin/api/export.csv").content.decode("utf-8-sig"))))
    assert [(row["who"], row["name"]) for row in rows] == [
        (browser_who(r.url, "tab-a"), "张三"), (browser_who(r.url, "tab-b"), "张三"), (browser_who(r.url, "tab-c"), "李四"), ("第二组", "第二组")]

    # With review off, the conversations kept so far are not shown.
    assert change(http, "/admin/api/settings", {"review": False}).status_code == 200
    assert http.get("/admin/api/review").json() == {"review": False, "conversations": []}
    assert httpx.get(f"{r.url}/api/info").json()["review"] is False


def test_unreadable_or_overlong_names_are_cleaned_not_trusted(room):
    r = room()
    raw = httpx.post(f"{r.url}/v1/chat/completions", timeout=20, json={"messages": [{"role": "user", "content": "x"}]},
                     headers={NAME_HEADER: "%E5%BC%A0%0A%0D%09%E4%B8%89" + quote("很" * 50), **browser_headers(r.url, "s1")})
    assert raw.status_code == 200
    bad = httpx.post(f"{r.url}/v1/chat/completions", timeout=20, json={"messages": [{"role": "user", "content": "x"}]},
                     headers={NAME_HEADER: "%FF%FE", **browser_headers(r.url, "s2")})
    assert bad.status_code == 200
    names = {s["who"]: s["name"] for s in overview(teacher(r.url))["students"]}
    assert names[browser_who(r.url, "s1")] == ("张 三" + "很" * 50)[:32]
    assert names[browser_who(r.url, "s2")] is None


def test_require_name_refuses_nameless_browsers_clearly_but_not_tokens(room):
    r = room(require_name=True)
    assert httpx.get(f"{r.url}/api/info").json()["require_name"] is True
    nameless = ask(r, session="tab-1")
    assert nameless.status_code == 400
    error = nameless.json()["error"]
    assert error["code"] == "name_required" and "名字" in error["message"] and "name" in error["message"]
    assert named(r, "王五", "tab-1").status_code == 200
    assert ask(r, key=make_token(r.store, "第三组")).status_code == 200
    # Turned off live, the name is optional again.
    assert change(teacher(r.url), "/admin/api/settings", {"require_name": False}).status_code == 200
    assert ask(r, session="tab-2").status_code == 200


# -- steering live ---------------------------------------------------------------------------
def test_pause_answers_503_for_everyone_until_resumed(room):
    r = room(access_code=CODE)
    http = teacher(r.url)
    token = make_token(r.store, "甲")
    assert change(http, "/admin/api/settings", {"paused": True}).status_code == 200
    info = httpx.get(f"{r.url}/api/info", headers={"Authorization": f"Bearer {CODE}"}).json()
    assert info["paused"] is True
    assert overview(http)["settings"]["paused"] is True
    before = len(r.fake.chat_requests)
    for key in (CODE, token):
        paused = ask(r, key=key)
        assert paused.status_code == 503
        assert paused.json()["error"]["code"] == "class_paused"
        assert "老师暂停了课堂" in paused.json()["error"]["message"] and "paused" in paused.json()["error"]["message"]
    assert ask(r, key="wrong").status_code == 401   # strangers still hear only "access code needed"
    usage = httpx.get(f"{r.url}/v1/usage", headers={"Authorization": f"Bearer {token}"})
    assert usage.status_code == 200 and usage.json()["who"] == "甲"   # a student may still look at their usage
    assert len(r.fake.chat_requests) == before
    assert change(http, "/admin/api/settings", {"paused": False}).status_code == 200
    assert ask(r, key=CODE).status_code == 200


def test_access_code_changed_live_ends_the_old_one_at_once_and_can_be_removed(room):
    r = room(access_code=CODE)
    http = teacher(r.url)
    assert ask(r, key=CODE).status_code == 200
    assert change(http, "/admin/api/settings", {"access_code": "new-code-77"}).status_code == 200
    old = ask(r, key=CODE)
    assert old.status_code == 401 and old.json()["error"]["code"] == "invalid_access_code"
    assert ask(r, key="new-code-77").status_code == 200
    assert "new-code-77" not in json.dumps(overview(http)) and "new-code-77" not in httpx.get(f"{r.url}/api/info").text
    assert change(http, "/admin/api/settings", {"access_code": None}).status_code == 200
    assert httpx.get(f"{r.url}/api/info").json()["access_code_required"] is False
    assert ask(r).status_code == 200


def test_unknown_or_ill_typed_settings_are_a_400_naming_them(room):
    r = room()
    http = teacher(r.url)
    for body, named_key in (({"pasued": True}, "pasued"), ({"paused": "yes"}, "paused"),
                            ({"require_name": 1}, "require_name"), ({"access_code": 42}, "access_code"),
                            ({"review": True, "colour": "red"}, "colour")):
        response = change(http, "/admin/api/settings", body)
        assert response.status_code == 400, body
        assert named_key in response.json()["error"]["message"]
    settings = overview(http)["settings"]
    assert (settings["paused"], settings["review"], settings["require_name"]) == (False, False, False)


# -- alerts ------------------------------------------------------------------------------------
def test_alerts_tell_the_teacher_when_their_key_balance_provider_or_budget_is_the_problem(teacher_fake, tmp_path):
    with serving(teacher_fake, tmp_path / "a", api_key="sk-revoked-or-mistyped-key", access_code=CODE) as r:
        http = teacher(r.url)
        assert ask(r, key="typo").status_code == 401   # one student's typo: not the teacher's problem
        assert overview(http)["alerts"] == []
        refused = ask(r, key=CODE)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
        assert "老师的密钥" in refused.json()["error"]["message"] and "请告诉老师" in refused.json()["error"]["message"]
        [alert] = overview(http)["alerts"]
        assert alert["kind"] == "upstream_auth"
        assert "https://platform.deepseek.com/api_keys" in alert["message"] and "xedullm key set deepseek" in alert["message"]
        assert "sk-revoked" not in json.dumps(overview(http))

    with serving(teacher_fake, tmp_path / "b", daily_budget=10_000) as r:
        http = teacher(r.url)
        teacher_fake.faults.append(Fault.quota())
        assert ask(r).status_code == 429
        assert [a["kind"] for a in overview(http)["alerts"]] == ["upstream_quota"]
        assert "余额" in overview(http)["alerts"][0]["zh"] and "balance" in overview(http)["alerts"][0]["en"]
        assert ask(r).status_code == 200                 # the next answer clears it
        assert overview(http)["alerts"] == []
        teacher_fake.faults.extend([Fault.status(503), Fault.status(500)])
        assert ask(r).status_code == 502 and ask(r).status_code == 502
        assert [a["kind"] for a in overview(http)["alerts"]] == ["upstream_down"]
        assert ask(r).status_code == 200
        used = overview(http)["totals"]["tokens"]
        assert change(http, "/admin/api/settings", {"daily_budget": used + 1}).status_code == 200
        [budget] = overview(http)["alerts"]
        assert budget["kind"] == "budget_nearly_used" and f"{used}/{used + 1}" in budget["message"]


# -- tokens and sheets (CLI) --------------------------------------------------------------------
def test_a_batch_of_short_tokens_from_the_cli_with_a_printable_sheet(room, tmp_path):
    r = room(access_code=CODE)
    sheet = tmp_path / "slips.html"
    made = run_cli("tokens", "create", "--count", "40", "--prefix", "学生", "--sheet", str(sheet),
                   "--url", "http://192.168.1.5:7860", data_dir=tmp_path)
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    assert len(lines) == 40 and "40" in made.stderr and str(sheet) in made.stderr
    pairs = [line.split(" ") for line in lines]
    assert [name for name, _ in pairs] == [f"学生{i:02d}" for i in range(1, 41)]
    tokens = [token for _, token in pairs]
    assert len(set(tokens)) == 40
    for token in tokens:
        assert len(token) == 8 and set(token) <= set(student_tokens.ALPHABET) and not set(token) & set("0O1lI")
    # Every token works; typed in capitals from the slip, too.
    assert ask(r, key=tokens[0]).status_code == 200 and ask(r, key=tokens[39].upper()).status_code == 200
    assert {s["who"] for s in overview(teacher(r.url))["students"]} == {"学生01", "学生40"}

    page = sheet.read_text("utf-8")
    assert all(name in page and token in page for name, token in pairs)
    assert page.count('class="slip"') == 40 and "<svg" in page and "http://192.168.1.5:7860" in page
    assert "http" not in page.replace("http://192.168.1.5:7860", "").replace("http://www.w3.org/2000/svg", "")
    assert oct(sheet.stat().st_mode & 0o777) == "0o600"

    # A second batch goes on where the first ended; CSV works too; a wrong sheet name makes nothing.
    more = run_cli("tokens", "create", "--count", "2", "--sheet", str(tmp_path / "more.csv"), data_dir=tmp_path)
    assert more.returncode == 0, more.stderr
    assert [line.split(" ")[0] for line in more.stdout.splitlines()] == ["学生41", "学生42"]
    rows = list(csv.reader(io.StringIO((tmp_path / "more.csv").read_text("utf-8-sig"))))
    assert rows == [["name", "token", "url"]] + [line.split(" ") + [""] for line in more.stdout.splitlines()]
    bad = run_cli("tokens", "create", "--count", "3", "--sheet", str(tmp_path / "x.pdf"), data_dir=tmp_path)
    assert bad.returncode == 1 and ".html" in bad.stderr and "Traceback" not in bad.stderr
    assert len(r.store.tokens()) == 42
    both = run_cli("tokens", "create", "某人", "--count", "3", data_dir=tmp_path)
    assert both.returncode == 1 and "--count" in both.stderr

    # One named token still prints the token alone on stdout.
    single = run_cli("tokens", "create", "小红", "--length", "12", data_dir=tmp_path)
    assert single.returncode == 0 and single.stdout.count("\n") == 1 and len(single.stdout.strip()) == 12
    assert ask(r, key=single.stdout.strip()).status_code == 200


def test_tokens_made_by_older_versions_keep_working(room):
    r = room(access_code=CODE)
    old = "xs-" + "Ab3_" * 8   # the former shape: prefix + 32 url-safe characters, case-sensitive
    r.store.add_token("老令牌", student_tokens.digest(old), student_tokens.limits_from(), time.time())
    assert ask(r, key=old).status_code == 200
    assert ask(r, key=old.lower()).status_code == 401
    assert ask(r, key="xs-not-a-real-token").status_code == 401


def test_a_data_file_of_the_previous_version_is_migrated(tmp_path):
    db = sqlite3.connect(str(tmp_path / "classroom.sqlite3"))
    db.executescript("""
        CREATE TABLE ledger (id INTEGER PRIMARY KEY, started REAL NOT NULL, day TEXT NOT NULL, latency REAL NOT NULL,
            who TEXT, model TEXT, stream INTEGER NOT NULL, status INTEGER NOT NULL, outcome TEXT NOT NULL,
            admitted INTEGER NOT NULL, prompt_tokens INTEGER, completion_tokens INTEGER, total_tokens INTEGER,
            charged INTEGER NOT NULL, conversation TEXT);
        CREATE TABLE daily (day TEXT NOT NULL, who TEXT NOT NULL, requests INTEGER NOT NULL, tokens INTEGER NOT NULL,
            errors INTEGER NOT NULL, PRIMARY KEY (day, who)) WITHOUT ROWID;
        CREATE TABLE holds (id TEXT PRIMARY KEY, who TEXT NOT NULL, started REAL NOT NULL, tokens INTEGER NOT NULL,
            expires REAL NOT NULL);
        CREATE TABLE tokens (name TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE, created REAL NOT NULL, revoked REAL,
            daily_tokens INTEGER, rpm INTEGER, concurrent INTEGER, models TEXT NOT NULL, expires REAL);
        CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE admin_logins (client TEXT PRIMARY KEY, failures INTEGER NOT NULL, last REAL NOT NULL);
        INSERT INTO ledger VALUES (1, 1000.0, '2026-01-05', 0.5, 'browser:x', 'm', 1, 200, 'ok', 1, 3, 4, 7, 7, NULL);
        INSERT INTO daily VALUES ('2026-01-05', 'browser:x', 1, 7, 0);
        PRAGMA user_version=1;
    """)
    db.close()
    store = SQLiteStore(tmp_path)
    try:
        [old] = list(store.rows())
        assert (old["who"], old["charged"], old["name"], old["fallback_reason"]) == ("browser:x", 7, None, None)
        totals = store.day_totals("2026-01-05")
        assert (totals.tokens, totals.students[0].name) == (7, None)
        store.record(LedgerRow(started=1001.0, day="2026-01-05", latency=0.1, who="browser:x", model="m", stream=True,
                               status=200, outcome="ok", admitted=True, prompt_tokens=1, completion_tokens=1,
                               total_tokens=2, charged=2, conversation='{"messages": [], "answer": ""}',
                               name="张三"))
        assert store.day_totals("2026-01-05").students[0].name == "张三"
        assert [c["name"] for c in store.conversations("2026-01-05")] == ["张三"]
    finally:
        store.close()
    again = SQLiteStore(tmp_path)   # opening a migrated file again changes nothing
    try:
        assert len(list(again.rows())) == 2
    finally:
        again.close()


# -- the QR code at start ------------------------------------------------------------------------
def terminal_pixels(block):
    """Half-block characters back to pixels: each character is two modules, one above the other."""
    ink = {"█": (1, 1), "▀": (1, 0), "▄": (0, 1), " ": (0, 0)}
    width = max(len(line) for line in block)
    rows = []
    for line in block:
        cells = [ink[c] for c in line.ljust(width)]
        rows += [[c[0] for c in cells], [c[1] for c in cells]]
    # The terminal draws light modules in ink (for dark terminals); a quiet zone of light around it.
    image = [[0 if v == 0 else 255 for v in row] for row in rows]
    image = [[255] * (width + 8)] * 4 + [[255] * 4 + row + [255] * 4 for row in image] + [[255] * (width + 8)] * 4
    return [[v for v in row for _ in range(4)] for row in image for _ in range(4)]


def test_serve_prints_the_class_address_as_a_qr_code(teacher_fake, tmp_path):
    args = ["-p", "deepseek", "--base-url", teacher_fake.base_url, "--host", "127.0.0.1", "--port", "0",
            "--data-dir", str(tmp_path), "--require-name", "--paused"]
    env = {"DEEPSEEK_API_KEY": TEACHER_KEY, "PYTHONIOENCODING": "utf-8"}
    with serve_process(args, env, until="用量记录保存在") as (proc, lines):
        url = next(line for line in lines if line.startswith("Running on local URL:")).split()[-1]
        start = next(i for i, line in enumerate(lines) if line.startswith("扫码打开"))
        block = []
        for line in lines[start + 1:]:
            if not set(line.rstrip("\n")) <= set("█▀▄ "):
                break
            block.append(line.rstrip("\n"))
        assert url in lines[start] and len(block) > 10
        assert decode(terminal_pixels(block)) == url
        assert any("名字" in line for line in lines) and any("暂停" in line for line in lines)
        info = httpx.get(f"{url}/api/info").json()
        assert (info["require_name"], info["paused"]) == (True, True)


# -- in the browser ------------------------------------------------------------------------------
@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1200, "height": 900}, locale="zh-CN", accept_downloads=True)
    ctx.errors = []
    ctx.hosts = set()
    ctx.on("weberror", lambda e: ctx.errors.append(str(e.error)))
    ctx.on("request", lambda q: ctx.hosts.add(urlsplit(q.url).hostname))
    yield ctx
    assert ctx.errors == []
    assert ctx.hosts <= {"127.0.0.1"}
    ctx.close()


def admin_page(context, r):
    page = open_admin(context, r.url, PASSWORD)
    expect(page.locator("#t-requests")).not_to_have_text("–")
    return page


def test_the_page_asks_once_for_a_name_and_the_teacher_sees_it(context, room):
    r = room(require_name=True, review=True)
    page = open_page(context, r)
    dialog = page.locator("#name-dialog")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")          # a required name cannot be waved away
    expect(dialog).to_be_visible()
    expect(page.locator(".notice-review")).to_contain_text("课堂回顾")
    page.locator("#name-input").fill("  张三  ")
    page.locator("#name-input").press("Enter")
    expect(dialog).to_have_count(0)
    expect(page.locator(".notice-name")).to_contain_text("张三")
    send(page, "你好呀")
    expect(page.locator(".msg.assistant .bubble").last).to_have_text(ANSWER + "你好呀")
    assert r.fake.chat_requests[-1]["json"]["messages"][-1]["content"] == "你好呀"

    page.reload()                           # kept in the browser: not asked again
    expect(page.locator(".notice-name")).to_contain_text("张三")
    expect(page.locator("#name-dialog")).to_have_count(0)

    admin = admin_page(context, r)
    row = admin.locator("#students tbody tr", has_text="张三")
    expect(row).to_contain_text("browser:")
    row.locator("button", has_text="对话").click()
    expect(admin.locator("#review-list details")).to_have_count(1)
    admin.locator("#review-list summary").click()
    expect(admin.locator("#review-list details")).to_contain_text(ANSWER + "你好呀")
    admin.locator("#review-who").select_option("")
    admin.locator("#review-q").fill("没有这句话")
    expect(admin.locator("#review-list details")).to_have_count(0)


def test_pause_and_resume_from_the_admin_page(context, room):
    r = room()
    admin = admin_page(context, r)
    student = open_page(context, r)
    expect(student.locator(".notice-paused")).to_have_count(0)
    admin.click("#pause")
    expect(admin.locator("#paused-banner")).to_be_visible()
    expect(admin.locator("#pause")).to_contain_text("继续")
    send(student, "可以问吗")
    expect(student.locator(".msg.error")).to_contain_text("老师暂停了课堂")
    student.reload()
    expect(student.locator(".notice-paused")).to_contain_text("老师暂停了课堂")
    admin.click("#pause")
    expect(admin.locator("#paused-banner")).to_be_hidden()
    student.reload()
    expect(student.locator(".notice-paused")).to_have_count(0)
    send(student, "现在呢")
    expect(student.locator(".msg.assistant .bubble").last).to_have_text(ANSWER + "现在呢")


def test_the_access_code_is_changed_and_removed_on_the_admin_page(context, room):
    r = room(access_code=CODE)
    admin = admin_page(context, r)
    expect(admin.locator("#access-code-state")).to_contain_text("已开启")
    # A code in Chinese could not travel in a request header: refused, with an example that can.
    admin.fill("#access-code", "数学课42")
    admin.click("#settings button[type=submit]")
    expect(admin.locator("#settings-status")).to_contain_text("math42")
    assert ask(r, key=CODE).status_code == 200
    admin.fill("#access-code", "new-code-9")
    admin.click("#settings button[type=submit]")
    expect(admin.locator("#settings-status")).to_contain_text("已保存")
    assert ask(r, key=CODE).status_code == 401
    assert Client(xedu_url=r.url, api_key="new-code-9", verbose=False).inference("hi") == ANSWER + "hi"
    expect(admin.locator("#access-code")).to_have_value("")   # never shown back
    admin.check("#no-access-code")
    admin.click("#settings button[type=submit]")
    expect(admin.locator("#access-code-state")).to_contain_text("未开启")
    assert ask(r).status_code == 200


def test_the_admin_page_shows_the_class_qr_code_large_and_makes_a_batch_of_slips(context, room):
    r = room()
    admin = admin_page(context, r)
    expect(admin.locator("#class-url")).to_have_text(expected_class_url(r.url))
    qr = admin.locator("#qr")
    admin.wait_for_function("document.getElementById('qr').complete && document.getElementById('qr').naturalWidth > 0")
    admin.click("#qr-large")
    box = qr.bounding_box()
    assert box["width"] >= 0.75 * 900 and box["height"] >= 0.75 * 900   # fills the projector
    # Read the code back from what the browser drew, with an independent decoder.
    pixels = admin.evaluate("""() => {
        const img = document.getElementById('qr');
        const canvas = document.createElement('canvas');
        canvas.width = canvas.height = 400;
        const g = canvas.getContext('2d');
        g.fillStyle = '#fff'; g.fillRect(0, 0, 400, 400);
        g.drawImage(img, 20, 20, 360, 360);
        const data = g.getImageData(0, 0, 400, 400).data;
        const rows = [];
        for (let y = 0; y < 400; y++) {
          const row = [];
          for (let x = 0; x < 400; x++) row.push(data[(y * 400 + x) * 4]);
          rows.push(row);
        }
        return rows;
    }""")
    assert decode(pixels) == expected_class_url(r.url)
    admin.keyboard.press("Escape")
    assert qr.bounding_box()["width"] <= 240

    admin.fill("#batch-count", "5")
    admin.fill("#batch-prefix", "三班")
    admin.click("#batch-form button[type=submit]")
    expect(admin.locator("#batch-table tbody tr")).to_have_count(5)
    names = admin.locator("#batch-table tbody td:first-child").all_inner_texts()
    tokens = admin.locator("#batch-table tbody td:last-child").all_inner_texts()
    assert names == [f"三班{i:02d}" for i in range(1, 6)]
    with admin.expect_download() as download:
        admin.click("#batch-html")
    sheet = Path(download.value.path()).read_text("utf-8")
    assert all(t in sheet for t in tokens) and sheet.count('class="slip"') == 5
    assert expected_class_url(r.url) in sheet
    assert ask(r, key=tokens[2]).status_code == 200
    expect(admin.locator("#tokens tbody")).to_contain_text("三班05")


def test_the_teachers_broken_key_is_a_banner_for_the_teacher_and_a_plain_message_for_students(
        context, teacher_fake, tmp_path):
    with serving(teacher_fake, tmp_path, api_key="sk-wrong-key-for-this-provider", access_code=CODE) as r:
        student = context.new_page()
        student.goto(r.url + "/")
        student.locator("#code-input").fill(CODE)
        student.locator("#code-input").press("Enter")
        send(student, "你好")
        expect(student.locator(".msg.error")).to_contain_text("请告诉老师")
        # The student is not asked for the access code again: the code was right.
        expect(student.locator("#code-dialog")).not_to_be_visible()
        admin = admin_page(context, r)
        banner = admin.locator("#alerts .alert[data-kind=upstream_auth]")
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("https://platform.deepseek.com/api_keys")
        expect(banner).to_contain_text("拒绝了老师的密钥")
        assert "sk-wrong-key" not in admin.content() and "sk-wrong-key" not in student.content()


def test_serve_refuses_an_access_code_no_browser_could_send():
    env = dict(os.environ, PYTHONPATH=str(ROOT), LANG="en_US.UTF-8")
    refused = subprocess.run([sys.executable, "-m", "xedullm", "serve", "--access-code", "数学课42"],
                             capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert refused.returncode == 2 and "math42" in refused.stderr and "Traceback" not in refused.stderr
