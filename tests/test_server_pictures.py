"""Pictures through the classroom server, from the openai SDK as a student's program sends
them: forwarded to a model that sees, refused clearly by one that cannot, under the class's
rules (size and count caps, the teacher's switch, blocked words on the text, pictures counted
in holds and budgets), and never stored unless the teacher turned storing on."""
from __future__ import annotations

import base64
import contextlib
import json

import httpx
import openai
import pytest
from playwright.sync_api import expect

from xedullm import Client
from xedullm.server.app import ServerSettings, create_app
from xedullm.testing import FakeOpenAIServer, ServerThread

from conftest import TEACHER_KEY, rows_written, wait_until

CODE = "math42"
PICTURE = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake picture bytes" * 4).decode()


def question(text="图里有什么？", url=PICTURE):
    return [{"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]}]


@contextlib.contextmanager
def vision_class(tmp_path, flavor="glm", provider="glm", model="glm-4v-flash", token_delay=0.0, **settings):
    """Our server for real on 127.0.0.1, a class with an access code, in front of a fake."""
    with FakeOpenAIServer(flavor, api_key=TEACHER_KEY, token_delay=token_delay) as fake:
        client = Client(provider=provider, base_url=fake.base_url, api_key=TEACHER_KEY, model=model,
                        max_retries=0, verbose=False)
        app = create_app(client, settings=ServerSettings(access_code=CODE, data_dir=str(tmp_path), **settings))
        with ServerThread(app) as server:
            yield server.url, fake, app
        client.close()


def sdk(url, key=CODE):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def ledger(app):
    rows_written(app)
    return list(app.state.xedullm.classroom.store.rows())


def test_the_openai_sdk_asks_about_a_picture_and_gets_the_answer(tmp_path):
    with vision_class(tmp_path) as (url, fake, app):
        got = sdk(url).chat.completions.create(model="glm-4v-flash", messages=question())
        assert got.choices[0].message.content == "我看到了 1 张图片。你好！你刚才说：图里有什么？"
        sent = fake.chat_requests[-1]["json"]["messages"][-1]["content"]
        bare = PICTURE.split(",", 1)[1]   # GLM takes the base64 without "data:…;base64,"
        assert sent == [{"type": "text", "text": "图里有什么？"}, {"type": "image_url", "image_url": {"url": bare}}]
        stream = sdk(url).chat.completions.create(model="glm-4v-flash", messages=question(), stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).startswith("我看到了 1 张图片")
        # The picture's tokens (the fake charges 85) count against the class's budget.
        wait_until(lambda: len(ledger(app)) == 2)
        assert all(row["prompt_tokens"] >= 85 for row in ledger(app))


def test_a_model_that_cannot_see_gives_a_clear_400(classroom_server):
    room = classroom_server()   # DeepSeek: no model of it sees
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(room.url, "anything").chat.completions.create(model="deepseek-chat", messages=question())
    assert caught.value.status_code == 400
    message = caught.value.body["message"]
    assert "看不到图片" in message and "glm-4v-flash" in message and "cannot see pictures" in message
    assert room.fake.chat_requests == []


def test_the_class_rules_cap_refuse_and_count_pictures(tmp_path):
    with vision_class(tmp_path) as (url, fake, app):
        student = sdk(url)
        big = "data:image/png;base64," + "A" * (3 * 1024 * 1024)
        with pytest.raises(openai.BadRequestError, match="图片太大"):
            student.chat.completions.create(model="glm-4v-flash", messages=question(url=big[:2_900_000]))
        five = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": PICTURE}}] * 5}]
        with pytest.raises(openai.BadRequestError, match="图片太多"):
            student.chat.completions.create(model="glm-4v-flash", messages=five)
        with pytest.raises(openai.BadRequestError, match="https://"):
            student.chat.completions.create(model="glm-4v-flash", messages=question(url="file:///etc/passwd"))
        with pytest.raises(openai.AuthenticationError):
            sdk(url, "wrong").chat.completions.create(model="glm-4v-flash", messages=question())
        assert fake.chat_requests == []
    # The teacher's switch (an admin setting row) turns pictures off; text still works.
    with vision_class(tmp_path / "off", allow_pictures=False) as (url, fake, app):
        with pytest.raises(openai.BadRequestError, match="老师关闭了图片"):
            sdk(url).chat.completions.create(model="glm-4v-flash", messages=question())
        assert sdk(url).chat.completions.create(model="glm-4v-flash", messages=[{"role": "user", "content": "你好"}])
        assert httpx.get(f"{url}/api/info", headers={"Authorization": f"Bearer {CODE}"}).json()["allow_pictures"] is False


def test_a_picture_is_held_for_like_the_tokens_it_will_cost(tmp_path):
    # While a picture's answer runs, 1280 tokens are held for the picture (clipped to what is
    # left of the budget): a text question asked meanwhile finds the budget held.
    with vision_class(tmp_path, token_delay=0.2, daily_budget=1300, max_answer_tokens=100,
                      budget_wait=0) as (url, fake, app):
        stream = sdk(url).chat.completions.create(model="glm-4v-flash", messages=question(), stream=True)
        assert fake.wait_for(lambda: fake.active_streams == 1)
        with pytest.raises(openai.RateLimitError) as caught:
            sdk(url).chat.completions.create(model="glm-4v-flash", messages=[{"role": "user", "content": "你好"}])
        assert "占用" in caught.value.body["message"]
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).startswith("我看到了")
        assert len(fake.chat_requests) == 1


def test_blocked_words_apply_to_the_text_beside_a_picture(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("作弊\n", encoding="utf-8")
    with vision_class(tmp_path, blocked_words=str(words)) as (url, fake, app):
        with pytest.raises(openai.BadRequestError):
            sdk(url).chat.completions.create(model="glm-4v-flash", messages=question("教我作弊"))
        assert fake.chat_requests == []


def test_stored_conversations_show_that_a_picture_was_sent_not_the_picture(tmp_path):
    with vision_class(tmp_path, review=True, admin_password="teacher-pw-1") as (url, fake, app):
        sdk(url).chat.completions.create(model="glm-4v-flash", messages=question())
        wait_until(lambda: len(ledger(app)) == 1)
        kept = ledger(app)[0]["conversation"]
        assert "base64" not in kept and "[图片 / picture]" in kept
        assert json.loads(kept)["messages"][-1]["content"] == [
            {"type": "text", "text": "图里有什么？"}, {"type": "text", "text": "[图片 / picture]"}]
        # The teacher's review shows the question as text, the picture as its mark.
        teacher = httpx.Client(base_url=url, timeout=20)
        assert teacher.post("/admin/login", data={"password": "teacher-pw-1"}).status_code == 303
        shown = teacher.get("/admin/api/review").json()["conversations"]
        assert [c["question"] for c in shown] == ["图里有什么？[图片 / picture]"]
    with vision_class(tmp_path / "kept", review=True, store_pictures=True) as (url, fake, app):
        sdk(url).chat.completions.create(model="glm-4v-flash", messages=question())
        wait_until(lambda: len(ledger(app)) == 1)
        assert PICTURE in ledger(app)[0]["conversation"]


def test_the_teacher_turns_pictures_off_and_on_from_the_admin_page(tmp_path, browser):
    with vision_class(tmp_path, admin_password="teacher-pw-1") as (url, fake, app):
        teacher = httpx.Client(base_url=url, timeout=20)
        assert teacher.post("/admin/login", data={"password": "teacher-pw-1"}).status_code == 303
        settings = teacher.get("/admin/api/overview").json()["settings"]
        assert (settings["allow_pictures"], settings["store_pictures"]) == (True, False)
        # The page's checkbox, as the teacher clicks it.
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{url}/admin")
        page.fill("#password", "teacher-pw-1")
        page.click("button[type=submit]")
        expect(page.locator("#allow-pictures")).to_be_checked()
        expect(page.locator("#store-pictures")).not_to_be_checked()
        page.locator("#allow-pictures").uncheck()
        page.click("#settings button[type=submit]")
        expect(page.locator("#settings-status")).to_contain_text("已保存")
        context.close()
        assert teacher.get("/admin/api/overview").json()["settings"]["allow_pictures"] is False
        with pytest.raises(openai.BadRequestError, match="老师关闭了图片"):
            sdk(url).chat.completions.create(model="glm-4v-flash", messages=question())
        assert teacher.post("/admin/api/settings", json={"allow_pictures": True},
                            headers={"X-Xedullm-Admin": "1"}).status_code == 200
        assert sdk(url).chat.completions.create(model="glm-4v-flash", messages=question())
