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
# Why the primary did not answer, as the result says (the classroom ledger's error codes).
REASON = {"down": "upstream_unreachable", "503": "upstream_error", "429": "rate_limit_exceeded",
          "quota": "insufficient_quota"}


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
        assert {c.fallback_reason for c in chunks} == {REASON[trouble]}
    else:
        result = client.chat(QUESTION)
        text = result.text
        assert result.provider == "moonshot" and result.fallback_reason == REASON[trouble]
    assert text == ANSWER and client.last_provider == "moonshot"
    sent = backup.chat_requests[-1]["json"]
    assert sent["model"] == "kimi-latest"  # the fallback's own model, not the primary's
    assert len(backup.chat_requests) == 1


def test_the_primary_answers_when_it_can_and_says_so(pair):
    primary, backup = pair
    client = clients(primary.base_url, backup)
    assert client.inference(QUESTION) == ANSWER
    assert client.last_provider == "deepseek" and backup.chat_requests == []
    assert client.chat(QUESTION).fallback_reason is None
    assert {c.fallback_reason for c in client.chat_stream(QUESTION)} == {None}


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
    primary.faults.extend([Fault.status(503), Fault.quota()])
    for _ in range(2):
        assert client.inference(QUESTION) == ANSWER
    assert len(primary.chat_requests) == 2
    # Open: the primary is not even asked, and the answer says why it was not (its last failure).
    skipped = client.chat(QUESTION)
    assert skipped.text == ANSWER and len(primary.chat_requests) == 2
    assert skipped.fallback_reason == "insufficient_quota"
    now[0] += 31   # half-open: one probe; it succeeds and closes the breaker
    probe = client.chat(QUESTION)
    assert probe.text == ANSWER and probe.provider == "deepseek" and probe.fallback_reason is None
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


# -- replacing the fallbacks (what the classroom's admin setting does) ------------------------
def test_set_fallback_replaces_the_list_and_keeps_a_client_it_already_has(pair, monkeypatch):
    primary, backup = pair
    monkeypatch.setenv("MOONSHOT_API_KEY", KEY)
    client = Client(provider="deepseek", base_url=f"http://127.0.0.1:{_closed_port()}/v1", api_key=KEY,
                    max_retries=0, timeout=5, verbose=False)
    with pytest.raises(APIConnectionError):
        client.inference(QUESTION)              # no fallback yet
    spec = f"moonshot:kimi-latest@{backup.base_url}"
    client.set_fallback([spec])
    assert client.fallback_specs == [spec.rstrip("/")]
    result = client.chat(QUESTION)
    assert (result.text, result.provider, result.fallback_reason) == (ANSWER, "moonshot", "upstream_unreachable")
    assert backup.chat_requests[-1]["json"]["model"] == "kimi-latest"
    kept = client.fallbacks[0]
    client.set_fallback(client.fallback_specs + ["local"])   # the same spec keeps the same Client
    assert client.fallbacks[0] is kept and client.fallback_specs[1] == "local"
    client.set_fallback([])
    with pytest.raises(APIConnectionError):
        client.inference(QUESTION)
    assert len(backup.chat_requests) == 1


def test_fallbacks_given_again_after_none_start_with_the_primary_trusted(pair):
    primary, backup = pair
    now = [0.0]
    client = clients(primary.base_url, backup, breaker_failures=1, breaker_cooldown=30)
    client._breaker = Breaker(1, 30, clock=lambda: now[0])
    primary.faults.append(Fault.status(503))
    assert client.chat(QUESTION).provider == "moonshot"    # the circuit opens
    kept = client.fallbacks
    client.set_fallback([])
    assert client.chat(QUESTION).provider == "deepseek"    # nobody to skip to: the primary, recovered
    client.set_fallback(kept)
    # What the breaker knew is from before the primary recovered: it is asked, not skipped.
    assert client.chat(QUESTION).provider == "deepseek" and len(backup.chat_requests) == 1


def test_a_fallback_that_cannot_be_used_is_named_and_changes_nothing(monkeypatch):
    monkeypatch.delenv("MOONSHOT_API_KEY", raising=False)
    client = Client(provider="deepseek", api_key=KEY, verbose=False, fallback=["local"])
    for spec, words in (("nosuch:model-x", "nosuch"), ("moonshot", "xedullm key set moonshot")):
        with pytest.raises(ConfigurationError) as caught:
            client.set_fallback(["local", spec])
        message = str(caught.value)
        assert repr(spec) in message and words in message
        assert "备用服务商" in message and "fallback" in message
        assert client.fallback_specs == ["local"]


def test_a_client_written_as_a_spec_reads_back_as_the_same_client(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-dashscope-1")
    for spec in ("qwen", "qwen:qwen-turbo", "qwen@http://127.0.0.1:9/api/v1", "qwen:qwen-max@http://127.0.0.1:9/api/v1"):
        client = Client(provider="deepseek", api_key=KEY, verbose=False, fallback=[spec])
        assert client.fallback_specs == [spec]
    named = Client(provider="deepseek", api_key=KEY, verbose=False, fallback=["通义千问:qwen-max"])
    assert named.fallback_specs == ["qwen:qwen-max"]   # the provider's id, however it was named
