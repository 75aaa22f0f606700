"""A streamed answer is complete only when the provider says so ([DONE] or a finish reason).

The provider here ends its SSE body by closing the connection (no chunked encoding, no
Content-Length): when it stops early the body still ends cleanly, and before this check the
Client returned half an answer as a whole one and the server told the student "stop".
"""
from __future__ import annotations

import asyncio
import contextlib

import openai
import pytest

from xedullm import APIConnectionError, Client, StreamInterruptedError
from xedullm.server.app import ServerSettings, create_app
from xedullm.testing import ServerThread
from xedullm.testing.close_delimited import CloseDelimitedServer

PIECES = ["光合作用", "是植物", "利用阳光"]


def client_for(fake: CloseDelimitedServer) -> Client:
    return Client(base_url=fake.base_url, api_key="sk-test-cut", model="fake-model", max_retries=0,
                  verbose=False)


def test_a_cut_stream_raises_after_what_arrived_and_keeps_it():
    with CloseDelimitedServer(PIECES, complete=False) as fake:
        client = client_for(fake)
        seen = []
        with pytest.raises(StreamInterruptedError) as caught:
            for piece in client.inference("什么是光合作用？", stream=True):
                seen.append(piece)
    assert "".join(seen) == "".join(PIECES)                 # the student saw what arrived ...
    assert caught.value.partial_text == "".join(PIECES)     # ... and the program can keep it
    assert isinstance(caught.value, APIConnectionError)
    message = str(caught.value)
    assert "中途断开" in message and "cut off" in message and "ask again" in message


def test_a_cut_async_stream_raises_too():
    async def scenario(fake):
        client = client_for(fake)
        seen = []
        with pytest.raises(StreamInterruptedError) as caught:
            async for chunk in client.achat_stream("什么是光合作用？"):
                seen.append(chunk.text)
        return "".join(seen), caught.value.partial_text

    with CloseDelimitedServer(PIECES, complete=False) as fake:
        seen, partial = asyncio.run(scenario(fake))
    assert seen == partial == "".join(PIECES)


def test_a_whole_stream_delimited_by_close_is_an_answer():
    with CloseDelimitedServer(PIECES, complete=True) as fake:
        client = client_for(fake)
        assert "".join(client.inference("什么是光合作用？", stream=True)) == "".join(PIECES)
        assert client.inference("什么是光合作用？") == "".join(PIECES)   # a close-delimited JSON body


@contextlib.contextmanager
def classroom(fake):
    app = create_app(client_for(fake), settings=ServerSettings())
    with ServerThread(app) as server:
        yield server.url


def test_the_openai_sdk_through_the_server_gets_an_error_not_stop():
    with CloseDelimitedServer(PIECES, complete=False) as fake, classroom(fake) as url:
        sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        texts, finishes = [], []
        with pytest.raises(openai.APIError) as caught:
            for chunk in sdk.chat.completions.create(model="fake-model", stream=True,
                                                     messages=[{"role": "user", "content": "什么是光合作用？"}]):
                for choice in chunk.choices:
                    texts.append(choice.delta.content or "")
                    finishes.append(choice.finish_reason)
        assert "".join(texts) == "".join(PIECES)        # what arrived reached the student
        assert "stop" not in finishes                    # never told it was complete
        assert "cut off" in str(caught.value)
    with CloseDelimitedServer(PIECES, complete=True) as fake, classroom(fake) as url:
        sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        chunks = list(sdk.chat.completions.create(model="fake-model", stream=True,
                                                  messages=[{"role": "user", "content": "什么是光合作用？"}]))
        assert chunks[-1].choices[0].finish_reason == "stop"


def test_the_old_client_through_the_server_hears_of_the_cut():
    with CloseDelimitedServer(PIECES, complete=False) as fake, classroom(fake) as url:
        student = Client(xedu_url=url, verbose=False)
        with pytest.raises(APIConnectionError) as caught:
            "".join(student.inference("什么是光合作用？", stream=True))
        assert "中途断开" in str(caught.value)
