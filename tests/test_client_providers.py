"""The Client over real sockets against each wire protocol's fake server.

Every calling pattern of compat.md, usage normalisation per provider, ERNIE's token step,
and the core error/retry promises. The exhaustive fault matrix lives in test_faults.py.
"""
import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from xedullm import (APIConnectionError, AuthenticationError, Client, ModelNotFoundError,
                     QuotaExceededError, RateLimitError, ServerError, Usage)
from xedullm.testing import FakeDashScopeServer, FakeErnieServer, FakeOpenAIServer, Fault

KEY = "sk-test-client-0123456789abcdef"
AK, SK = "ak-test-0123456789", "sk-secret-0123456789"
OPENAI_FLAVORS = ["openai", "deepseek", "moonshot", "openrouter", "glm", "qwen"]
PROVIDER_OF_FLAVOR = {"openai": None, "deepseek": "deepseek", "moonshot": "moonshot",
                      "openrouter": "openrouter", "glm": "glm", "qwen": None}


@pytest.fixture(scope="module", params=OPENAI_FLAVORS)
def openai_fake(request):
    with FakeOpenAIServer(flavor=request.param, api_key=KEY) as fake:
        fake.flavor_name = request.param
        yield fake


@pytest.fixture(autouse=False)
def fresh(openai_fake):
    openai_fake.reset()
    return openai_fake


def client_for(fake, **kwargs):
    provider = PROVIDER_OF_FLAVOR[fake.flavor_name]
    if provider is None:
        return Client(base_url=fake.base_url, api_key=KEY, model=kwargs.pop("model", fake.models[0]),
                      verbose=False, **kwargs)
    return Client(provider=provider, base_url=fake.base_url, api_key=KEY, verbose=False, **kwargs)


def test_compat_patterns_openai_family(fresh):
    bot = client_for(fresh)
    answer = bot.inference("用“一二三四”写一首藏头五言诗")
    assert answer == "你好！你刚才说：用“一二三四”写一首藏头五言诗"
    pieces = list(bot.inference("你好", stream=True))
    assert len(pieces) > 1 and all(type(p) is str for p in pieces)
    assert "".join(pieces) == "你好！你刚才说：你好"
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
               {"role": "user", "content": "c"}]
    assert bot.inference(history, temperature=0.5, top_p=0.9).endswith("c")
    sent = fresh.chat_requests[-1]["json"]
    assert sent["messages"] == history
    if fresh.flavor_name == "glm":
        assert sent["top_p"] == 0.9
    else:
        assert (sent["temperature"], sent["top_p"]) == (0.5, 0.9)


def test_usage_is_normalised_for_every_placement(fresh):
    bot = client_for(fresh)
    bot.inference("hi")
    assert bot.last_usage == Usage(**fresh.usage_log[-1])
    list(bot.inference("hello there", stream=True))
    assert bot.last_usage is not None
    assert bot.last_usage == Usage(**fresh.usage_log[-1])


def test_set_system_goes_first(fresh):
    bot = client_for(fresh)
    bot.set_system("你是一位小学老师")
    bot.inference([{"role": "system", "content": "mine"}, {"role": "user", "content": "q"}])
    messages = fresh.chat_requests[-1]["json"]["messages"]
    assert messages[0] == {"role": "system", "content": "你是一位小学老师"}
    assert messages[1]["content"] == "mine"


def test_support_model_is_live_where_the_provider_lists_models(fresh):
    bot = client_for(fresh)
    models = bot.support_model()
    assert models and all(isinstance(m, str) for m in models)
    if bot.provider is not None and not bot.provider.has_models_endpoint:
        # GLM's /models is unconfirmed (protocols.md 6): the catalog list, no request.
        assert models == list(bot.provider.models) and fresh.requests == []
    else:
        assert fresh.requests[-1]["path"].endswith("/models")


def test_bad_key_raises_and_never_shows_a_key(fresh):
    wrong = "sk-wrong-key-9876543210fedcba"
    provider = PROVIDER_OF_FLAVOR[fresh.flavor_name]
    kwargs = {"provider": provider} if provider else {"model": fresh.models[0]}
    bot = Client(base_url=fresh.base_url, api_key=wrong, verbose=False, **kwargs)
    with pytest.raises(AuthenticationError) as info:
        bot.inference("hi")
    assert wrong not in str(info.value) and KEY not in str(info.value)
    with pytest.raises(AuthenticationError):
        list(bot.inference("hi", stream=True))


def test_quota_is_its_own_class_and_not_retried(fresh):
    fresh.faults.append(Fault.quota())
    with pytest.raises(QuotaExceededError):
        client_for(fresh).inference("hi")
    assert len(fresh.chat_requests) == 1


def test_unknown_model(fresh):
    provider = PROVIDER_OF_FLAVOR[fresh.flavor_name]
    kwargs = {"provider": provider} if provider else {}
    bot = Client(base_url=fresh.base_url, api_key=KEY, model="no-such-model", verbose=False, **kwargs)
    with pytest.raises(ModelNotFoundError):
        bot.inference("hi")


def test_rate_limit_retried_after_retry_after_then_succeeds(fresh):
    fresh.faults.append(Fault.rate_limited(retry_after=0.05))
    assert client_for(fresh).inference("hi").endswith("hi")
    assert len(fresh.chat_requests) == 2


def test_server_errors_exhaust_retries(fresh):
    for _ in range(3):
        fresh.faults.append(Fault.status(503))
    # Moonshot says 503 engine_overloaded_error: a rate limit; both are retried.
    with pytest.raises((ServerError, RateLimitError)):
        client_for(fresh, max_retries=1).inference("hi")
    assert len(fresh.chat_requests) == 2


def test_closing_a_stream_closes_the_connection(openai_fake):
    # A fake of its own: the module's shared one may still hold idle connections of other
    # tests' clients (they are closed when those are collected), which this test must not count.
    with FakeOpenAIServer(flavor=openai_fake.flavor_name, api_key=KEY) as own:
        own.flavor_name = openai_fake.flavor_name
        bot = client_for(own)
        stream = bot.inference("a fairly long question for many pieces", stream=True)
        next(stream)
        assert own.active_connections == 1
        stream.close()
        bot.close()
        assert own.wait_for(lambda: own.active_streams == 0 and own.active_connections == 0)


def test_streams_reuse_one_connection(fresh):
    # Reading the body to its end after [DONE] keeps the connection in the pool: against a
    # real provider, a new connection per answer is a new TLS handshake.
    bot = client_for(fresh)
    for question in ("one", "two", "three"):
        assert "".join(bot.inference(question, stream=True)).endswith(question)
    assert len({r["client"] for r in fresh.chat_requests}) == 1


def test_async_streams_reuse_one_connection(fresh):
    bot = client_for(fresh)

    async def main():
        for question in ("one", "two"):
            assert "".join([p async for p in await bot.ainference(question, stream=True)]).endswith(question)

    asyncio.run(main())
    assert len({r["client"] for r in fresh.chat_requests}) == 1


def test_async_context_manager_closes_connections(fresh):
    async def main():
        async with client_for(fresh) as bot:
            assert (await bot.ainference("hi")).endswith("hi")

    asyncio.run(main())
    assert fresh.wait_for(lambda: fresh.active_connections == 0)


def test_async_inference(fresh):
    bot = client_for(fresh)

    async def main():
        text = await bot.ainference("异步")
        pieces = [p async for p in await bot.ainference("异步流", stream=True)]
        both = await asyncio.gather(bot.ainference("x1"), bot.ainference("x2"))
        return text, pieces, both

    text, pieces, both = asyncio.run(main())
    assert text.endswith("异步") and "".join(pieces).endswith("异步流")
    assert [b[-2:] for b in both] == ["x1", "x2"]


# -- DashScope native (qwen) -----------------------------------------------------------
@pytest.fixture(scope="module")
def dashscope():
    with FakeDashScopeServer(api_key=KEY) as fake:
        yield fake


def test_qwen_native_protocol(dashscope):
    dashscope.reset()
    bot = Client(provider="qwen", base_url=dashscope.base_url, api_key=KEY, model="qwen-1.8b-chat", verbose=False)
    assert bot.inference("你好") == "你好！你刚才说：你好"
    assert bot.last_usage == Usage(**dashscope.usage_log[-1])
    pieces = list(bot.inference("流式", stream=True))
    assert "".join(pieces) == "你好！你刚才说：流式" and len(pieces) > 1
    request = dashscope.chat_requests[-1]
    assert request["headers"]["x-dashscope-sse"] == "enable"
    assert request["json"]["parameters"]["incremental_output"] is True
    assert bot.last_usage == Usage(**dashscope.usage_log[-1])
    assert bot.support_model()  # through the compatible-mode list, as XEduLLM did


def test_qwen_arrearage_on_400_is_quota(dashscope):
    dashscope.reset()
    dashscope.faults.append(Fault.quota())
    bot = Client(provider="qwen", base_url=dashscope.base_url, api_key=KEY, verbose=False)
    with pytest.raises(QuotaExceededError):
        bot.inference("hi")


def test_qwen_error_frame_after_text_is_raised_after_the_text(dashscope):
    dashscope.reset()
    dashscope.faults.append(Fault.error_frame(after=2))
    bot = Client(provider="qwen", base_url=dashscope.base_url, api_key=KEY, verbose=False)
    got = []
    with pytest.raises(Exception) as info:
        for piece in bot.inference("a longer question here", stream=True):
            got.append(piece)
    assert got and len(dashscope.chat_requests) == 1  # text was yielded: never retried
    assert "provider: qwen" in str(info.value)


# -- ERNIE v1 --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ernie():
    with FakeErnieServer(api_key=AK, secret_key=SK) as fake:
        yield fake


def test_ernie_token_is_lazy_cached_and_refreshed(ernie):
    from xedullm.engines import http as transport

    transport._token_cache.clear()
    ernie.reset()
    before = ernie.token_requests
    bot = Client(provider="ernie", base_url=ernie.base_url, api_key=AK, secret_key=SK, verbose=False)
    assert ernie.token_requests == before  # nothing on construction
    bot.set_system("简洁")
    assert bot.inference([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                          {"role": "user", "content": "c"}]).endswith("c")
    assert "".join(bot.inference("流", stream=True)).endswith("流")
    assert ernie.token_requests == before + 1
    sent = ernie.chat_requests[0]
    assert sent["json"]["system"] == "简洁" and sent["path"].endswith("/chat/ernie_speed")
    ernie.expire_tokens()
    assert bot.inference("again").endswith("again")   # 111 -> refresh once -> replay
    assert ernie.token_requests == before + 2
    assert bot.last_usage == Usage(**ernie.usage_log[-1])


CALLS = 20


def ernie_bot(ernie):
    return Client(provider="ernie", base_url=ernie.base_url, api_key=AK, secret_key=SK, verbose=False)


async def ask_together(bot, n=CALLS):
    """``n`` ainference calls at once, half of them streamed; their answers in order."""
    async def one(i):
        if i % 2:
            return "".join([p async for p in await bot.ainference(f"q{i}", stream=True)])
        return await bot.ainference(f"q{i}")

    return await asyncio.gather(*(one(i) for i in range(n)))


def ask_from_threads(ernie, n=CALLS):
    """``n`` threads, each with its own Client, call inference at the same moment."""
    start = threading.Barrier(n)

    def one(i):
        with ernie_bot(ernie) as bot:
            start.wait()
            return bot.inference(f"q{i}")

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def fresh_ernie(ernie):
    from xedullm.engines import http as transport

    transport._token_cache.clear()
    ernie.reset()


def test_ernie_concurrent_async_calls_fetch_one_token(ernie):
    fresh_ernie(ernie)
    bot = ernie_bot(ernie)
    answers = asyncio.run(ask_together(bot))
    assert all(a.endswith(f"q{i}") for i, a in enumerate(answers))
    assert ernie.token_requests == 1

    # Every call sent the token that then expired: each gets 111 and is replayed once, and
    # all of them together make one refresh.
    ernie.expire_tokens()
    answers = asyncio.run(ask_together(bot))
    assert all(a.endswith(f"q{i}") for i, a in enumerate(answers))
    assert ernie.token_requests == 2
    assert len(ernie.chat_requests) == CALLS + 2 * CALLS


def test_ernie_token_locks_belong_to_each_event_loop(ernie):
    # asyncio.run makes a new loop each time; a lock from the first loop would fail in the second.
    from xedullm.engines import http as transport

    fresh_ernie(ernie)
    bot = ernie_bot(ernie)
    for round_ in (1, 2):
        transport._token_cache.clear()
        assert len(asyncio.run(ask_together(bot))) == CALLS
        assert ernie.token_requests == round_


def test_ernie_concurrent_threads_fetch_one_token(ernie):
    fresh_ernie(ernie)
    answers = ask_from_threads(ernie)
    assert all(a.endswith(f"q{i}") for i, a in enumerate(answers))
    assert ernie.token_requests == 1

    ernie.expire_tokens()
    answers = ask_from_threads(ernie)
    assert all(a.endswith(f"q{i}") for i, a in enumerate(answers))
    assert ernie.token_requests == 2


@pytest.mark.parametrize("model,endpoint", [("ERNIE_speed_128k", "ernie-speed-128k"),
                                            ("ERNIE_lite_8k_0308", "ernie-lite-8k"),
                                            ("ERNIE_lite_8k_0922", "eb-instant")])
def test_ernie_old_model_names(ernie, model, endpoint):
    bot = Client(provider="ernie", base_url=ernie.base_url, api_key=AK, secret_key=SK, model=model, verbose=False)
    bot.inference("hi")
    assert ernie.chat_requests[-1]["path"].endswith("/chat/" + endpoint)


def test_ernie_wrong_secret_is_auth_error_without_keys(ernie):
    from xedullm.engines import http as transport

    transport._token_cache.clear()
    bot = Client(provider="ernie", base_url=ernie.base_url, api_key=AK, secret_key="sk-wrong-000000000",
                 verbose=False)
    with pytest.raises(AuthenticationError) as info:
        bot.inference("hi")
    assert AK not in str(info.value) and "sk-wrong-000000000" not in str(info.value)


def test_ernie_quota_code_17(ernie):
    ernie.faults.append(Fault.quota())
    bot = Client(provider="ernie", base_url=ernie.base_url, api_key=AK, secret_key=SK, verbose=False)
    with pytest.raises(QuotaExceededError):
        bot.inference("hi")


def test_unreachable_server_is_connection_error():
    bot = Client(provider="deepseek", base_url="http://127.0.0.1:9", api_key=KEY, max_retries=0, verbose=False)
    with pytest.raises(APIConnectionError):
        bot.inference("hi")


def test_rate_limit_without_retries_is_raised():
    with FakeOpenAIServer(flavor="deepseek", api_key=KEY) as fake:
        fake.faults.append(Fault.rate_limited(retry_after=0.01))
        bot = Client(provider="deepseek", base_url=fake.base_url, api_key=KEY, max_retries=0, verbose=False)
        with pytest.raises(RateLimitError):
            bot.inference("hi")
