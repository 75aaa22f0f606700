"""The local provider: a real GGUF model (SmolLM2-135M-Instruct) generating in-process.

Deterministic settings (temperature 0, fixed seed) make answers reproducible, so the tests
compare answers with each other rather than with text written here.
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest

from xedullm import BadRequestError, Client, ConfigurationError
from xedullm.engines.local import (DEFAULT_MODEL, LocalEngine, loaded_model, make_engine,
                                     resolve_model_path)
from xedullm.types import ChatRequest

QUESTION = "What is the capital of France?"
LONG_ANSWER = "Write a long story about a brave little dragon who learns to fly."


def request(content: str = QUESTION, **options) -> ChatRequest:
    options.setdefault("temperature", 0)
    options.setdefault("extra", {"seed": 42})
    return ChatRequest(model=DEFAULT_MODEL, messages=[{"role": "user", "content": content}],
                       **options)


@pytest.fixture(scope="module")
def engine() -> LocalEngine:
    return make_engine(None)


def tokens_generated() -> int:
    return loaded_model(None).tokens_generated


@pytest.mark.local_model
def test_deterministic_answer_with_usage(engine):
    first = engine.chat(request())
    second = engine.chat(request())
    assert first.text.strip()
    assert first.text == second.text
    assert first.finish_reason in ("stop", "length")
    usage = first.usage
    assert usage.prompt_tokens > 5 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert second.usage == usage
    assert first.model == DEFAULT_MODEL


@pytest.mark.local_model
def test_stream_pieces_join_to_the_same_answer(engine):
    whole = engine.chat(request())
    chunks = list(engine.stream(request(stream=True)))
    texts = [c.text for c in chunks if c.text]
    assert len(texts) > 3                          # really streamed, not one block
    assert "".join(texts) == whole.text
    assert chunks[-1].usage == whole.usage and chunks[-1].finish_reason == whole.finish_reason


@pytest.mark.local_model
def test_usage_counts_the_answer_tokens(engine):
    result = engine.chat(request())
    model = loaded_model(None)
    tokens, _, _ = model.count_prompt([{"role": "user", "content": QUESTION}])
    assert result.usage.prompt_tokens == len(tokens)
    # Re-tokenizing the answer gives (about) the tokens that were generated.
    answer_tokens = model.tokenize(result.text)
    assert abs(result.usage.completion_tokens - len(answer_tokens)) <= 2


@pytest.mark.local_model
def test_max_tokens_limits_the_answer(engine):
    result = engine.chat(request(LONG_ANSWER, max_tokens=8))
    assert result.finish_reason == "length"
    assert result.usage.completion_tokens == 8


@pytest.mark.local_model
def test_closing_a_stream_stops_generation(engine):
    full = engine.chat(request(LONG_ANSWER, max_tokens=300))
    # Left alone it writes to the limit; stopped after 3 pieces it must stop far earlier (the
    # bound leaves room for the worker running a few tokens ahead on a busy machine).
    assert full.finish_reason == "length" and full.usage.completion_tokens == 300

    before = tokens_generated()
    stream = engine.stream(request(LONG_ANSWER, max_tokens=300, stream=True))
    received = [next(stream).text for _ in range(3)]
    stream.close()                                  # returns once generation has stopped
    generated = tokens_generated() - before
    assert "".join(received) == full.text[:len("".join(received))]
    assert 3 <= generated < 100
    assert engine.chat(request()).text              # the model is free again


@pytest.mark.local_model
def test_closing_an_async_stream_stops_generation(engine):
    async def three_pieces_then_close():
        stream = engine.astream(request(LONG_ANSWER, max_tokens=300, stream=True))
        pieces = [(await stream.__anext__()).text for _ in range(3)]
        await stream.aclose()
        return pieces

    before = tokens_generated()
    pieces = asyncio.run(three_pieces_then_close())
    assert len(pieces) == 3 and all(pieces)
    assert 3 <= tokens_generated() - before < 100


@pytest.mark.local_model
def test_cancelling_the_task_stops_generation(engine):
    async def cancel_after_three():
        got = []
        reading = asyncio.Event()

        async def read():
            async for chunk in engine.astream(request(LONG_ANSWER, max_tokens=300, stream=True)):
                got.append(chunk.text)
                if len(got) == 3:
                    reading.set()

        task = asyncio.ensure_future(read())
        await reading.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return got

    before = tokens_generated()
    got = asyncio.run(cancel_after_three())
    assert len(got) >= 3
    assert 3 <= tokens_generated() - before < 100


@pytest.mark.local_model
def test_async_answers_match_sync(engine):
    sync = engine.chat(request())

    async def both():
        result = await engine.achat(request())
        pieces = [c.text async for c in engine.astream(request(stream=True))]
        return result, "".join(pieces), await engine.amodels()

    result, streamed, models = asyncio.run(both())
    assert result.text == streamed == sync.text
    assert result.usage == sync.usage
    assert DEFAULT_MODEL in models


@pytest.mark.local_model
def test_two_threads_at_once_both_complete(engine):
    questions = [QUESTION, "Name three colours of the rainbow."]
    expected = [engine.chat(request(q)).text for q in questions]
    results = [None, None]
    start = threading.Barrier(2)

    def ask(i):
        start.wait()
        results[i] = engine.stream(request(questions[i], stream=True))
        results[i] = "".join(c.text for c in results[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected


@pytest.mark.local_model
def test_too_long_prompt_is_a_clear_bad_request(engine):
    with pytest.raises(BadRequestError) as caught:
        engine.chat(request("hello " * 3000))
    message = str(caught.value)
    assert "输入太长" in message and "too long" in message and "2048" in message
    assert caught.value.code == "context_length_exceeded"
    assert engine.chat(request()).text                # nothing left broken


@pytest.mark.local_model
def test_client_runs_the_local_model_by_default():
    client = Client(verbose=False)                     # no provider, no key: the local model
    assert client.provider.id == "local" and client.model == DEFAULT_MODEL
    answer = client.inference(QUESTION, temperature=0, seed=42)
    assert answer == make_engine(None).chat(request()).text
    assert client.last_usage.completion_tokens > 0
    pieces = list(client.inference(QUESTION, temperature=0, seed=42, stream=True))
    assert "".join(pieces) == answer
    assert DEFAULT_MODEL in client.support_model()


@pytest.mark.local_model
def test_any_gguf_file_by_path():
    path = str(resolve_model_path(None))
    client = Client(provider="local", model=path, verbose=False)
    assert client.inference(QUESTION, temperature=0, seed=42)
    assert path in client.support_model()


def test_missing_model_file_says_what_to_do(tmp_path):
    missing = tmp_path / "nope.gguf"
    client = Client(provider="local", model=str(missing), verbose=False)
    with pytest.raises(ConfigurationError) as caught:
        client.inference("hi")
    assert str(missing) in str(caught.value) and ".gguf" in str(caught.value)
    assert "找不到" in str(caught.value)


def test_a_file_that_is_not_gguf_is_a_configuration_error(tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a model at all" * 100)
    with pytest.raises(ConfigurationError) as caught:
        Client(provider="local", model=str(bogus), verbose=False).inference("hi")
    assert "GGUF" in str(caught.value)


def test_missing_llama_cpp_says_what_to_install():
    # A fresh interpreter where llama_cpp cannot be imported, as without the 'local' extra.
    code = (
        "import sys; sys.modules['llama_cpp'] = None\n"
        "from xedullm import Client, ConfigurationError\n"
        "try:\n"
        "    Client(verbose=False).inference('hi')\n"
        "except ConfigurationError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 'pip install "xedullm[local]"' in out and "llama-cpp-python" in out


def test_import_xedullm_stays_light():
    code = "import sys, xedullm; from xedullm import Client; Client(verbose=False); print('llama_cpp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.local_model
def test_a_waiting_request_can_be_cancelled_while_others_generate(engine):
    loaded = loaded_model(None)

    async def scenario():
        # Occupy every context with a long answer (SmolLM2 writes this story to the limit).
        holders = [engine.astream(request(LONG_ANSWER, max_tokens=1500, stream=True))
                   for _ in range(loaded.max_contexts)]
        for holder in holders:
            await holder.__anext__()
        assert loaded.busy == loaded.max_contexts

        queued = asyncio.ensure_future(engine.achat(request()))
        while loaded.waiting == 0:
            await asyncio.sleep(0.01)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        # It left the queue without waiting for a context: the long answers are still running.
        still_busy, still_waiting = loaded.busy, loaded.waiting
        for holder in holders:
            await holder.aclose()
        return still_busy, still_waiting

    before = tokens_generated()
    busy, waiting = asyncio.run(scenario())
    assert busy == loaded.max_contexts and waiting == 0
    assert loaded.busy == 0
    assert tokens_generated() - before < 1500          # the holders were stopped, not finished
