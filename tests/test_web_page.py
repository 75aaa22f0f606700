"""The student chat page, driven in headless Chromium against the real classroom server.

The server runs for real on 127.0.0.1 in front of a fake provider; the browser talks to it
over real sockets. Set XEDULLM_UPDATE_SCREENSHOT=1 to rewrite docs/screenshot-chat.png.
"""
from __future__ import annotations

import os
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

ROOT = Path(__file__).resolve().parent.parent

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


# ---- browser -----------------------------------------------------------------


class Watch:
    """Everything the page did that must never happen: errors, script, outside requests."""

    def __init__(self, context):
        self.requests = []
        self.errors = []
        context.on("request", lambda r: self.requests.append(r))
        context.on("weberror", lambda e: self.errors.append(str(e.error)))

    def foreign_hosts(self):
        return sorted({urlsplit(r.url).hostname for r in self.requests
                       if urlsplit(r.url).scheme in ("http", "https", "ws", "wss")
                       and urlsplit(r.url).hostname != "127.0.0.1"})


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1100, "height": 800}, locale="zh-CN")
    ctx.watch = Watch(ctx)
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
    assert context.watch.errors == []


def test_no_system_prompt_box_without_a_system_prompt(context, classroom):
    page = open_page(context, classroom(reply=echo))
    expect(page.locator("#system")).to_be_hidden()


def test_page_carries_a_strict_content_security_policy(context, classroom):
    page = open_page(context, classroom(reply=echo))
    csp = page.locator('meta[http-equiv="Content-Security-Policy"]').get_attribute("content")
    for directive in ("default-src 'self'", "script-src 'self'", "style-src 'self'",
                      "img-src 'self' data:", "connect-src 'self'"):
        assert directive in csp
    assert "unsafe" not in csp
    # Nothing on the page comes from elsewhere, and no markup carries an inline handler.
    assert page.evaluate("""() => [...document.querySelectorAll('*')].filter(e =>
        [...e.attributes].some(a => a.name.startsWith('on'))).length""") == 0
    assert context.watch.foreign_hosts() == []


def test_enter_sends_and_the_answer_streams_in(context, classroom):
    reply = "".join("第%d句。" % i for i in range(1, 41))
    room = classroom(reply=lambda messages: reply, token_delay=0.03)
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
    session = [r.headers.get("x-xedullm-session") for r in context.watch.requests
               if r.url.endswith("/v1/chat/completions")]
    assert session and len(session[0]) >= 16


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


def test_clear_empties_the_conversation(context, classroom):
    room = classroom(reply=counting_reply())
    page = open_page(context, room)
    send(page, "问题一")
    wait_idle(page)
    page.locator("#clear").click()
    expect(page.locator(".msg")).to_have_count(0)
    expect(page.locator("#empty")).to_be_visible()
    expect(page.locator("#clear")).to_be_disabled()
    expect(page.locator("#undo")).to_be_disabled()
    expect(page.locator("#retry")).to_be_disabled()
    send(page, "新话题")
    wait_idle(page)
    sent = [m for m in room.upstream_bodies()[-1]["messages"] if m["role"] != "system"]
    assert sent == [{"role": "user", "content": "新话题"}]


def test_conversation_survives_a_reload_of_the_same_tab(context, classroom):
    room = classroom(reply=echo)
    page = open_page(context, room)
    send(page, "记住我")
    wait_idle(page)
    page.reload()
    expect(questions(page)).to_have_text(["记住我"])
    expect(answers(page)).to_have_text(["你问的是：记住我"])


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


def test_two_tabs_keep_independent_conversations(context, classroom):
    room = classroom(reply=echo)
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
    sessions = {r.frame.page: r.headers.get("x-xedullm-session") for r in context.watch.requests
                if r.url.endswith("/v1/chat/completions")}
    assert sessions[one] != sessions[two]


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


def assert_inert(page, context):
    assert page.evaluate("typeof window.__pwned") == "undefined"
    log = page.locator("#log")
    for tag in ("img", "script", "iframe", "svg", "style", "object", "embed", "video", "audio"):
        assert log.locator(tag).count() == 0, tag
    hrefs = log.locator("a").evaluate_all("as => as.map(a => [a.getAttribute('href'), a.rel, a.target])")
    for href, rel, target in hrefs:
        assert href.startswith(("http://", "https://")), href
        assert rel == "noopener noreferrer" and target == "_blank"
    assert context.watch.foreign_hosts() == []
    assert context.watch.errors == []
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


def test_user_input_with_html_and_script_is_inert(context, classroom):
    room = classroom(reply=echo)
    page = open_page(context, room)
    send(page, XSS)
    wait_idle(page)
    expect(questions(page).first).to_have_text(XSS)
    expect(answers(page).first).to_contain_text("<script>window.__pwned=2</script>")
    assert_inert(page, context)


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
    assert context.watch.foreign_hosts() == []


# Renderer details, checked in the page itself: Markdown in, DOM out.
RENDER_CASES = [
    ("snake_case and a_b_c", "<p>snake_case and a_b_c</p>"),
    ("**粗体**文字", "<p><strong>粗体</strong>文字</p>"),
    ("2 * 3 * 4", "<p>2 * 3 * 4</p>"),
    ("\\*不是强调\\*", "<p>*不是强调*</p>"),
    ("~~删除~~", "<p><del>删除</del></p>"),
    ("`a<b>`", "<p><code>a&lt;b&gt;</code></p>"),
    ("第一行\n第二行", "<p>第一行<br>第二行</p>"),
    ("# 大标题", "<h3>大标题</h3>"),
    ("#### 小标题 ##", "<h6>小标题</h6>"),
    ("#话题", "<p>#话题</p>"),
    ("---", "<hr>"),
    ("[x](javascript:alert(1))", "<p>x</p>"),
    ("[x](JaVaScRiPt:alert(1))", "<p>x</p>"),
    ("[x](data:text/html,hi)", "<p>x</p>"),
    ("[x](/relative/path)", "<p>x</p>"),
    ("[x](https://e.org/a_(b))",
     '<p><a href="https://e.org/a_(b)" target="_blank" rel="noopener noreferrer">x</a></p>'),
    ("![图](https://e.org/i.png)",
     '<p><a href="https://e.org/i.png" target="_blank" rel="noopener noreferrer">🖼 图</a></p>'),
    ("![图](javascript:x)", "<p>🖼 图</p>"),
    ("见 https://e.org/x。", '<p>见 <a href="https://e.org/x" target="_blank" rel="noopener noreferrer">'
     "https://e.org/x</a>。</p>"),
    ("<https://e.org>", '<p><a href="https://e.org/" target="_blank" rel="noopener noreferrer">'
     "https://e.org</a></p>"),
    ("<b onclick=x>粗</b>", "<p>&lt;b onclick=x&gt;粗&lt;/b&gt;</p>"),
    ("```js\nlet a = '<i>';", "<pre data-lang=\"js\"><code data-lang=\"js\">let a = '&lt;i&gt;';</code></pre>"),
    ("~~~\n```\n~~~", "<pre><code>```</code></pre>"),
    ("- a\n- b\n\n1. x\n2. y", "<ul><li>a</li><li>b</li></ul><ol><li>x</li><li>y</li></ol>"),
    ("3. c\n4. d", '<ol start="3"><li>c</li><li>d</li></ol>'),
    ("1. a\n  - b\n2. c", "<ol><li>a<ul><li>b</li></ul></li><li>c</li></ol>"),
    ("- a\n\n- b", "<ul><li><p>a</p></li><li><p>b</p></li></ul>"),
    ("> q\n> r", "<blockquote><p>q<br>r</p></blockquote>"),
    ("a | b\n--|--\n1 | `x|y`",
     "<div class=\"table-wrap\"><table><thead><tr><th>a</th><th>b</th></tr></thead>"
     "<tbody><tr><td>1</td><td><code>x|y</code></td></tr></tbody></table></div>"),
]


@pytest.fixture(scope="module")
def page_modules(browser):
    with FakeOpenAIServer(flavor="deepseek", api_key=None) as fake:
        client = Client(provider="deepseek", base_url=fake.base_url, api_key="sk-test-page-modules", verbose=False)
        with ServerThread(create_app(client)) as server:
            page = browser.new_page()
            page.goto(server.url + "/")
            page.evaluate("async () => { window.md = await import('/static/markdown.js'); }")
            yield page
            page.close()
        client.close()


@pytest.mark.parametrize("source, html", RENDER_CASES)
def test_markdown_renderer(page_modules, source, html):
    got = page_modules.evaluate("""src => { const d = document.createElement('div');
        d.append(window.md.renderMarkdown(src)); return d.innerHTML; }""", source)
    assert got == html


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
    zh = {"#submit": "提交", "#retry": "重试", "#undo": "撤回", "#clear": "清空", "#lang": "English"}
    en = {"#submit": "Submit", "#retry": "Retry", "#undo": "Undo", "#clear": "Clear", "#lang": "中文",
          "#stop": "Stop", "#system summary": "System prompt", "h1": "XEduLLM Classroom Chat",
          ".msg.user .who": "You"}
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


def test_error_in_the_middle_of_a_stream_is_shown(context, classroom):
    room = classroom(reply=lambda messages: "这是一个会被打断的很长的回答" * 5)
    room.fake.faults.append(Fault.error_frame(after=2, message="content blocked"))
    page = open_page(context, room)
    send(page, "你好")
    wait_idle(page)
    alert = page.locator(".msg.error[role=alert]")
    expect(alert).to_be_visible()
    assert " / " in alert.inner_text()
    expect(answers(page)).to_have_count(0)  # a broken half answer is not kept
    page.locator("#retry").click()
    wait_idle(page)
    expect(answers(page)).to_have_text(["这是一个会被打断的很长的回答" * 5])


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
        "1. 叶绿素吸收光能\n2. 水被分解，放出**氧气**\n3. 二氧化碳被合成为葡萄糖\n\n"
        "| 原料 | 产物 |\n|---|---|\n| 二氧化碳、水 | 葡萄糖、氧气 |\n\n"
        "```python\nprint(\"光合作用\")\n```"), system="你是一位中学生物老师，回答简洁。")
    shots = []
    for width, height in ((390, 844), (1280, 800)):
        ctx = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
        page = open_page(ctx, room)
        send(page, "什么是光合作用？")
        wait_idle(page)
        overflow = page.evaluate("document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth")
        assert overflow <= 0
        for sel in ("#input", "#submit", "#retry", "#undo", "#clear", "#lang"):
            box = page.locator(sel).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, sel
            assert box["y"] + box["height"] <= height, sel  # composer stays on screen
        path = tmp_path / ("chat-%d.png" % width)
        page.screenshot(path=str(path))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        shots.append(path)
        ctx.close()
    if os.environ.get("XEDULLM_UPDATE_SCREENSHOT"):
        (ROOT / "docs").mkdir(exist_ok=True)
        (ROOT / "docs" / "screenshot-chat.png").write_bytes(shots[-1].read_bytes())
