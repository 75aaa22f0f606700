"""Pieces of a stream that reach us in one read are joined (engines/http.py, _StreamReader):
a caller that has fallen behind handles each read once. Served from a real socket that writes
a whole answer at once, so that one read holds every frame."""
from __future__ import annotations

import asyncio
import json
import socket
import threading
from typing import Iterator, List

import pytest

from xedullm import Client
from xedullm import errors as E


def _frame(delta=None, finish=None, usage=None) -> bytes:
    choices = [] if delta is None and finish is None else [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    body = {"id": "c1", "object": "chat.completion.chunk", "choices": choices}
    if usage is not None:
        body["usage"] = usage
    return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


class OneWriteServer:
    """Answers every request with ``body`` as an SSE stream, head and body in one send."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(65536)
                head, _, rest = request.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(rest) < length:
                    rest += conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n"
                             b"Content-Length: " + str(len(self.body)).encode() + b"\r\n\r\n" + self.body)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def serve() -> Iterator:
    servers: List[OneWriteServer] = []

    def start(body: bytes) -> Client:
        server = OneWriteServer(body)
        servers.append(server)
        return Client(base_url=server.url, api_key="sk-join-test-0000", model="m", max_retries=0, verbose=False)

    yield start
    for server in servers:
        server.close()


ANSWER = (_frame({"role": "assistant", "content": ""}) + _frame({"reasoning_content": "先想"})
          + _frame({"reasoning_content": "一想"}) + _frame({"content": "光合"}) + _frame({"content": "作用"})
          + _frame({"content": "是"}) + _frame(finish="stop") + _frame(usage={"prompt_tokens": 3, "completion_tokens": 5,
                                                                          "total_tokens": 8})
          + b"data: [DONE]\n\n")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_pieces_of_one_read_are_joined_by_kind_and_nothing_else_is(serve, mode):
    client = serve(ANSWER)
    if mode == "sync":
        chunks = list(client.chat_stream("hi"))
    else:
        async def collect():
            return [c async for c in client.achat_stream("hi")]
        chunks = asyncio.run(collect())
    # Reasoning with reasoning, text with text, in their order; the role frame (empty), finish
    # and usage stay apart.
    assert [(c.reasoning, c.text, c.finish_reason) for c in chunks] == [
        ("", "", None), ("先想一想", "", None), ("", "光合作用是", None), ("", "", "stop"), ("", "", None)]
    assert chunks[-1].usage.total_tokens == 8


def test_text_before_an_error_in_the_same_read_still_arrives_first(serve):
    error = b'data: {"error": {"message": "upstream broke", "type": "server_error"}}\n\n'
    client = serve(_frame({"content": "光合"}) + _frame({"content": "作用"}) + error)
    received = []
    with pytest.raises(E.LLMError):
        for chunk in client.chat_stream("hi"):
            received.append(chunk.text)
    assert received == ["光合作用"]
