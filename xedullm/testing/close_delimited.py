"""An OpenAI-compatible provider whose streamed answer is delimited by closing the connection.

HTTP/1.1 lets a response without Content-Length or chunked encoding end when the server
closes the connection (RFC 9112 §6.3). Some proxies and small servers stream SSE that way;
when such a stream stops early, the body still ends "cleanly": only the missing ``[DONE]``
and finish reason tell a cut answer from a whole one. The ASGI fakes cannot send that shape
(uvicorn always chunks a body of unknown length), so this one writes raw bytes on a socket.

    with CloseDelimitedServer(["你好", "，同学"], complete=False) as fake:
        Client(base_url=fake.base_url, api_key="sk-test", model="m")

``complete=True`` sends the finish reason and ``[DONE]`` before closing (a whole answer).
``requests`` counts the chat requests it answered.
"""
from __future__ import annotations

import json
import socket
import threading
from typing import List, Optional


class CloseDelimitedServer:
    def __init__(self, pieces: List[str], complete: bool = False, model: str = "fake-model") -> None:
        self.pieces = list(pieces)
        self.complete = complete
        self.model = model
        self.requests = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._thread: Optional[threading.Thread] = None
        self._stopped = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"

    def __enter__(self) -> "CloseDelimitedServer":
        self._thread = threading.Thread(target=self._serve, daemon=True, name="close-delimited-fake")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopped = True
        self._sock.close()

    def _serve(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            request = _read_request(conn)
            if request is None:
                return
            self.requests += 1
            stream = bool(request.get("stream"))
            if not stream:
                body = json.dumps({"id": "chatcmpl-cut", "object": "chat.completion", "model": self.model,
                                   "choices": [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant", "content": "".join(self.pieces)}}],
                                   "usage": {"prompt_tokens": 5, "completion_tokens": len(self.pieces),
                                             "total_tokens": 5 + len(self.pieces)}}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n" + body)
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                         b"connection: close\r\n\r\n")
            for i, piece in enumerate(self.pieces):
                delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
                conn.sendall(_frame({"id": "chatcmpl-cut", "object": "chat.completion.chunk", "model": self.model,
                                     "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}))
            if self.complete:
                conn.sendall(_frame({"id": "chatcmpl-cut", "object": "chat.completion.chunk", "model": self.model,
                                     "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
                conn.sendall(b"data: [DONE]\n\n")
            conn.shutdown(socket.SHUT_WR)   # the end of the body: the connection closes


def _frame(obj) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n\n"


def _read_request(conn: socket.socket) -> Optional[dict]:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return None
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        piece = conn.recv(65536)
        if not piece:
            return None
        body += piece
    try:
        return json.loads(body or b"{}")
    except ValueError:
        return {}
