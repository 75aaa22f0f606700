"""Fallbacks across providers, against fake providers on 127.0.0.1: who answers when the primary
is down, busy or out of balance; never a second provider once text was shown; the breaker."""
from __future__ import annotations

import asyncio
import socket

import pytest

from xedullm import (APIConnectionError, BadRequestError, Client, ConfigurationError, QuotaExceededError,
                     ServerError)
from xedullm.fallback import Breaker, parse_spec
from xedullm.testing import FakeOpenAIServer, Fault

KEY = "sk-test-fallback-0001"
QUESTION = "天为什么是蓝的"
ANSWER = "你好！你刚才说：" + QUESTION


@pytest.fixture(scope="module")
def fakes():
    with FakeOpenAIServer(flavor="deepseek", api_key=KEY) as primary, \
            FakeOpenAIServer(flavor="moonshot", api_key=KEY, models=["moonshot-v1-8k", "kimi-latest"]) as backup:
        yield primary, backup


@pytest.fixture
def pair(fakes):
    primary, backup = fakes
    for fake in fakes:
        fake.reset()
    yield primary, backup
    for fake in fakes:
        fake.faults.clear()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clients(primary_url, backup, **options):
    backup_client = Client(provider="moonshot", base_url=backup.base_url, api_key=KEY, model="kimi-latest",
                           max_retries=0, verbose=False)
    return Client(provider="deepseek", base_url=primary_url, api_key=KEY, max_retries=0, timeout=5,
                  verbose=False, fallback=[backup_client], **options)


FIXABLE = {
    "down": None,
    "503": Fault.status(503),
    "429": Fault.rate_limited(retry_after=0),
    "quota": Fault.quota(),
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("trouble", list(FIXABLE))
def test_the_fallback_answers_when_the_primary_cannot(pair, trouble, stream):
    primary, backup = pair
    url = f"http://127.0.0.1:{_closed_port()}/v1" if trouble == "down" else primary.base_url
    if FIXABLE[trouble] is not None:
        primary.faults.append(FIXABLE[trouble])
    client = clients(url, backup)
    if stream:
        chunks = list(client.chat_stream(QUESTION))
        text = "".join(c.text for c in chunks)
        assert {c.provider for c in chunks} == {"moonshot"}
    else:
        result = client.chat(QUESTION)
        text = result.text
        assert result.provider == "moonshot"
    assert text == ANSWER and client.last_provider == "moonshot"
    sent = backup.chat_requests[-1]["json"]
    assert sent["model"] == "kimi-latest"  # the fallback's own model, not the primary's
    assert len(backup.chat_requests) == 1


def test_the_primary_answers_when_it_can_and_says_so(pair):
    primary, backup = pair
    client = clients(primary.base_url, backup)
    assert client.inference(QUESTION) == ANSWER
    assert client.last_provider == "deepseek" and backup.chat_requests == []


def test_no_second_provider_once_text_was_streamed(pair):
    primary, backup = pair
    primary.faults.append(Fault.disconnect_after(2))
    client = clients(primary.base_url, backup)
    pieces = []
    with pytest.raises(APIConnectionError):
        for piece in client.inference(QUESTION, stream=True):
            pieces.append(piece)
    assert pieces and ANSWER.startswith("".join(pieces)) and backup.chat_requests == []


def test_errors_a_fallback_cannot_fix_are_raised_as_they_are(pair):
    primary, backup = pair
    primary.faults.append(Fault.status(400))
    client = clients(primary.base_url, backup)
    with pytest.raises(BadRequestError):
        client.inference(QUESTION)
    assert backup.chat_requests == []


def test_when_every_provider_fails_the_last_error_is_raised(pair):
    primary, backup = pair
    primary.faults.append(Fault.status(503))
    backup.faults.append(Fault.quota())
    with pytest.raises(QuotaExceededError):
        clients(primary.base_url, backup).inference(QUESTION)


def test_async_calls_fall_back_too(pair):
    primary, backup = pair
    primary.faults.extend([Fault.status(502), Fault.status(502)])
    client = clients(primary.base_url, backup)

    async def ask():
        whole = await client.ainference(QUESTION)
        pieces = [p async for p in await client.ainference(QUESTION, stream=True)]
        await client.aclose()
        return whole, "".join(pieces)

    assert asyncio.run(ask()) == (ANSWER, ANSWER)
    assert len(backup.chat_requests) == 2 and client.last_provider == "moonshot"


def test_the_breaker_skips_a_failing_primary_then_probes_it(pair):
    primary, backup = pair
    now = [0.0]
    client = clients(primary.base_url, backup, breaker_failures=2, breaker_cooldown=30)
    client._breaker = Breaker(2, 30, clock=lambda: now[0])  # the same breaker, on a clock we move
    primary.faults.extend([Fault.status(503), Fault.status(503)])
    for _ in range(2):
        assert client.inference(QUESTION) == ANSWER
    assert len(primary.chat_requests) == 2
    # Open: the primary is not even asked.
    assert client.inference(QUESTION) == ANSWER and len(primary.chat_requests) == 2
    now[0] += 31   # half-open: one probe; it succeeds and closes the breaker
    assert client.inference(QUESTION) == ANSWER and client.last_provider == "deepseek"
    assert len(primary.chat_requests) == 3
    assert client.inference(QUESTION) == ANSWER and len(primary.chat_requests) == 4


def test_a_failed_probe_opens_the_breaker_again():
    now = [0.0]
    breaker = Breaker(1, 10, clock=lambda: now[0])
    breaker.failed()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 10
    assert breaker.allow() and not breaker.allow()  # one probe at a time
    breaker.failed()
    assert breaker.state == "open"
    now[0] = 20
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.state == "closed" and breaker.allow()


def test_fallbacks_by_name_and_their_errors(monkeypatch):
    assert parse_spec("qwen") == ("qwen", None, None)
    assert parse_spec("openrouter:mistralai/mistral-7b-instruct:free") == \
        ("openrouter", "mistralai/mistral-7b-instruct:free", None)
    assert parse_spec("deepseek:deepseek-chat@http://127.0.0.1:9/v1") == ("deepseek", "deepseek-chat",
                                                                          "http://127.0.0.1:9/v1")
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-dashscope-1")
    client = Client(provider="deepseek", api_key=KEY, verbose=False, fallback=["通义千问:qwen-turbo", "local"])
    assert [f.label for f in client.fallbacks] == ["qwen", "local"]
    assert client.fallbacks[0].model == "qwen-turbo"
    with pytest.raises(ConfigurationError):
        Client(provider="deepseek", api_key=KEY, verbose=False, fallback=[""])


def test_a_server_error_is_a_fallback_error_but_not_after_text(pair):
    primary, backup = pair
    primary.faults.append(Fault.error_frame(after=1, code="server_error"))
    client = clients(primary.base_url, backup)
    with pytest.raises(ServerError):
        list(client.inference(QUESTION, stream=True))
    assert backup.chat_requests == []


@pytest.mark.local_model
def test_the_local_model_is_the_last_resort_offline():
    client = Client(provider="deepseek", base_url=f"http://127.0.0.1:{_closed_port()}/v1", api_key=KEY,
                    max_retries=0, timeout=5, verbose=False, fallback=["local"])
    try:
        answer = client.inference("Say hello.", max_tokens=12)
    finally:
        client.close()
        client.fallbacks[0].close()
    assert answer.strip() and client.last_provider == "local"
