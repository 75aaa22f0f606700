"""The student page with a picture, in headless Chromium against the real classroom server:
attach (or paste) a picture, see it shrunk in the browser and shown in the conversation, get
the vision model's answer; with a model that cannot see, the server's words say so and the
page keeps working."""
from __future__ import annotations

import base64
import contextlib
import re
import struct
import zlib

import pytest
from playwright.sync_api import expect

from xedullm import Client
from xedullm.server.app import ServerSettings, create_app
from xedullm.testing import FakeOpenAIServer, ServerThread

from conftest import TEACHER_KEY

expect.set_options(timeout=20_000)  # two shared cores: be patient, never race


def png(width, height):
    """A real PNG (a colour gradient) of this size."""
    rows = b"".join(b"\x00" + bytes(v for x in range(width) for v in (x * 255 // width, y * 255 // height, 128))
                    for y in range(height))
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b""))


def jpeg_size(data):
    """(width, height) from a baseline JPEG's SOF0 frame header."""
    at = data.index(b"\xff\xc0")
    height, width = struct.unpack(">HH", data[at + 5:at + 9])
    return width, height


@contextlib.contextmanager
def served(provider, model, flavor, **settings):
    with FakeOpenAIServer(flavor, api_key=TEACHER_KEY) as fake:
        client = Client(provider=provider, base_url=fake.base_url, api_key=TEACHER_KEY, model=model,
                        max_retries=0, verbose=False)
        app = create_app(client, settings=ServerSettings(**settings))
        with ServerThread(app) as server:
            yield server.url, fake
        client.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.errors = []
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    yield page
    context.close()


def test_a_picture_is_shrunk_sent_shown_and_answered(page, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(png(1600, 1200))
    with served("glm", "glm-4v-flash", "glm") as (url, fake):
        page.goto(url)
        expect(page.locator("#model")).to_have_text("glm-4v-flash")
        expect(page.locator("#attach")).to_be_visible()
        page.set_input_files("#picture-input", str(photo))
        expect(page.locator("#attached")).to_be_visible()
        page.fill("#input", "图里是什么颜色？")
        page.press("#input", "Enter")
        expect(page.locator(".msg.assistant").last).to_contain_text("我看到了 1 张图片。你好！你刚才说：图里是什么颜色？")
        expect(page.locator(".msg.user img.sent-picture")).to_have_count(1)
        expect(page.locator("#attached")).to_be_hidden()
        parts = fake.chat_requests[-1]["json"]["messages"][-1]["content"]
        assert parts[0] == {"type": "text", "text": "图里是什么颜色？"}
        sent = base64.b64decode(parts[1]["image_url"]["url"])   # GLM takes the base64 bare
        assert sent[:3] == b"\xff\xd8\xff" and jpeg_size(sent) == (1024, 768)   # a JPEG, shrunk in the browser
        # The next question keeps the picture in the history; the picture stays after a reload.
        page.reload()
        expect(page.locator(".msg.user img.sent-picture")).to_have_count(1)
        assert page.errors == []


def test_a_model_that_cannot_see_says_so_and_the_page_keeps_working(page, tmp_path):
    photo = tmp_path / "small.png"
    photo.write_bytes(png(40, 30))
    with served("deepseek", "deepseek-chat", "deepseek") as (url, fake):
        page.goto(url)
        page.set_input_files("#picture-input", str(photo))
        page.fill("#input", "图里有什么？")
        page.press("#input", "Enter")
        expect(page.locator(".msg.error")).to_contain_text("看不到图片")
        expect(page.locator(".msg.error")).to_contain_text("glm-4v-flash")
        assert fake.chat_requests == []
        # Undo brings the question and its picture back; without the picture it is answered.
        page.click("#undo")
        expect(page.locator("#attached")).to_be_visible()
        page.click("#detach")
        page.press("#input", "Enter")
        expect(page.locator(".msg.assistant").last).to_contain_text("你好！你刚才说：图里有什么？")
        assert page.errors == [] or all(re.search(r"status of 400", e) for e in page.errors)


def test_the_teachers_switch_hides_the_picture_button(page):
    with served("glm", "glm-4v-flash", "glm", allow_pictures=False) as (url, fake):
        page.goto(url)
        expect(page.locator("#model")).to_have_text("glm-4v-flash")
        expect(page.locator("#attach")).to_be_hidden()


PASTE = """b64 => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], "pasted.png", { type: "image/png" }));
  document.getElementById("input").dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true }));
}"""


def test_a_pasted_picture_goes_with_the_question(page):
    with served("glm", "glm-4v-flash", "glm") as (url, fake):
        page.goto(url)
        expect(page.locator("#model")).to_have_text("glm-4v-flash")
        page.evaluate(PASTE, base64.b64encode(png(300, 200)).decode())
        expect(page.locator("#attached")).to_be_visible()
        page.fill("#input", "这是什么？")
        page.press("#input", "Enter")
        expect(page.locator(".msg.assistant").last).to_contain_text("我看到了 1 张图片。")
        sent = base64.b64decode(fake.chat_requests[-1]["json"]["messages"][-1]["content"][1]["image_url"]["url"])
        assert jpeg_size(sent) == (300, 200)   # small pictures keep their size
        assert page.errors == []
