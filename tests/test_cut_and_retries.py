"""A stream is whole only when the provider says so; a student's request costs a bounded
number of provider attempts (issue 29, parts 1 and 2)."""
from __future__ import annotations

import asyncio
import threading

import httpx
import openai
import pytest

import xedullm
from xedullm import Client, StreamInterruptedError
from xedullm.server.classroom.ledger import LedgerEntry
from xedullm.testing import FakeOpenAIServer, Fault
from xedullm.testing.close_delimited_front import CloseDelimitedFront

KEY = "sk-test-cut"


class RecordingLedger:
    def __init__(self):
        self.entries = []

    async def record(self, entry: LedgerEntry) -> None:
        self.entries.append(entry)


@pytest.fixture
def cut_provider():
    """A provider whose SSE bodies end by closing the connection (no chunked framing)."""
    with FakeOpenAIServer(flavor="deepseek", api_key=KEY) as fake, CloseDelimitedFront(fake) as front:
        yield fake, front


def test_a_whole_answer_delimited_by_close_is_complete(cut_provider):
    fake, front = cut_provider
    client = Client(provider="deepseek", base_url=front.base_url, api_key=KEY, max_retries=0, verbose=False)
    assert "".join(client.inference("你好", stream=True)) == "你好！你刚才说：你好"


def test_a_close_before_the_end_raises_after_the_text_that_arrived(cut_provider):
    fake, front = cut_provider
    fake.faults.append(Fault.disconnect_after(2))
    client = Client(provider="deepseek", base_url=front.base_url, api_key=KEY, max_retries=0, verbose=False)
    pieces = []
    with pytest.raises(StreamInterruptedError) as info:
        for piece in client.inference("你好", stream=True):
            pieces.append(piece)
    assert pieces and info.value.partial_text == "".join(pieces)
    assert isinstance(info.value, xedullm.APIConnectionError)
    assert "切断" in str(info.value) and "cut off" in str(info.value)


def test_async_stream_cut_raises_too(cut_provider):
    fake, front = cut_provider
    fake.faults.append(Fault.disconnect_after(2))
    client = Client(provider="deepseek", base_url=front.base_url, api_key=KEY, max_retries=0, verbose=False)
    pieces = []

    async def read():
        async for piece in await client.ainference("你好", stream=True):
            pieces.append(piece)
        await client.aclose()

    with pytest.raises(StreamInterruptedError) as info:
        asyncio.run(read())
    assert pieces and info.value.partial_text == "".join(pieces)


def test_a_cut_reaches_the_openai_sdk_as_an_error_and_the_ledger_as_cut(cut_provider, classroom_server):
    fake, front = cut_provider
    ledger = RecordingLedger()
    room = classroom_server(api_key=KEY, base_url=front.base_url, ledger=ledger)
    fake.faults.append(Fault.disconnect_after(2))
    sdk = openai.OpenAI(base_url=f"{room.url}/v1", api_key="x", max_retries=0)
    seen = []
    with pytest.raises(openai.APIError, match="cut off"):
        for chunk in sdk.chat.completions.create(model="m", stream=True,
                                                 messages=[{"role": "user", "content": "你好"}]):
            seen.append(chunk)
    assert seen and all(c.choices[0].finish_reason is None for c in seen if c.choices)
    assert fake.wait_for(lambda: len(ledger.entries) == 1, 10)
    entry = ledger.entries[0]
    assert entry.outcome == "cut" and entry.status == 502
    assert entry.answer == "".join(c.choices[0].delta.content or "" for c in seen if c.choices)


def test_our_client_through_the_server_raises_the_same_error(cut_provider, classroom_server):
    fake, front = cut_provider
    room = classroom_server(api_key=KEY, base_url=front.base_url)
    fake.faults.append(Fault.disconnect_after(2))
    student = Client(xedu_url=room.url, verbose=False, max_retries=0)
    pieces = []
    with pytest.raises(StreamInterruptedError) as info:
        for piece in student.inference("你好", stream=True):
            pieces.append(piece)
    assert pieces and info.value.partial_text == "".join(pieces)


# -- bounded retries -------------------------------------------------------------------------
def test_an_always_429_provider_sees_at_most_four_requests_from_one_sdk_call(classroom_server, teacher_fake):
    from xedullm.server.app import ServerSettings, create_app
    from xedullm.server.runner import connection_protocol
    from xedullm.testing.server_thread import ServerThread
    from conftest import TEACHER_KEY

    # The teacher's Client as `xedullm serve` makes it: default retries (max_retries=2).
    teacher = Client(provider="deepseek", base_url=teacher_fake.base_url, api_key=TEACHER_KEY, verbose=False)
    teacher_fake.faults.extend([Fault.rate_limited(retry_after=0)] * 20)
    settings = ServerSettings()
    with ServerThread(create_app(teacher, settings=settings), http=connection_protocol(settings)) as server:
        sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x")   # the SDK's default max_retries=2
        with pytest.raises(openai.RateLimitError) as info:
            sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "你好"}])
    assert info.value.response.headers["x-should-retry"] == "false"
    assert len(teacher_fake.chat_requests) == 3 <= 4
    teacher.close()


def test_a_provider_429_without_retry_after_gets_none_but_the_class_limit_keeps_its(classroom_server):
    room = classroom_server()
    room.fake.faults.append(Fault.rate_limited(retry_after=None))
    reply = httpx.post(f"{room.url}/v1/chat/completions", timeout=10,
                       json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert reply.status_code == 429
    assert reply.headers["x-should-retry"] == "false" and "retry-after" not in reply.headers
    limited = classroom_server(max_concurrent=1, max_waiting=0)
    limited.fake.faults.append(Fault.stall(3))
    first = threading.Thread(target=httpx.post, args=(f"{limited.url}/v1/chat/completions",),
                             kwargs={"timeout": 10, "json": {"model": "m", "messages": [{"role": "user", "content": "x"}]}})
    first.start()
    assert limited.fake.wait_for(lambda: len(limited.fake.chat_requests) == 1, 10)
    busy = httpx.post(f"{limited.url}/v1/chat/completions", timeout=10,
                      json={"model": "m", "messages": [{"role": "user", "content": "y"}]})
    first.join()
    assert busy.status_code in (429, 503) and "retry-after" in busy.headers
    assert busy.headers.get("x-should-retry") != "false"
