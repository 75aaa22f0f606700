"""Fallbacks on the classroom server, for real: ``xedullm serve -p deepseek --fallback qwen@…``
in a subprocess, two fake providers on 127.0.0.1. When the primary cannot answer (down, 503,
429, out of balance) the fallback does; the chunks and the completion say who answered, the
ledger keeps it and why, the teacher's overview raises an alert naming both providers (an empty
balance as such), and the student page shows "由 通义千问 回答 / answered by Qwen". A failure
after text was streamed is never answered again by another provider. The teacher can change
the list on the admin page while the class runs; every server on the store follows, and a
restart keeps it.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import socket

import httpx
import pytest
from playwright.sync_api import expect

from xedullm.testing import FakeDashScopeServer, Fault, FakeOpenAIServer

from conftest import TEACHER_KEY, open_admin, serve_process, wait_until
from test_admin_page import PASSWORD, change, teacher
from test_web_page import new_context

QWEN_KEY = "sk-qwen-5b7e1d93c4a2SECRET08f6"
NOTE = {"provider": "qwen", "provider_label": "阿里-通义千问", "provider_label_en": "Alibaba Qwen (DashScope)"}


@pytest.fixture(scope="module")
def fakes():
    with FakeOpenAIServer(flavor="deepseek", api_key=TEACHER_KEY, reply="主服务商的回答") as primary, \
            FakeDashScopeServer(api_key=QWEN_KEY, reply="备用服务商的回答") as backup:
        yield primary, backup


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def qwen_spec(backup):
    return f"qwen@{backup.base_url}"


@contextlib.contextmanager
def serving(tmp_path, primary_url, backup, *flags, fallback=True):
    """``fallback=False``: started without ``--fallback`` (the list kept in the store applies)."""
    args = ["-p", "deepseek", "--base-url", primary_url, *(["--fallback", qwen_spec(backup)] if fallback else []),
            "--host", "127.0.0.1", "--port", "0", "--data-dir", str(tmp_path), "--admin-password", PASSWORD,
            # Each test's primary trouble must reach the primary: no skipping by the breaker here.
            "--breaker-failures", "1000", *flags]
    env = {"DEEPSEEK_API_KEY": TEACHER_KEY, "DASHSCOPE_API_KEY": QWEN_KEY}
    with serve_process(args, env, until="用量记录保存在") as (proc, lines):
        yield next(line for line in lines if line.startswith("Running on local URL:")).split()[-1]


@pytest.fixture
def server(fakes, tmp_path):
    primary, backup = fakes
    for fake in fakes:
        fake.reset()
        fake.faults.clear()
    with serving(tmp_path, primary.base_url, backup) as url:
        yield url
    for fake in fakes:
        fake.faults.clear()


def ask(url, stream, content="你好"):
    body = {"messages": [{"role": "user", "content": content}], "stream": stream}
    if not stream:
        response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
        return response, [response.json()]
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as response:
        response.read()
    frames = [json.loads(line[6:]) for line in response.text.splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    return response, frames


def text_of(frames, stream):
    if not stream:
        return frames[0]["choices"][0]["message"]["content"]
    return "".join(f["choices"][0]["delta"].get("content") or "" for f in frames if f.get("choices"))


def overview(url):
    with contextlib.closing(teacher(url)) as http:
        return http.get("/admin/api/overview").json()


# The primary's default retries (2) would get past a single fault: every try meets one.
TROUBLE = {
    "503": [Fault.status(503)] * 3,
    "429": [Fault.rate_limited(retry_after=0)] * 3,
    "quota": [Fault.quota()],
}
# How the ledger and the alert tell each trouble: an empty balance is the teacher's to fix.
TOLD = {"503": ("upstream_error", "upstream_down"), "429": ("rate_limit_exceeded", "upstream_down"),
        "quota": ("insufficient_quota", "upstream_quota")}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("trouble", list(TROUBLE))
def test_the_fallback_answers_and_everyone_is_told(fakes, server, trouble, stream):
    primary, backup = fakes
    primary.faults.extend(TROUBLE[trouble])
    response, frames = ask(server, stream)
    assert response.status_code == 200
    assert text_of(frames, stream) == "备用服务商的回答"
    assert len(backup.chat_requests) == 1
    assert all(f["xedullm"] == NOTE for f in frames)   # every frame (and the completion) says who
    data = overview(server)
    reason, kind = TOLD[trouble]
    row = data["recent"][0]
    assert (row["provider"], row["outcome"], row["fallback_reason"]) == ("qwen", "ok", reason)
    [alert] = [a for a in data["alerts"] if a.get("fallback")]
    assert (alert["kind"], alert["provider"], alert["fallback"], alert["reason"]) == (kind, "deepseek", "qwen", reason)
    assert "幻方-深度求索" in alert["zh"] and "通义千问" in alert["zh"] and "Qwen" in alert["en"]
    if trouble == "quota":
        assert "余额" in alert["zh"] and "充值" in alert["zh"] and "balance" in alert["en"]
        assert "platform.deepseek.com" in alert["message"]
    else:
        assert "余额" not in alert["zh"] and "balance" not in alert["en"]
    # The primary is back: its answer carries no note, the ledger says deepseek, the alert clears.
    response, frames = ask(server, stream)
    assert text_of(frames, stream) == "主服务商的回答"
    assert all("xedullm" not in f for f in frames)
    data = overview(server)
    assert (data["recent"][0]["provider"], data["recent"][0]["fallback_reason"]) == ("deepseek", None)
    assert data["alerts"] == []


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_unreachable_primary_is_replaced(fakes, tmp_path, stream):
    primary, backup = fakes
    backup.reset()
    with serving(tmp_path, f"http://127.0.0.1:{_closed_port()}/v1", backup) as url:
        response, frames = ask(url, stream)
        assert response.status_code == 200 and text_of(frames, stream) == "备用服务商的回答"
        assert frames[0]["xedullm"] == NOTE
        data = overview(url)
        assert (data["recent"][0]["provider"], data["recent"][0]["fallback_reason"]) == ("qwen", "upstream_unreachable")
        assert [a["kind"] for a in data["alerts"]] == ["upstream_down"] and "连不上" in data["alerts"][0]["zh"]


def test_a_failure_after_text_was_streamed_is_not_answered_again(fakes, server):
    primary, backup = fakes
    primary.faults.append(Fault.disconnect_after(2))
    response, frames = ask(server, True)
    assert response.status_code == 200
    assert text_of(frames, True) and "主服务商的回答".startswith(text_of(frames, True))
    assert "error" in frames[-1] and all("xedullm" not in f for f in frames)
    assert backup.chat_requests == []   # nothing mixed from two providers
    row = overview(server)["recent"][0]
    assert row["outcome"] == "upstream_unreachable" and row["provider"] == "deepseek"   # who began it


def test_the_page_says_who_answered(fakes, server, browser):
    primary, backup = fakes
    primary.faults.append(Fault.quota())
    context = new_context(browser)
    try:
        page = context.new_page()
        page.goto(server + "/")
        page.locator("#input").fill("你好")
        page.locator("#input").press("Enter")
        answer = page.locator(".msg.assistant .bubble").last
        expect(answer).to_contain_text("备用服务商的回答")
        expect(answer.locator(".answered-by")).to_have_text("由 阿里-通义千问 回答 / answered by Alibaba Qwen (DashScope)")
        # The primary answers the next one: no note there.
        page.locator("#input").fill("再问一次")
        page.locator("#input").press("Enter")
        second = page.locator(".msg.assistant .bubble").nth(1)
        expect(second).to_contain_text("主服务商的回答")
        expect(page.locator(".answered-by")).to_have_count(1)
        context.watch.assert_clean()
    finally:
        context.close()


def test_breaker_flags_skip_a_failing_primary_for_the_cooldown(fakes, tmp_path):
    primary, backup = fakes
    for fake in fakes:
        fake.reset()
    primary.faults.extend([Fault.status(503)] * 3)
    with serving(tmp_path, primary.base_url, backup, "--breaker-failures", "1", "--breaker-cooldown", "600") as url:
        # (the later --breaker-failures wins over the fixture's 1000)
        assert text_of(ask(url, False)[1], False) == "备用服务商的回答"
        tried = len(primary.chat_requests)
        assert tried == 3                       # the first question met the primary's retries
        assert text_of(ask(url, True)[1], True) == "备用服务商的回答"
        assert len(primary.chat_requests) == tried   # the open circuit skipped it at once
        # Skipped answers still say why the primary failed last.
        assert [r["fallback_reason"] for r in overview(url)["recent"]] == ["upstream_error"] * 2
    primary.faults.clear()


def test_a_primary_out_of_balance_stays_an_upstream_quota_alert_while_skipped(fakes, tmp_path):
    primary, backup = fakes
    for fake in fakes:
        fake.reset()
    primary.faults.append(Fault.quota())
    with serving(tmp_path, primary.base_url, backup, "--breaker-failures", "1", "--breaker-cooldown", "600") as url:
        for stream in (False, True, False):
            assert text_of(ask(url, stream)[1], stream) == "备用服务商的回答"
        assert len(primary.chat_requests) == 1       # asked once, then skipped
        data = overview(url)
        assert [r["fallback_reason"] for r in data["recent"]] == ["insufficient_quota"] * 3
        [alert] = data["alerts"]
        assert (alert["kind"], alert["provider"], alert["fallback"]) == ("upstream_quota", "deepseek", "qwen")
        # The export keeps why, beside who.
        with contextlib.closing(teacher(url)) as http:
            rows = list(csv.DictReader(io.StringIO(http.get("/admin/api/export.csv").content.decode("utf-8-sig"))))
        assert [(r["provider"], r["fallback_reason"]) for r in rows] == [("qwen", "insufficient_quota")] * 3


# -- the list as an admin setting ------------------------------------------------------------
def settings_of(url):
    return overview(url)["settings"]


def test_the_teacher_turns_a_fallback_on_live_and_a_restart_keeps_it(fakes, tmp_path):
    primary, backup = fakes
    backup.reset()
    down = f"http://127.0.0.1:{_closed_port()}/v1"
    spec = qwen_spec(backup).rstrip("/")
    with serving(tmp_path, down, backup, fallback=False) as url:
        response, _ = ask(url, False)
        assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_unreachable"
        assert settings_of(url)["fallback"] == []
        with contextlib.closing(teacher(url)) as http:
            for bad, words in ((["nosuch"], "不认识的服务商"), ([spec, "moonshot"], "xedullm key set moonshot"),
                               (42, "fallback")):
                refused = change(http, "/admin/api/settings", {"fallback": bad, "system_prompt": "不该保存"})
                assert refused.status_code == 400, bad
                message = refused.json()["error"]["message"]
                assert words in message and (not isinstance(bad, list) or repr(bad[-1]) in message)
            assert change(http, "/admin/api/settings", {"fallback": [spec]}).status_code == 200
        assert settings_of(url)["fallback"] == [spec] and settings_of(url)["system_prompt"] is None
        response, frames = ask(url, True)
        assert response.status_code == 200 and text_of(frames, True) == "备用服务商的回答"
        row = overview(url)["recent"][0]
        assert (row["provider"], row["fallback_reason"]) == ("qwen", "upstream_unreachable")
    with serving(tmp_path, down, backup, fallback=False) as url:    # a restart without --fallback
        assert settings_of(url)["fallback"] == [spec]
        assert text_of(ask(url, False)[1], False) == "备用服务商的回答"
        with contextlib.closing(teacher(url)) as http:
            assert change(http, "/admin/api/settings", {"fallback": []}).status_code == 200   # none
        assert ask(url, False)[0].status_code == 502
    with serving(tmp_path, down, backup, fallback=False) as url:
        assert settings_of(url)["fallback"] == [] and ask(url, False)[0].status_code == 502
    assert len(backup.chat_requests) == 2


def test_servers_on_one_store_follow_the_teachers_list(fakes, tmp_path):
    primary, backup = fakes
    backup.reset()
    down = f"http://127.0.0.1:{_closed_port()}/v1"
    with serving(tmp_path, down, backup, fallback=False) as one, \
            serving(tmp_path, down, backup, fallback=False) as two:
        assert ask(two, False)[0].status_code == 502
        with contextlib.closing(teacher(one)) as http:
            assert change(http, "/admin/api/settings", {"fallback": qwen_spec(backup)}).status_code == 200
        wait_until(lambda: ask(two, False)[0].status_code == 200, step=0.2)
        assert overview(two)["recent"][0]["provider"] == "qwen"


def test_the_fallback_list_on_the_admin_page(fakes, server, browser):
    primary, backup = fakes
    spec = qwen_spec(backup).rstrip("/")
    context = browser.new_context(viewport={"width": 1200, "height": 900}, locale="zh-CN")
    errors = []
    context.on("weberror", lambda e: errors.append(str(e.error)))
    try:
        page = open_admin(context, server, PASSWORD)
        box = page.locator("#fallback")
        expect(box).to_have_value(spec)                  # what serve --fallback gave
        box.fill(f"{spec}\nnosuch:model-x")
        page.click("#settings button[type=submit]")
        expect(page.locator("#settings-status")).to_contain_text("'nosuch:model-x'")
        assert settings_of(server)["fallback"] == [spec]
        box.fill("")                                      # no fallback
        page.click("#settings button[type=submit]")
        expect(page.locator("#settings-status")).to_contain_text("已保存")
        primary.faults.append(Fault.quota())
        assert ask(server, False)[0].status_code == 429  # the student hears of the empty balance
        box.fill(spec)
        page.click("#settings button[type=submit]")
        expect(page.locator("#settings-status")).to_contain_text("已保存")
        primary.faults.append(Fault.quota())
        assert text_of(ask(server, False)[1], False) == "备用服务商的回答"
        page.reload()
        expect(page.locator("#fallback")).to_have_value(spec)
        expect(page.locator('#alerts [data-kind="upstream_quota"]')).to_contain_text("通义千问")
        assert errors == []
    finally:
        context.close()
