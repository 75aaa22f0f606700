"""Pictures in questions and embeddings, from the Client to each provider's fake and back:
each adapter sends a picture in its provider's own form or refuses naming the models that
see; ``embed`` gives one vector per text, in order, with usage, in batches the provider takes."""
from __future__ import annotations

import asyncio
import base64
import math

import pytest

from xedullm import BadRequestError, Client
from xedullm.testing import FakeDashScopeServer, FakeOpenAIServer

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
URL = "https://example.com/cat.png"


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "cat.png"
    path.write_bytes(PNG)
    return path


@pytest.mark.parametrize("flavor, model", [("glm", "glm-4v-flash"), ("moonshot", "moonshot-v1-8k-vision-preview"),
                                           ("qwen", "qwen-vl-max")])
def test_openai_compatible_providers_get_image_parts_as_sent(flavor, model, picture):
    with FakeOpenAIServer(flavor) as fake:
        provider = flavor if flavor != "qwen" else None
        client = Client(provider=provider, base_url=fake.base_url, api_key="sk-test", model=model, verbose=False)
        assert client.inference("图里有什么？", images=[str(picture), URL]) == \
            "我看到了 2 张图片。你好！你刚才说：图里有什么？"
        parts = fake.chat_requests[-1]["json"]["messages"][-1]["content"]
        assert parts[0] == {"type": "text", "text": "图里有什么？"}
        # GLM takes the base64 bare (it refuses a data: URL); the others the data: URL.
        inline = "" if flavor == "glm" else "data:image/png;base64,"
        assert parts[1]["image_url"]["url"] == inline + base64.b64encode(PNG).decode()
        assert parts[2] == {"type": "image_url", "image_url": {"url": URL}}
        # The pictures count in the usage the provider reports.
        assert client.last_usage.prompt_tokens > 2 * 85
        streamed = "".join(client.inference("图里有什么？", images=[str(picture), URL], stream=True))
        assert streamed.startswith("我看到了 2 张图片。")


def test_dashscope_native_sends_pictures_to_the_multimodal_endpoint(picture):
    with FakeDashScopeServer() as fake:
        client = Client(provider="qwen", base_url=fake.base_url, api_key="sk-test", model="qwen-vl-max", verbose=False)
        client.set_system("你是老师")
        assert client.inference("这是什么？", images=[URL]) == "我看到了 1 张图片。你好！你刚才说：这是什么？"
        sent = fake.chat_requests[-1]
        assert sent["path"].endswith("/services/aigc/multimodal-generation/generation")
        assert sent["json"]["input"]["messages"] == [
            {"role": "system", "content": [{"text": "你是老师"}]},
            {"role": "user", "content": [{"text": "这是什么？"}, {"image": URL}]}]
        assert "".join(client.inference("这是什么？", images=[str(picture)], stream=True)).startswith("我看到了 1 张")
        # Text alone still goes to the text endpoint.
        client.set_model("qwen-turbo")
        client.inference("你好")
        assert fake.chat_requests[-1]["path"].endswith("/text-generation/generation")


@pytest.mark.parametrize("provider, model, named", [
    ("deepseek", "deepseek-chat", "DeepSeek"), ("glm", "glm-4-flash", "GLM"), ("qwen", "qwen-turbo", "Qwen"),
    ("ernie", "ERNIE_speed_8k", "ERNIE"), ("local", None, "local")])
def test_a_model_that_cannot_see_is_refused_before_anything_is_sent(provider, model, named):
    with FakeOpenAIServer("deepseek") as fake:
        client = Client(provider=provider, base_url=fake.base_url, api_key="sk-test", secret_key="s",
                        model=model, verbose=False)
        with pytest.raises(BadRequestError) as caught:
            client.inference("图里有什么？", images=[URL])
        assert caught.value.code == "model_cannot_see"
        text = str(caught.value)
        assert "看不到图片" in text and named in text and "glm-4v-flash" in text and "qwen-vl-max" in text
        assert fake.requests == []


def test_bad_parts_and_files_are_refused_clearly(tmp_path):
    client = Client(provider="glm", api_key="k", model="glm-4v-flash", verbose=False)
    with pytest.raises(BadRequestError, match="https://"):
        client.inference("看", images=["ftp://example.com/a.png"])
    with pytest.raises(BadRequestError, match="找不到图片文件"):
        client.inference("看", images=[str(tmp_path / "none.png")])
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(BadRequestError, match="不是图片"):
        client.inference("看", images=[str(tmp_path / "notes.txt")])
    with pytest.raises(BadRequestError, match="仅用户消息"):
        client.inference([{"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": URL}}]},
                          {"role": "user", "content": "?"}])
    with pytest.raises(BadRequestError, match="images"):
        client.inference([{"role": "user", "content": "?"}], images=[URL])


def test_embed_gives_vectors_in_order_with_usage_at_openai_compatible_services():
    texts = ["光合作用在叶绿体里进行", "地球绕着太阳转", "植物的叶子里有叶绿体"]
    with FakeOpenAIServer("glm") as fake:
        client = Client(provider="glm", base_url=fake.base_url, api_key="sk-test", verbose=False)
        vectors = client.embed(texts)
        assert len(vectors) == 3 and all(len(v) == 64 for v in vectors)
        assert fake.requests[-1]["json"] == {"model": "embedding-3", "input": texts}
        assert client.last_usage.prompt_tokens == sum(len(t) for t in texts)
        assert cosine(vectors[0], vectors[2]) > cosine(vectors[0], vectors[1])
        assert asyncio.run(client.aembed(texts)) == vectors
    with FakeOpenAIServer("openai") as fake:
        generic = Client(base_url=fake.base_url, api_key="sk-test", model="gpt-4o-mini", verbose=False)
        assert len(generic.embed("一段话")) == 1
        assert fake.requests[-1]["json"]["model"] == "text-embedding-3-small"


def test_embed_at_dashscope_native_goes_in_batches_of_ten():
    texts = [f"第 {i} 段" for i in range(23)]
    with FakeDashScopeServer() as fake:
        client = Client(provider="qwen", base_url=fake.base_url, api_key="sk-test", verbose=False)
        vectors = client.embed(texts, model="text-embedding-v3")
        sent = [r["json"] for r in fake.requests]
        assert [len(b["input"]["texts"]) for b in sent] == [10, 10, 3]
        assert all(b["model"] == "text-embedding-v3" for b in sent)
        assert fake.requests[0]["path"].endswith("/services/embeddings/text-embedding/text-embedding")
        assert len(vectors) == 23 and vectors[22] == client.embed("第 22 段", model="text-embedding-v3")[0]
        assert client.last_usage.total_tokens == len("第 22 段")
        assert asyncio.run(client.aembed(texts[:3])) == vectors[:3]


def test_embed_where_there_is_no_embedding_model_says_where_there_is():
    for provider in ("deepseek", "moonshot", "ernie"):
        client = Client(provider=provider, api_key="k", secret_key="s", verbose=False)
        with pytest.raises(BadRequestError, match="text-embedding-v4"):
            client.embed(["你好"])
    with pytest.raises(BadRequestError, match="非空"):
        Client(provider="glm", api_key="k", verbose=False).embed([])


def test_embed_errors_keep_their_class_and_never_show_the_key():
    with FakeOpenAIServer("glm", api_key="sk-right") as fake:
        client = Client(provider="glm", base_url=fake.base_url, api_key="sk-wrong-SECRET", verbose=False)
        from xedullm import AuthenticationError

        with pytest.raises(AuthenticationError) as caught:
            client.embed(["你好"])
        assert "sk-wrong-SECRET" not in str(caught.value)


def test_an_old_xedullm_classroom_server_refuses_pictures_and_embeddings_clearly():
    # Its queue takes one text; nothing of a picture may be folded into it silently.
    from xedullm.protocols.gradio import GradioAdapter, GradioApp
    from xedullm.types import ChatRequest, Connection

    adapter = GradioAdapter(None)
    app = GradioApp("http://192.168.1.23:7860", "", 0, ["message", "state"], "deepseek-chat", "4.44.1")
    parts = [{"type": "text", "text": "图里有什么？"}, {"type": "image_url", "image_url": {"url": URL}}]
    with pytest.raises(BadRequestError, match="只收文字") as caught:
        adapter.queue_call(app, ChatRequest(model="x", messages=[{"role": "user", "content": parts}]))
    assert "qwen-vl-max" in str(caught.value) and caught.value.code == "model_cannot_see"
    with pytest.raises(BadRequestError, match="新版 xedullm serve"):
        adapter.embeddings_request(["你好"], "x", Connection(app.root))
    assert adapter.queue_call(app, ChatRequest(model="x", messages=[{"role": "user", "content": "你好"}])).message == "你好"
