"""The student chat page, driven in headless Chromium against the real classroom server.

The server runs for real on 127.0.0.1 in front of a fake provider; the browser talks to it
over real sockets. Set XEDULLM_UPDATE_SCREENSHOT=1 to rewrite the screenshots in docs/
(the chat page, a math answer, a code answer and a reasoning model's thinking).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from xedullm import Client
from xedullm.errors import AuthenticationError
from xedullm.server.app import create_app
from xedullm.server.classroom.open_policy import Admission
from xedullm.testing import Fault, FakeOpenAIServer
from xedullm.testing.server_thread import ServerThread

from conftest import rows_written

ROOT = Path(__file__).resolve().parent.parent
UPDATE_SCREENSHOTS = bool(os.environ.get("XEDULLM_UPDATE_SCREENSHOT"))

expect.set_options(timeout=20_000)  # two shared cores: be patient, never race


@pytest.fixture
def classroom(classroom_server, teacher_fake):
    """Factory: our server (conftest) with the fake provider answering ``reply``."""
    def start(reply=None, system=None, token_delay=0.0, **settings):
        teacher_fake.reply = reply
        teacher_fake.token_delay = token_delay
        return classroom_server(system=system, **settings)
    return start


def assert_no_key(page, room):
    html = page.content()
    for secret in room.client.secrets():
        assert secret not in html


def save_screenshot(page, name, locator=None):
    """Always takes the screenshot (so it is checked to work); keeps it in docs/ on request."""
    data = (locator or page).screenshot()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    if UPDATE_SCREENSHOTS:
        (ROOT / "docs").mkdir(exist_ok=True)
        (ROOT / "docs" / name).write_bytes(data)


# ---- browser -----------------------------------------------------------------

# Reports every Content-Security-Policy violation to the console, where Watch collects it.
REPORT_CSP = """document.addEventListener('securitypolicyviolation', e =>
    console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));"""


class Watch:
    """Everything the page did that must never happen: errors, refused content, outside requests."""

    def __init__(self, context):
        self.requests = []
        self.errors = []
        self.console_errors = []
        self.refused = []
        context.on("request", lambda r: self.requests.append(r))
        context.on("weberror", lambda e: self.errors.append(str(e.error)))
        context.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        context.add_init_script(REPORT_CSP)
        # Every request passes through here; one for anywhere but our server is refused and kept.
        context.route("**/*", self._route)

    def _route(self, route):
        url = urlsplit(route.request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.hostname != "127.0.0.1":
            self.refused.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    def foreign_hosts(self):
        return sorted({urlsplit(r.url).hostname for r in self.requests
                       if urlsplit(r.url).scheme in ("http", "https", "ws", "wss")
                       and urlsplit(r.url).hostname != "127.0.0.1"})

    def csp_violations(self):
        return [text for text in self.console_errors if "Content Security Policy" in text or "CSP violation" in text]

    def assert_clean(self):
        assert self.errors == []
        assert self.csp_violations() == []
        assert self.console_errors == []
        assert self.refused == [] and self.foreign_hosts() == []


def new_context(browser, **options):
    ctx = browser.new_context(**{"viewport": {"width": 1100, "height": 800}, "locale": "zh-CN", **options})
    ctx.watch = Watch(ctx)
    return ctx


@pytest.fixture
def context(browser):
    ctx = new_context(browser)
    yield ctx
    ctx.close()


def open_page(context, room):
    page = context.new_page()
    page.goto(room.url + "/")
    expect(page.locator("#model")).to_have_text(room.client.model)
    return page


def send(page, text):
    page.locator("#input").fill(text)
    page.locator("#input").press("Enter")


def wait_idle(page):
    expect(page.locator("#stop")).to_be_hidden()
    expect(page.locator("#submit")).to_be_visible()
    expect(page.locator(".bubble[aria-busy]")).to_have_count(0)


def answers(page):
    return page.locator(".msg.assistant .bubble")


def questions(page):
    return page.locator(".msg.user .bubble")


def last_user_text(messages):
    return [m["content"] for m in messages if m["role"] == "user"][-1]


def echo(messages):
    return "你问的是：" + last_user_text(messages)


def ask(context, room, question="问题"):
    page = open_page(context, room)
    send(page, question)
    wait_idle(page)
    return page


def confirm_clear(page, really=True):
    page.locator("#clear").click()
    expect(page.locator("#clear-dialog")).to_be_visible()
    page.locator("#clear-ok" if really else "#clear-keep").click()
    expect(page.locator("#clear-dialog")).to_be_hidden()


# ---- basics ------------------------------------------------------------------

def test_page_shows_provider_model_and_system_prompt(context, classroom):
    room = classroom(reply=echo, system="你是一位耐心的数学老师。")
    page = open_page(context, room)
    expect(page.locator("#provider")).to_contain_text("幻方-深度求索")
    expect(page.locator("#model")).to_have_text("deepseek-chat")
    system = page.locator("#system")
    expect(system).to_be_visible()
    expect(system.locator("summary")).to_have_text("系统提示词")
    expect(page.locator("#system-text")).to_be_hidden()  # collapsed until opened
    system.locator("summary").click()
    expect(page.locator("#system-text")).to_have_text("你是一位耐心的数学老师。")
    assert_no_key(page, room)
    context.watch.assert_clean()


def test_no_system_prompt_box_without_a_system_prompt(context, classroom):
    page = open_page(context, classroom(reply=echo))
    expect(page.locator("#system")).to_be_hidden()


def csp_directives(policy):
    return {d.split()[0]: d.split()[1:] for d in (part.strip() for part in policy.split(";")) if d}


def test_page_carries_a_strict_content_security_policy(context, classroom):
    room = classroom(reply=echo)
    page = context.new_page()
    response = page.goto(room.url + "/")
    meta = page.locator('meta[http-equiv="Content-Security-Policy"]').get_attribute("content")
    for policy in (meta, response.headers["content-security-policy"]):
        directives = csp_directives(policy)
        for name in ("default-src", "script-src", "style-src", "connect-src", "font-src"):
            assert directives[name] == ["'self'"], (name, policy)
        assert directives["img-src"] == ["'self'", "data:"]
        assert directives["object-src"] == ["'none'"]
        # The one loosening: style attributes, which KaTeX needs to lay formulas out.
        assert directives["style-src-attr"] == ["'unsafe-inline'"]
        assert [name for name, values in directives.items() if any("unsafe" in v for v in values)] == ["style-src-attr"]
    # Nothing on the page comes from elsewhere, and no markup carries an inline handler.
    expect(page.locator("#model")).to_have_text(room.client.model)
    assert page.evaluate("""() => [...document.querySelectorAll('*')].filter(e =>
        [...e.attributes].some(a => a.name.startsWith('on'))).length""") == 0
    context.watch.assert_clean()


def test_enter_sends_and_the_answer_streams_in(context, classroom, tmp_path):
    reply = "".join("第%d句。" % i for i in range(1, 41))
    room = classroom(reply=lambda messages: reply, token_delay=0.03, data_dir=str(tmp_path))
    page = open_page(context, room)
    send(page, "讲个故事")
    expect(questions(page)).to_have_text(["讲个故事"])
    expect(page.locator("#input")).to_have_value("")
    # Mid-stream: part of the answer is on screen while the stop button is offered.
    expect(answers(page).first).to_contain_text("第1句。")
    assert page.locator("#stop").is_visible()
    assert page.locator(".bubble[aria-busy=true]").count() == 1
    assert page.locator(".bubble[aria-busy=true]").get_attribute("aria-live") == "polite"
    wait_idle(page)
    expect(answers(page)).to_have_text([reply])
    body = room.upstream_bodies()[-1]
    assert body["stream"] is True
    assert body["messages"][-1] == {"role": "user", "content": "讲个故事"}
    # The browser's id, issued by the server and kept in localStorage, goes with every request
    # after the first look at /api/info; the question was charged to it.
    browser_id = page.evaluate("localStorage.getItem('xedullm.browser')")
    assert re.fullmatch(r"[0-9a-f]{32}\.[0-9a-f]{32}", browser_id)
    sent = [r for r in context.watch.requests if r.url.endswith(("/v1/chat/completions", "/api/info"))]
    assert {r.headers.get("x-xedullm-session") for r in sent[1:]} == {browser_id}
    rows_written(room.app)
    assert [row["who"] for row in room.app.state.xedullm.classroom.store.rows()] == [
        "browser:" + browser_id.split(".")[0]]


def test_a_browser_past_the_computers_ids_still_asks_counted_as_the_computer(browser, classroom, tmp_path):
    room = classroom(reply=echo, data_dir=str(tmp_path), browser_ids_per_address=1)
    first, second = new_context(browser), new_context(browser)    # two browsers on one computer
    try:
        for ctx, text in ((first, "第一个浏览器"), (second, "第二个浏览器")):
            page = open_page(ctx, room)
            send(page, text)
            wait_idle(page)
            expect(answers(page)).to_have_text(["你问的是：" + text])
            assert ctx.watch.errors == []
        held = [ctx.pages[0].evaluate("localStorage.getItem('xedullm.browser')") for ctx in (first, second)]
        assert held[0] and held[1] is None          # the second got no id, and sends none
    finally:
        first.close()
        second.close()
    rows_written(room.app)
    assert [row["who"] for row in room.app.state.xedullm.classroom.store.rows()] == [
        "browser:" + held[0].split(".")[0], "ip:127.0.0.1"]


def test_shift_enter_inserts_a_newline_and_does_not_send(context, classroom):
    room = classroom(reply=echo)
    page = open_page(context, room)
    box = page.locator("#input")
    box.click()
    box.type("第一行")
    box.press("Shift+Enter")
    box.type("第二行")
    expect(box).to_have_value("第一行\n第二行")
    expect(questions(page)).to_have_count(0)
    box.press("Enter")
    expect(questions(page)).to_have_text(["第一行\n第二行"])
    wait_idle(page)
    expect(answers(page)).to_have_text(["你问的是：第一行\n第二行"], use_inner_text=True)


def test_enter_during_ime_composition_does_not_send(context, classroom):
    room = classroom(reply=echo)
    page = open_page(context, room)
    page.locator("#input").fill("nihao")
    page.locator("#input").dispatch_event(
        "keydown", {"key": "Enter", "code": "Enter", "isComposing": True, "bubbles": True, "cancelable": True})
    expect(page.locator("#input")).to_have_value("nihao")
    expect(questions(page)).to_have_count(0)
    assert room.upstream_bodies() == []


def test_submit_button_sends_and_empty_input_does_not(context, classroom):
    room = classroom(reply=echo)
    page = open_page(context, room)
    page.locator("#input").fill("   ")
    page.locator("#submit").click()
    expect(questions(page)).to_have_count(0)
    page.locator("#input").fill("点按钮")
    page.locator("#submit").click()
    wait_idle(page)
    expect(answers(page)).to_have_text(["你问的是：点按钮"])


# ---- retry / undo / clear / stop -----------------------------------------------

def counting_reply():
    calls = []

    def reply(messages):
        calls.append(messages)
        return "第%d个回答" % len(calls)
    return reply


def test_retry_regenerates_the_last_answer(context, classroom):
    room = classroom(reply=counting_reply())
    page = open_page(context, room)
    send(page, "你好")
    wait_idle(page)
    expect(answers(page)).to_have_text(["第1个回答"])
    page.locator("#retry").click()
    wait_idle(page)
    expect(answers(page)).to_have_text(["第2个回答"])
    expect(questions(page)).to_have_text(["你好"])
    first, second = room.upstream_bodies()
    assert second["messages"] == first["messages"]  # same question, old answer not sent


def test_undo_removes_the_last_exchange(context, classroom):
    room = classroom(reply=counting_reply())
    page = open_page(context, room)
    send(page, "问题一")
    wait_idle(page)
    send(page, "问题二")
    wait_idle(page)
    expect(answers(page)).to_have_text(["第1个回答", "第2个回答"])
    page.locator("#undo").click()
    expect(questions(page)).to_have_text(["问题一"])
    expect(answers(page)).to_have_text(["第1个回答"])
    expect(page.locator("#input")).to_have_value("问题二")  # back in the box to edit
    send(page, "改过的问题")
    wait_idle(page)
    sent = [(m["role"], m["content"]) for m in room.upstream_bodies()[-1]["messages"] if m["role"] != "system"]
    assert sent == [("user", "问题一"), ("assistant", "第1个回答"), ("user", "改过的问题")]


def test_clear_asks_first_then_empties_the_conversation(context, classroom):
    room = classroom(reply=counting_reply())
    page = open_page(context, room)
    send(page, "问题一")
    wait_idle(page)
    confirm_clear(page, really=False)  # 保留: nothing happens
    expect(questions(page)).to_have_text(["问题一"])
    page.reload()
    expect(questions(page)).to_have_text(["问题一"])
    confirm_clear(page)
    expect(page.locator(".msg")).to_have_count(0)
    expect(page.locator("#empty")).to_be_visible()
    expect(page.locator("#clear")).to_be_disabled()
    expect(page.locator("#undo")).to_be_disabled()
    expect(page.locator("#retry")).to_be_disabled()
    page.reload()  # gone from the browser too, not just from the screen
    expect(page.locator("#model")).to_have_text(room.client.model)
    expect(page.locator(".msg")).to_have_count(0)
    assert page.evaluate("JSON.parse(localStorage.getItem('xedullm.conversations') || '[]')") == []
    send(page, "新话题")
    wait_idle(page)
    sent = [m for m in room.upstream_bodies()[-1]["messages"] if m["role"] != "system"]
    assert sent == [{"role": "user", "content": "新话题"}]


def test_stop_aborts_a_slow_stream(context, classroom):
    full = "".join("片段%03d；" % i for i in range(50))
    room = classroom(reply=lambda messages: full)
    room.fake.faults.append(Fault.stall_between(60, after=3))  # a few pieces, then silence
    page = open_page(context, room)
    send(page, "说很多话")
    expect(answers(page).first).to_contain_text("片段000")
    page.locator("#stop").click()
    wait_idle(page)
    assert room.fake.wait_for(lambda: room.fake.streams_cancelled == 1)  # upstream call ended too
    expect(page.locator(".msg.assistant .note")).to_have_text("（已停止）")
    expect(page.locator("#status")).to_have_text("已停止回答。")
    kept = answers(page).first.inner_text().replace("（已停止）", "").strip()
    assert kept.startswith("片段000") and len(kept) < len(full)
    # The stopped answer stays in the conversation: the next question carries it.
    send(page, "继续")
    wait_idle(page)
    history = room.upstream_bodies()[-1]["messages"]
    assert history[-2]["role"] == "assistant" and history[-2]["content"] == kept
    expect(answers(page).last).to_have_text(full)


# ---- history -----------------------------------------------------------------

def test_conversation_survives_a_reload_and_closing_the_tab(context, classroom):
    room = classroom(reply=echo)
    page = open_page(context, room)
    send(page, "记住我")
    wait_idle(page)
    page.reload()
    expect(questions(page)).to_have_text(["记住我"])
    expect(answers(page)).to_have_text(["你问的是：记住我"])
    page.close()
    again = open_page(context, room)  # a new tab, as after closing the browser
    expect(questions(again)).to_have_text(["记住我"])
    expect(answers(again)).to_have_text(["你问的是：记住我"])
    send(again, "还记得吗")
    wait_idle(again)
    users = [m["content"] for m in room.upstream_bodies()[-1]["messages"] if m["role"] == "user"]
    assert users == ["记住我", "还记得吗"]


def test_new_conversation_and_switching_between_conversations(context, classroom):
    room = classroom(reply=echo)
    page = open_page(context, room)
    history = page.locator("#history")
    expect(page.locator("#new-chat")).to_be_disabled()  # already a fresh one
    send(page, "第一段对话")
    wait_idle(page)
    page.locator("#new-chat").click()
    expect(page.locator(".msg")).to_have_count(0)
    expect(page.locator("#empty")).to_be_visible()
    send(page, "第二段对话")
    wait_idle(page)
    options = history.locator("option")
    expect(options).to_have_count(2)
    expect(options.first).to_contain_text("第二段对话")  # the latest first
    expect(options.last).to_contain_text("第一段对话")
    history.select_option(index=1)
    expect(questions(page)).to_have_text(["第一段对话"])
    expect(answers(page)).to_have_text(["你问的是：第一段对话"])
    page.reload()  # the tab stays on the conversation it chose
    expect(questions(page)).to_have_text(["第一段对话"])
    send(page, "接着第一段")
    wait_idle(page)
    users = [m["content"] for m in room.upstream_bodies()[-1]["messages"] if m["role"] == "user"]
    assert users == ["第一段对话", "接着第一段"]
    expect(options.first).to_contain_text("第一段对话")  # now the latest
    context.watch.assert_clean()


def test_two_tabs_keep_their_own_conversations_and_share_one_browser_id(context, classroom, tmp_path):
    room = classroom(reply=echo, data_dir=str(tmp_path))
    one = open_page(context, room)
    two = open_page(context, room)
    send(one, "我是一号")
    wait_idle(one)
    send(two, "我是二号")
    wait_idle(two)
    expect(questions(one)).to_have_text(["我是一号"])
    expect(questions(two)).to_have_text(["我是二号"])
    send(one, "一号第二问")
    wait_idle(one)
    expect(questions(two)).to_have_text(["我是二号"])
    users = [[m["content"] for m in b["messages"] if m["role"] == "user"] for b in room.upstream_bodies()]
    assert users == [["我是一号"], ["我是二号"], ["我是一号", "一号第二问"]]
    # One student, one id, however many tabs: the teacher's per-student limits count them once.
    sessions = {r.headers.get("x-xedullm-session") for r in context.watch.requests
                if r.url.endswith("/v1/chat/completions")}
    assert len(sessions) == 1 and None not in sessions
    # Each tab lists both conversations.
    expect(two.locator("#history option")).to_have_count(2)


def test_export_downloads_the_conversation_as_markdown(context, classroom, tmp_path):
    room = classroom(reply=lambda messages: "答案是 $x = 2$。\n\n```python\nprint(2)\n```", system="你是数学老师。")
    page = ask(context, room, "解方程 x + 1 = 3")
    with page.expect_download() as download:
        page.locator("#export").click()
    assert download.value.suggested_filename.startswith("xedullm-")
    assert download.value.suggested_filename.endswith(".md")
    path = tmp_path / "chat.md"
    download.value.save_as(path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# XEduLLM 课堂对话 / Classroom chat\n")
    assert "- 模型 / Model: deepseek-chat" in text
    assert "> 你是数学老师。" in text
    assert "## 我 / You\n\n解方程 x + 1 = 3\n" in text
    assert "## AI\n\n答案是 $x = 2$。\n\n```python\nprint(2)\n```\n" in text  # the Markdown source
    for secret in room.client.secrets():
        assert secret not in text
    context.watch.assert_clean()


# ---- math, code, thinking --------------------------------------------------------

MATH = r"""二次方程 $ax^2+bx+c=0$ 的求根公式：

$$
x = \frac{-b \pm \sqrt{b^2-4ac}}{2a}
$$

判别式 \(\Delta = b^2 - 4ac\)，面积 \[S = \int_0^1 x^2\,dx = \frac{1}{3}\]

乘法：$2*3*4 = 24$，带下标的 $a_1 + a_2$ 与 $x_{n+1}$。

1. 第一步：$\sqrt{2} \approx 1.414$
2. 第二步：$$\lim_{n\to\infty} \left(1+\frac{1}{n}\right)^n = e$$

水的生成：$\ce{2H2 + O2 -> 2H2O}$，价格 $5 和 $6 不是公式。"""

FORMULAS = [r"ax^2+bx+c=0", "\nx = \\frac{-b \\pm \\sqrt{b^2-4ac}}{2a}\n", r"\Delta = b^2 - 4ac",
            r"S = \int_0^1 x^2\,dx = \frac{1}{3}", "2*3*4 = 24", "a_1 + a_2", "x_{n+1}",
            r"\sqrt{2} \approx 1.414", r"\lim_{n\to\infty} \left(1+\frac{1}{n}\right)^n = e",
            r"\ce{2H2 + O2 -> 2H2O}"]

# The answer's text with every typeset formula taken out: what would show as raw LaTeX.
TEXT_OUTSIDE_FORMULAS = """a => { const c = a.cloneNode(true);
    c.querySelectorAll('.katex').forEach(k => k.remove()); return c.textContent; }"""


def test_math_in_all_four_delimiters_is_typeset(browser, classroom):
    room = classroom(reply=lambda messages: MATH)
    context = new_context(browser, viewport={"width": 900, "height": 1020})
    page = ask(context, room, "求根公式是什么？")
    answer = answers(page).first
    # KaTeX keeps each formula's source in its MathML: every one arrived untouched.
    sources = answer.locator(".katex annotation").evaluate_all("ns => ns.map(n => n.textContent)")
    assert sources == FORMULAS
    expect(answer.locator(".katex-display")).to_have_count(3)  # $$…$$ as a block and in a list, \[…\]
    left = answer.evaluate(TEXT_OUTSIDE_FORMULAS)
    for raw in ("$$", "\\(", "\\)", "\\[", "\\]", "\\frac", "\\sqrt", "\\Delta", "^2", "\\ce"):
        assert raw not in left, raw
    assert "价格 $5 和 $6 不是公式" in left  # money stays money
    expect(answer.locator(".math-error")).to_have_count(0)
    expect(answer.locator("em")).to_have_count(0)  # no `*` or `_` turned into emphasis
    expect(answer.locator("ol > li")).to_have_count(2)
    # Laid out, not piled up: the fraction's numerator sits above its denominator, the root's
    # sign covers its argument, and KaTeX's own fonts came from our server.
    quadratic = answer.locator(".math-display .mfrac").first
    denominator, line, numerator = (part.bounding_box() for part in quadratic.locator(
        ":scope > .vlist-t > .vlist-r > .vlist > span > :not(.pstrut)").all())
    assert numerator["y"] + numerator["height"] <= line["y"] + 1
    assert line["y"] + line["height"] <= denominator["y"] + 1
    root = answer.locator(".math-display .sqrt").first.bounding_box()
    assert root["width"] > 40
    assert page.evaluate("document.fonts.check('16px KaTeX_Main') && document.fonts.check('16px KaTeX_Math')")
    fonts = [r.url for r in context.watch.requests if r.resource_type == "font"]
    assert fonts and all(urlsplit(u).path.startswith("/static/vendor/katex/fonts/") for u in fonts)
    context.watch.assert_clean()
    save_screenshot(page, "screenshot-math.png")
    context.close()


BROKEN_MATH = r"""好的公式 $x^2$，坏的公式 $\frac{1}{$ 和 \(\left( x\) 还有

$$
\begin{matrix} a & b
$$

没有结束的 $$ x + 1 也照原样显示。"""


def test_a_broken_formula_shows_its_source(context, classroom):
    room = classroom(reply=lambda messages: BROKEN_MATH)
    page = ask(context, room)
    answer = answers(page).first
    expect(answer.locator(".katex")).to_have_count(1)
    expect(answer.locator(".math-error")).to_have_text(
        ["$\\frac{1}{$", "\\(\\left( x\\)", "$$\n\\begin{matrix} a & b\n$$"])
    expect(answer.locator(".math-error").first).to_have_attribute("title", "这个公式无法显示，这里是它的原文")
    expect(answer).to_contain_text("没有结束的 $$ x + 1 也照原样显示。")
    context.watch.assert_clean()


CODE = '''用 Python 算斐波那契数：

```python
def fib(n):
    """第 n 个斐波那契数"""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a

print(fib(10))  # 55
```

再看一段 JavaScript：

```js
const total = [1, 2, 3].reduce((a, b) => a + b, 0);
```'''


def test_code_is_highlighted_and_copied_with_a_hint(browser, classroom):
    room = classroom(reply=lambda messages: CODE)
    ctx = new_context(browser, permissions=["clipboard-read", "clipboard-write"],
                      viewport={"width": 900, "height": 940})
    page = ask(ctx, room, "斐波那契数怎么算？")
    answer = answers(page).first
    blocks = answer.locator(".code-block")
    expect(blocks).to_have_count(2)
    expect(blocks.locator(".code-lang")).to_have_text(["python", "js"])
    python = blocks.first.locator("pre > code")
    expect(python).to_have_class("hljs language-python")
    expect(python.locator(".hljs-keyword").first).to_have_text("def")
    expect(python.locator(".hljs-string")).to_contain_text(['"""第 n 个斐波那契数"""'])
    colours = python.locator(".hljs-keyword, .hljs-string, .hljs-number").evaluate_all(
        "ns => new Set(ns.map(n => getComputedStyle(n).color)).size")
    assert colours >= 3  # highlighted, not just wrapped in spans
    source = CODE.split("```python\n")[1].split("\n```")[0]
    expect(python).to_have_text(source)
    save_screenshot(page, "screenshot-code.png")
    # Copy the code block: the code exactly, and a hint on the button.
    button = blocks.first.locator("button.copy-code")
    expect(button).to_have_text("复制")
    button.click()
    expect(button).to_have_text("已复制")
    assert page.evaluate("navigator.clipboard.readText()") == source
    expect(button).to_have_text("复制")  # the hint goes away by itself
    # Copy the whole answer: its Markdown source, as the model wrote it.
    whole = page.locator(".msg.assistant .copy-answer")
    expect(whole).to_have_text("复制回答")
    whole.click()
    expect(whole).to_have_text("已复制")
    assert page.evaluate("navigator.clipboard.readText()") == CODE
    ctx.watch.assert_clean()
    ctx.close()


def test_copy_works_without_the_clipboard_api(browser, classroom):
    # A classroom server is plain http on a LAN address: no navigator.clipboard there.
    room = classroom(reply=lambda messages: "```python\nprint('hi')\n```")
    ctx = new_context(browser, permissions=["clipboard-read", "clipboard-write"])
    page = ctx.new_page()
    page.add_init_script("Object.defineProperty(Navigator.prototype, 'clipboard', { get: () => undefined });")
    page.goto(room.url + "/")
    send(page, "打印")
    wait_idle(page)
    button = page.locator("button.copy-code")
    button.click()
    expect(button).to_have_text("已复制")
    reader = ctx.new_page()
    reader.goto(room.url + "/")
    assert reader.evaluate("navigator.clipboard.readText()") == "print('hi')"
    ctx.close()


def test_a_reasoning_models_thinking_streams_live_then_folds(browser, classroom):
    room = classroom(reply=lambda messages: "长方形的面积 = 长 × 宽：\n\n$$S = 8 \\times 5 = 40\\ \\text{cm}^2$$",
                     token_delay=0.1, model="deepseek-reasoner")
    context = new_context(browser, viewport={"width": 900, "height": 620})
    page = open_page(context, room)
    question = "一个长方形长 8 厘米、宽 5 厘米，它的面积是多少？请一步一步想。"
    send(page, question)
    # While it thinks: the thinking is open and growing, and the answer has not begun.
    page.wait_for_function("""() => {
        const t = document.querySelector('.msg.assistant .thinking');
        return t && t.open && t.querySelector('.thinking-text').textContent.length > 12
            && document.querySelector('.msg.assistant .answer').textContent === ''; }""")
    thinking = page.locator(".msg.assistant .thinking")
    expect(thinking.locator("summary")).to_have_text("思考过程")
    wait_idle(page)
    # Once the answer came, the thinking folded away above it, whole and apart from it.
    expect(thinking).not_to_have_attribute("open", "")
    answer = page.locator(".msg.assistant .answer")
    expect(answer).to_contain_text("长方形的面积")
    expect(answer.locator(".katex-display")).to_have_count(1)
    assert "思考" not in answer.text_content()
    thinking.locator("summary").click()
    expect(thinking.locator(".thinking-text")).to_have_text("（思考）用户说：" + question)
    save_screenshot(page, "screenshot-thinking.png")
    # The thinking is kept with the answer but never sent back (DeepSeek refuses that).
    page.reload()
    expect(page.locator(".msg.assistant .thinking")).to_be_attached()
    send(page, "再问一次")
    wait_idle(page)
    sent = room.upstream_bodies()[-1]["messages"]
    assert all(set(m) == {"role", "content"} for m in sent)
    expect(page.locator(".msg.error")).to_have_count(0)
    context.watch.assert_clean()
    context.close()


def test_long_ordered_lists_stay_inside_the_bubble(context, classroom):
    room = classroom(reply=lambda messages: "\n".join("%d. 第%d项" % (i, i) for i in range(1, 121)))
    page = ask(context, room, "列出120项")
    room_for_numbers = page.evaluate("""() => {
        const ol = document.querySelector('.msg.assistant ol');
        const probe = document.createElement('span');
        probe.textContent = '120.';
        ol.lastElementChild.prepend(probe);
        const width = probe.getBoundingClientRect().width;
        probe.remove();
        return parseFloat(getComputedStyle(ol).paddingLeft) - width; }""")
    assert room_for_numbers > 0
    expect(page.locator(".msg.assistant ol > li")).to_have_count(120)


def test_dark_mode_follows_the_system_and_the_toggle(browser, classroom):
    room = classroom(reply=echo)

    def background(page):
        return page.evaluate("getComputedStyle(document.body).backgroundColor")

    dark = new_context(browser, color_scheme="dark")
    page = ask(dark, room, "你好")
    assert background(page) == "rgb(18, 22, 29)"
    toggle = page.locator("#theme")
    expect(toggle).to_have_text("浅色")
    toggle.click()
    assert background(page) == "rgb(244, 246, 250)"
    expect(toggle).to_have_text("深色")
    page.reload()  # the choice is remembered
    expect(page.locator("#model")).to_have_text(room.client.model)
    assert background(page) == "rgb(244, 246, 250)"
    toggle.click()  # back to what the system says: follows it again
    assert background(page) == "rgb(18, 22, 29)"
    assert page.evaluate("localStorage.getItem('xedullm.theme')") is None
    dark.watch.assert_clean()
    dark.close()

    light = new_context(browser, color_scheme="light")
    page = open_page(light, room)
    assert background(page) == "rgb(244, 246, 250)"
    page.locator("#theme").click()
    assert background(page) == "rgb(18, 22, 29)"
    light.close()


# ---- nothing lost ------------------------------------------------------------

def test_a_broken_stream_keeps_the_partial_answer_and_retry_recovers(context, classroom):
    full = "这是一个会被打断的很长的回答" * 5
    room = classroom(reply=lambda messages: full)
    room.fake.faults.append(Fault.error_frame(after=2, message="content blocked"))
    page = open_page(context, room)
    send(page, "你好")
    wait_idle(page)
    alert = page.locator(".msg.error[role=alert]")
    expect(alert).to_be_visible()
    assert " / " in alert.inner_text()
    expect(answers(page)).to_have_count(1)  # what arrived stays, the error beside it
    kept = page.locator(".msg.assistant .answer").inner_text()
    assert kept and full.startswith(kept) and kept != full
    expect(page.locator(".msg.assistant .note")).to_have_text("（回答中断）")
    page.reload()  # kept in the conversation too
    expect(page.locator(".msg.assistant .answer")).to_have_text(kept)
    page.locator("#retry").click()
    wait_idle(page)
    expect(alert).to_have_count(0)
    expect(answers(page)).to_have_text([full])


def test_a_dropped_connection_keeps_the_partial_answer(context, classroom):
    full = "".join("片段%03d；" % i for i in range(30))
    room = classroom(reply=lambda messages: full)
    room.fake.faults.append(Fault.disconnect_after(4))
    page = open_page(context, room)
    send(page, "说很多话")
    wait_idle(page)
    expect(page.locator(".msg.error[role=alert]")).to_be_visible()
    kept = page.locator(".msg.assistant .answer").inner_text()
    assert kept.startswith("片段000") and full.startswith(kept) and kept != full
    expect(page.locator("#retry")).to_be_enabled()


def test_silence_before_the_first_byte_ends_after_twenty_seconds(context, classroom):
    room = classroom(reply=echo)
    room.fake.faults.append(Fault.stall(60))  # the provider never answers
    page = context.new_page()
    page.clock.install()
    page.goto(room.url + "/")
    expect(page.locator("#model")).to_have_text(room.client.model)
    send(page, "你好")
    expect(page.locator("#status")).to_have_text("正在回答…")
    assert room.fake.wait_for(lambda: len(room.fake.chat_requests) == 1)
    page.clock.fast_forward(6_000)
    expect(page.locator("#status")).to_contain_text("仍在等待回答…")
    page.clock.fast_forward(15_000)
    alert = page.locator(".msg.error[role=alert]")
    expect(alert).to_contain_text("20 秒")
    expect(answers(page)).to_have_count(0)
    wait_idle(page)
    assert room.fake.wait_for(lambda: room.fake.active_connections == 0)  # the server let go too
    expect(page.locator("#retry")).to_be_enabled()
    page.locator("#retry").click()  # the provider answers this time
    wait_idle(page)
    expect(answers(page)).to_have_text(["你问的是：你好"])


def test_an_answer_that_goes_quiet_ends_after_the_overall_deadline(context, classroom):
    full = "".join("片段%03d；" % i for i in range(30))
    room = classroom(reply=lambda messages: full)
    room.fake.faults.append(Fault.stall_between(60, after=3))
    page = context.new_page()
    page.clock.install()
    page.goto(room.url + "/")
    expect(page.locator("#model")).to_have_text(room.client.model)
    send(page, "说很多话")
    expect(answers(page).first).to_contain_text("片段000")
    page.clock.fast_forward(5_000)
    expect(page.locator("#status")).to_contain_text("仍在等待回答…")
    page.clock.fast_forward(86_000)
    expect(page.locator(".msg.error[role=alert]")).to_contain_text("回答停住了")
    wait_idle(page)
    kept = page.locator(".msg.assistant .answer").inner_text()
    assert kept.startswith("片段000") and kept != full
    expect(page.locator(".msg.assistant .note")).to_have_text("（回答中断）")


# ---- safety ------------------------------------------------------------------

XSS = "\n\n".join([
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=2</script>",
    "[点我](javascript:window.__pwned=3)",
    "![远程图片](http://203.0.113.9/cat.png)",
    '<a href="javascript:window.__pwned=4">a</a><iframe src="http://203.0.113.9/"></iframe>',
    '<svg onload="window.__pwned=5"></svg><style>body{display:none}</style>',
    "[数据](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[正常链接](https://example.org/page)",
])

# What the new renderers are handed: formulas and code fences carrying markup, links, styles.
XSS_RENDERERS = "\n\n".join([
    r"$\href{javascript:window.__pwned=6}{点公式}$ 和 $\url{javascript:window.__pwned=7}$",
    r"$\includegraphics{http://203.0.113.9/x.png}$ 与 $\htmlClass{x}{y}$ 与 $\htmlStyle{background:url(http://203.0.113.9/s)}{z}$",
    r'$<img src=x onerror="window.__pwned=8">$ 和 $\text{<script>window.__pwned=9</script>}$',
    r"$\color{url(http://203.0.113.9/c)}{x}$ 与 $$\frac{1}{<svg onload=window.__pwned=10>}$$",
    '```"><img src=x onerror="window.__pwned=11">\nx\n```',
    '```html\n<script>window.__pwned=12</script><img src=x onerror="window.__pwned=13">\n```',
    '[链接](https://e.org "t\\" onmouseover=\\"window.__pwned=14")',
    "<javascript:window.__pwned=15> 与 www.example.org 与 a@b.org",
])


def assert_inert(page, context):
    assert page.evaluate("typeof window.__pwned") == "undefined"
    log = page.locator("#log")
    for tag in ("img", "script", "iframe", "svg", "style", "object", "embed", "video", "audio"):
        assert log.locator(tag).count() == 0, tag
    hrefs = log.locator("a").evaluate_all("as => as.map(a => [a.getAttribute('href'), a.rel, a.target])")
    for href, rel, target in hrefs:
        assert href.startswith(("http://", "https://")), href
        assert rel == "noopener noreferrer" and target == "_blank"
    # No handler attribute anywhere, and the only style attributes are KaTeX's inside formulas.
    assert log.evaluate("""l => [...l.querySelectorAll('*')].filter(e =>
        [...e.attributes].some(a => a.name.startsWith('on'))).length""") == 0
    assert log.evaluate("""l => [...l.querySelectorAll('[style]')].filter(e =>
        !e.closest('.katex') || /url|expression|javascript/i.test(e.getAttribute('style'))).length""") == 0
    assert context.watch.foreign_hosts() == [] and context.watch.refused == []
    assert context.watch.errors == []
    assert context.watch.csp_violations() == []
    expect(page.locator("body")).to_be_visible()


def test_model_output_with_html_and_script_is_inert(context, classroom):
    room = classroom(reply=lambda messages: XSS)
    page = open_page(context, room)
    send(page, "hi")
    wait_idle(page)
    answer = answers(page).first
    # The payloads are shown as text, not obeyed.
    expect(answer).to_contain_text('<img src=x onerror="window.__pwned=1">')
    expect(answer).to_contain_text("<script>window.__pwned=2</script>")
    expect(answer).to_contain_text("点我")
    expect(answer.locator("a", has_text="点我")).to_have_count(0)
    expect(answer.locator("a", has_text="数据")).to_have_count(0)
    image = answer.locator("a", has_text="远程图片")
    expect(image).to_have_attribute("href", "http://203.0.113.9/cat.png")  # a link, never loaded
    expect(answer.locator("a", has_text="正常链接")).to_have_attribute("href", "https://example.org/page")
    assert_inert(page, context)
    # Clicking the would-be javascript: link does nothing either.
    answer.get_by_text("点我").click()
    assert_inert(page, context)


def test_formulas_and_code_carrying_markup_are_inert(context, classroom):
    room = classroom(reply=lambda messages: XSS_RENDERERS)
    page = open_page(context, room)
    send(page, "hi")
    wait_idle(page)
    answer = answers(page).first
    expect(answer.locator(".katex").first).to_be_visible()
    expect(answer.locator(".code-block")).to_have_count(2)
    expect(answer.locator(".code-block").last.locator("code")).to_contain_text("<script>window.__pwned=12</script>")
    expect(answer.locator("a", has_text="链接")).to_have_attribute("href", "https://e.org")
    for trap in answer.locator(".katex, a, code").all():
        trap.dispatch_event("mouseover")
    for formula in answer.locator(".katex").all():
        formula.dispatch_event("click")
    assert_inert(page, context)


def test_user_input_with_html_and_script_is_inert(context, classroom):
    room = classroom(reply=echo)
    page = open_page(context, room)
    send(page, XSS)
    wait_idle(page)
    expect(questions(page).first).to_have_text(XSS)
    expect(answers(page).first).to_contain_text("<script>window.__pwned=2</script>")
    assert_inert(page, context)


def test_a_students_question_is_shown_as_typed(context, classroom):
    # A question that looks like formulas and code stays the student's own words.
    room = classroom(reply=echo)
    page = ask(context, room, "$x$ 和 `code` 和 **粗**")
    expect(questions(page)).to_have_text(["$x$ 和 `code` 和 **粗**"])
    expect(questions(page).locator(".katex, code, strong")).to_have_count(0)


MARKDOWN = """### 猫和狗

**猫** 喜欢 *安静*，狗喜欢 `散步`。

1. 第一点
2. 第二点
   - 细节甲
   - 细节乙

| 动物 | 腿 |
|:-----|---:|
| 猫 | 4 |
| 鸟 | 2 |

> 一句引用

```python
print("<b>你好</b>")
```

详见 [文档](https://example.org/docs)。"""


def test_markdown_renders_as_structure(context, classroom):
    room = classroom(reply=lambda messages: MARKDOWN)
    page = open_page(context, room)
    send(page, "比较猫和狗")
    wait_idle(page)
    a = answers(page).first
    expect(a.locator("h5")).to_have_text("猫和狗")  # below the page's own h1/h2
    expect(a.locator("strong")).to_have_text("猫")
    expect(a.locator("em")).to_have_text("安静")
    expect(a.locator("p > code")).to_have_text("散步")
    expect(a.locator("ol > li")).to_have_count(2)
    expect(a.locator("ol > li ul > li")).to_have_text(["细节甲", "细节乙"])
    expect(a.locator("table th")).to_have_text(["动物", "腿"])
    expect(a.locator("table tbody tr")).to_have_count(2)
    expect(a.locator("table td.align-right").first).to_have_text("4")
    expect(a.locator("blockquote")).to_have_text("一句引用")
    expect(a.locator("pre > code")).to_have_text('print("<b>你好</b>")')
    expect(a.locator("b")).to_have_count(0)
    link = a.locator("a", has_text="文档")
    expect(link).to_have_attribute("href", "https://example.org/docs")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    context.watch.assert_clean()


def test_a_streamed_answer_ends_as_a_fresh_render_would_show_it(context, classroom):
    # The page re-renders only the block still growing; the result must not differ.
    reply = MATH + "\n\n" + MARKDOWN + "\n\n" + CODE
    room = classroom(reply=lambda messages: reply, token_delay=0.002)
    page = ask(context, room)
    streamed = page.locator(".msg.assistant .answer").inner_html()
    page.reload()
    expect(page.locator(".msg.assistant .answer .code-block")).to_have_count(3)
    assert page.locator(".msg.assistant .answer").inner_html() == streamed


# Renderer details, checked in the page itself: Markdown in, HTML out (newlines between tags
# dropped). Links other than http(s) and raw HTML stay as the text the model wrote.
RENDER_CASES = [
    ("snake_case and a_b_c", "<p>snake_case and a_b_c</p>"),
    ("**粗体**文字", "<p><strong>粗体</strong>文字</p>"),
    ("2 * 3 * 4", "<p>2 * 3 * 4</p>"),
    ("\\*不是强调\\*", "<p>*不是强调*</p>"),
    ("~~删除~~", "<p><s>删除</s></p>"),
    ("`a<b>`", "<p><code>a&lt;b&gt;</code></p>"),
    ("第一行\n第二行", "<p>第一行<br>第二行</p>"),
    ("# 大标题", "<h3>大标题</h3>"),
    ("#### 小标题 ##", "<h6>小标题</h6>"),
    ("#话题", "<p>#话题</p>"),
    ("---", "<hr>"),
    ("[x](javascript:alert(1))", "<p>[x](javascript:alert(1))</p>"),
    ("[x](JaVaScRiPt:alert(1))", "<p>[x](JaVaScRiPt:alert(1))</p>"),
    ("[x](data:text/html,hi)", "<p>[x](data:text/html,hi)</p>"),
    ("[x](/relative/path)", "<p>[x](/relative/path)</p>"),
    ("[x](https://e.org/a_(b))",
     '<p><a href="https://e.org/a_(b)" target="_blank" rel="noopener noreferrer">x</a></p>'),
    ("![图](https://e.org/i.png)",
     '<p><a href="https://e.org/i.png" target="_blank" rel="noopener noreferrer">🖼 图</a></p>'),
    ("![图](javascript:x)", "<p>![图](javascript:x)</p>"),
    ("见 https://e.org/x。", '<p>见 <a href="https://e.org/x" target="_blank" rel="noopener noreferrer">'
     "https://e.org/x</a>。</p>"),
    ("<https://e.org>", '<p><a href="https://e.org" target="_blank" rel="noopener noreferrer">'
     "https://e.org</a></p>"),
    ("<javascript:alert(1)>", "<p>&lt;javascript:alert(1)&gt;</p>"),
    ("mail a@b.org", "<p>mail a@b.org</p>"),
    ("<b onclick=x>粗</b>", "<p>&lt;b onclick=x&gt;粗&lt;/b&gt;</p>"),
    ("```js\nlet a = '<i>';",
     '<div class="code-block"><div class="code-head"><span class="code-lang">js</span>'
     '<button type="button" class="copy copy-code" data-i18n="copy"></button></div>'
     '<pre><code class="hljs language-js"><span class="hljs-keyword">let</span> a = '
     '<span class="hljs-string">&#x27;&lt;i&gt;&#x27;</span>;</code></pre></div>'),
    ('```"><img src=x>\nx\n```',
     '<div class="code-block"><div class="code-head"><span class="code-lang">&quot;&gt;&lt;img</span>'
     '<button type="button" class="copy copy-code" data-i18n="copy"></button></div>'
     '<pre><code class="hljs">x</code></pre></div>'),
    ("~~~\n```\n~~~",
     '<div class="code-block"><div class="code-head"><span></span>'
     '<button type="button" class="copy copy-code" data-i18n="copy"></button></div>'
     '<pre><code class="hljs">```</code></pre></div>'),
    ("- a\n- b\n\n1. x\n2. y", "<ul><li>a</li><li>b</li></ul><ol><li>x</li><li>y</li></ol>"),
    ("3. c\n4. d", '<ol start="3"><li>c</li><li>d</li></ol>'),
    ("98. a\n99. b\n100. c", '<ol start="98" class="digits-3"><li>a</li><li>b</li><li>c</li></ol>'),
    ("1. a\n   - b\n2. c", "<ol><li>a\n<ul><li>b</li></ul></li><li>c</li></ol>"),
    # CommonMark: a sublist must reach the item's text (3 columns here); 2 spaces end the list.
    ("1. a\n  - b\n2. c", '<ol><li>a</li></ol><ul><li>b</li></ul><ol start="2"><li>c</li></ol>'),
    ("- a\n\n- b", "<ul><li><p>a</p></li><li><p>b</p></li></ul>"),
    ("> q\n> r", "<blockquote><p>q<br>r</p></blockquote>"),
    # GFM: a pipe splits cells even inside backticks, unless escaped.
    ("a | b\n--|--\n1 | `x|y`",
     '<div class="table-wrap"><table><thead><tr><th>a</th><th>b</th></tr></thead>'
     '<tbody><tr><td>1</td><td>`x</td></tr></tbody></table></div>'),
    ("a | b\n--|--:\n1 | `x\\|y`",
     '<div class="table-wrap"><table><thead><tr><th>a</th><th class="align-right">b</th></tr></thead>'
     '<tbody><tr><td>1</td><td class="align-right"><code>x|y</code></td></tr></tbody></table></div>'),
    # Not formulas: money, escaped dollars, code, unclosed delimiters.
    ("价格 $5 和 $6", "<p>价格 $5 和 $6</p>"),
    ("\\$x\\$", "<p>$x$</p>"),
    ("`$x$`", "<p><code>$x$</code></p>"),
    ("$$\nx\n", "<p>$$<br>x</p>"),
    ("\\(x", "<p>(x</p>"),
    ("$ x$", "<p>$ x$</p>"),
]


@pytest.fixture(scope="module")
def page_modules(browser):
    with FakeOpenAIServer(flavor="deepseek", api_key=None) as fake:
        client = Client(provider="deepseek", base_url=fake.base_url, api_key="sk-test-page-modules", verbose=False)
        with ServerThread(create_app(client)) as server:
            page = browser.new_page()
            page.goto(server.url + "/")
            page.evaluate("async () => { window.render = await import('/static/render.js'); }")
            yield page
            page.close()
        client.close()


def render(page, source):
    return page.evaluate("src => window.render.renderHTML(src).replace(/>\\n/g, '>').replace(/\\n$/, '')", source)


@pytest.mark.parametrize("source, html", RENDER_CASES)
def test_markdown_renderer(page_modules, source, html):
    assert render(page_modules, source) == html


# Streaming re-reads only the blocks that appending can still change; fed every prefix of these,
# the page must end exactly where rendering the whole text at once does.
STREAM_DOCS = [
    MATH, MARKDOWN, CODE,
    "1. a\n\n2. b\n\n3. c\n\n结束",
    "- x\n\n  接着 x\n- y\n\n段落",
    "段落\n\n```\n代码\n\n更多代码\n```\n\n之后",
    "$$\na\n\nb\n$$\n\n$$\nc\n$$\n\n后",
    "标题\n\n---\n\n副标题\n===\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n尾",
    "> 引用\n\n> 再引用\n\n    缩进代码\n\n完",
    "[文档][1]\n\n中间\n\n[1]: https://e.org/doc\n",
]


@pytest.mark.parametrize("doc", STREAM_DOCS)
def test_streaming_renders_what_rendering_at_once_does(page_modules, doc):
    streamed, at_once, html = page_modules.evaluate("""doc => {
        const streamed = document.createElement('div'), atOnce = document.createElement('div');
        const view = new window.render.MarkdownView(streamed);
        for (let i = 1; i < doc.length; i += 3) view.show(doc.slice(0, i));
        view.show(doc);
        new window.render.MarkdownView(atOnce).show(doc);
        const html = document.createElement('div');
        html.innerHTML = window.render.renderHTML(doc);
        return [streamed.innerHTML, atOnce.innerHTML, html.innerHTML]; }""", doc)
    assert streamed == at_once == html


# Formulas, checked by the source KaTeX was given (kept in its MathML) and by display or not.
MATH_CASES = [
    ("$2*3*4 = 24$", [("2*3*4 = 24", False)]),
    ("\\(\\Delta\\)", [("\\Delta", False)]),
    ("\\[a \\\\ b\\]", [("a \\\\ b", True)]),
    ("$$\\frac{a_1}{b_2}$$", [("\\frac{a_1}{b_2}", True)]),
    ("$a_1$ 和 $b_1$", [("a_1", False), ("b_1", False)]),
    ("$\\$5$", [("\\$5", False)]),
    ("$$a$$ 和 $$b$$", [("a", True), ("b", True)]),
    ("$$\n\\begin{aligned} a &= 1 \\\\ b &= 2 \\end{aligned}\n$$",
     [("\n\\begin{aligned} a &= 1 \\\\ b &= 2 \\end{aligned}\n", True)]),
    ("1. 先算\n\n   \\[\n   x^2\n   \\]", [("\nx^2\n", True)]),
    ("> $$\n> y\n> $$", [("\ny\n", True)]),
    ("速度 $v = \\dfrac{路程}{时间}$", [("v = \\dfrac{路程}{时间}", False)]),
    ("$x$\n- 项", [("x", False)]),
]


@pytest.mark.parametrize("source, formulas", MATH_CASES)
def test_math_renderer(page_modules, source, formulas):
    got = page_modules.evaluate("""src => { const d = document.createElement('div');
        d.innerHTML = window.render.renderHTML(src);
        return [...d.querySelectorAll('.katex')].map(k => [
            k.querySelector('annotation').textContent, !!k.closest('.katex-display')]); }""", source)
    assert [tuple(f) for f in got] == formulas


# The page's SSE reader, fed byte by byte so every line, CRLF and UTF-8 character is split.
SSE_CASES = [
    (b"data: a\n\ndata: b\n\n", ["a", "b"]),
    (b"data: a\r\n\r\ndata: b\r\n\r\n", ["a", "b"]),
    (b"data: a\r\rdata: b\r\r", ["a", "b"]),
    ("data: 你好，世界\n\n".encode(), ["你好，世界"]),
    (b": keep-alive\n\nevent: x\nid: 1\nretry: 5\ndata: a\ndata: b\n\n", ["a\nb"]),
    (b"data:tight\n\ndata\n\n", ["tight", ""]),
    (b"\n\n\ndata: a\n\n", ["a"]),
    (b"data: a\n\ndata: cut off", ["a"]),  # an unfinished event is dropped
]


@pytest.mark.parametrize("wire, events", SSE_CASES)
def test_sse_reader_handles_any_split(page_modules, wire, events):
    got = page_modules.evaluate("""async bytes => {
        const { readEvents } = await import('/static/sse.js');
        const body = new ReadableStream({ start(c) {
            for (const b of bytes) c.enqueue(new Uint8Array([b]));
            c.close(); } });
        const got = [];
        await readEvents(body, d => got.push(d));
        return got; }""", list(wire))
    assert got == events


# ---- language, errors, access code, layout -------------------------------------

def test_english_switch_changes_every_label(context, classroom):
    room = classroom(reply=echo, system="规则")
    page = open_page(context, room)
    send(page, "你好")
    wait_idle(page)
    zh = {"#submit": "提交", "#retry": "重试", "#undo": "撤回", "#clear": "清空", "#lang": "English",
          "#new-chat": "新对话", "#export": "导出", "#history-label": "对话记录", "#theme": "深色",
          ".copy-answer": "复制回答", "#clear-title": "清空这段对话？"}
    en = {"#submit": "Submit", "#retry": "Retry", "#undo": "Undo", "#clear": "Clear", "#lang": "中文",
          "#stop": "Stop", "#system summary": "System prompt", "h1": "XEduLLM Classroom Chat",
          ".msg.user .who": "You", "#new-chat": "New chat", "#export": "Export",
          "#history-label": "Conversations", "#theme": "Dark", ".copy-answer": "Copy answer",
          "#clear-title": "Clear this conversation?", "#clear-ok": "Clear", "#clear-keep": "Keep"}
    for sel, text in zh.items():
        expect(page.locator(sel)).to_have_text(text)
    page.locator("#lang").click()
    for sel, text in en.items():
        expect(page.locator(sel)).to_have_text(text)
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#input")).to_have_attribute("placeholder", "Type your question: Enter sends, Shift+Enter adds a new line")
    # Remembered on the next visit, and switchable back.
    page.reload()
    expect(page.locator("#submit")).to_have_text("Submit")
    page.locator("#lang").click()
    expect(page.locator("#submit")).to_have_text("提交")


def test_upstream_error_shows_a_readable_message_and_retry_recovers(context, classroom):
    room = classroom(reply=echo)
    room.fake.faults.append(Fault.status(401))  # the provider rejects the teacher's key once
    page = open_page(context, room)
    send(page, "你好")
    wait_idle(page)
    alert = page.locator(".msg.error[role=alert]")
    expect(alert).to_be_visible()
    message = alert.inner_text()
    assert "老师" in message and " / " in message  # bilingual, meant for the student
    assert_no_key(page, room)
    expect(answers(page)).to_have_count(0)
    expect(page.locator("#retry")).to_be_enabled()
    page.locator("#retry").click()
    wait_idle(page)
    expect(alert).to_have_count(0)
    expect(answers(page)).to_have_text(["你问的是：你好"])


class AccessCodePolicy:
    """A stand-in for the classroom controls: one access code for the whole class."""

    access_code_required = True

    def __init__(self, code):
        self._code = code
        self.seen = []

    def models(self):
        return ["deepseek-chat"]

    async def admit(self, request, requested_model):
        given = request.headers.get("authorization", "")
        self.seen.append(given)
        if given != "Bearer " + self._code:
            raise AuthenticationError("访问码不对，请向老师确认。 / Wrong access code; check with your teacher.")
        return Admission(who="class", model="deepseek-chat")


def test_access_code_is_asked_once_kept_and_asked_again_when_rejected(context, classroom):
    policy = AccessCodePolicy("1234")
    room = classroom(reply=echo, policy=policy)
    page = context.new_page()
    page.goto(room.url + "/")
    dialog = page.locator("#code-dialog")
    expect(dialog).to_be_visible()
    page.locator("#code-input").fill("9999")  # wrong at first
    page.locator("#code-dialog button[value=ok]").click()
    expect(dialog).to_be_hidden()
    send(page, "你好")
    expect(dialog).to_be_visible()  # rejected: asked again
    page.locator("#code-input").fill("1234")
    page.locator("#code-dialog button[value=ok]").click()
    wait_idle(page)
    expect(answers(page)).to_have_text(["你问的是：你好"])
    assert policy.seen == ["Bearer 9999", "Bearer 1234"]
    # Kept for the next visit: no question asked.
    again = context.new_page()
    again.goto(room.url + "/")
    expect(again.locator("#model")).to_have_text("deepseek-chat")
    send(again, "再问")
    wait_idle(again)
    expect(again.locator("#code-dialog")).to_be_hidden()
    assert policy.seen[-1] == "Bearer 1234"


def test_cancelling_the_access_code_shows_what_to_do(context, classroom):
    room = classroom(reply=echo, policy=AccessCodePolicy("1234"))
    page = context.new_page()
    page.goto(room.url + "/")
    page.locator("#code-cancel").click()
    expect(page.locator("#code-dialog")).to_be_hidden()
    send(page, "你好")
    page.locator("#code-cancel").click()
    wait_idle(page)
    expect(page.locator(".msg.error[role=alert]")).to_contain_text("访问码")
    expect(answers(page)).to_have_count(0)


def test_phone_layout_fits_and_screenshot(browser, classroom, tmp_path):
    room = classroom(reply=lambda messages: (
        "光合作用是植物利用**阳光**把二氧化碳和水变成养分的过程：\n\n"
        "$$\\ce{6CO2 + 6H2O ->[光照][叶绿体] C6H12O6 + 6O2}$$\n\n"
        "1. 叶绿素吸收光能\n2. 水被分解，放出**氧气**\n3. 二氧化碳被合成为葡萄糖\n\n"
        "| 原料 | 产物 |\n|---|---|\n| 二氧化碳、水 | 葡萄糖、氧气 |\n\n"
        "```python\nprint(\"光合作用\")\n```"), system="你是一位中学生物老师，回答简洁。")
    shots = []
    for width, height in ((390, 844), (1280, 800)):
        ctx = new_context(browser, viewport={"width": width, "height": height}, device_scale_factor=1)
        page = open_page(ctx, room)
        send(page, "什么是光合作用？")
        wait_idle(page)
        overflow = page.evaluate("document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth")
        assert overflow <= 0  # a long formula scrolls inside its bubble instead
        for sel in ("#input", "#submit", "#retry", "#undo", "#clear", "#lang", "#theme", "#history",
                    "#new-chat", "#export"):
            box = page.locator(sel).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, sel
            assert box["y"] + box["height"] <= height, sel  # composer stays on screen
        bubble = answers(page).first.bounding_box()
        assert bubble["x"] >= 0 and bubble["x"] + bubble["width"] <= width
        path = tmp_path / ("chat-%d.png" % width)
        page.screenshot(path=str(path))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        shots.append(path)
        ctx.watch.assert_clean()
        ctx.close()
    if UPDATE_SCREENSHOTS:
        (ROOT / "docs").mkdir(exist_ok=True)
        (ROOT / "docs" / "screenshot-chat.png").write_bytes(shots[-1].read_bytes())


def test_the_page_says_why_a_code_is_refused_and_asks_again_when_a_kept_one_stops_working(
        context, teacher_fake, tmp_path):
    from test_classroom_controls import serving

    with serving(teacher_fake, tmp_path, access_code="math42", admin_password="pw-teacher-1") as room:
        page = context.new_page()
        page.goto(room.url + "/")
        dialog, why = page.locator("#code-dialog"), page.locator("#code-why")
        expect(dialog).to_be_visible()
        expect(why).to_contain_text("访问码")           # the server's own words, not "cannot reach"
        page.locator("#code-input").fill("wrong-1")
        page.locator("#code-dialog button[value=ok]").click()
        expect(dialog).to_be_visible()
        expect(why).to_contain_text("访问码")
        page.locator("#code-input").fill("math42")
        page.locator("#code-dialog button[value=ok]").click()
        expect(dialog).to_be_hidden()
        expect(page.locator("#model")).to_have_text("deepseek-chat")
        # The teacher changes the code: the kept one stops working and is asked for again.
        room.app.state.xedullm.live.apply({"access_code": "newcode7"})
        page.reload()
        expect(dialog).to_be_visible()
        expect(why).not_to_be_empty()
