"""A TCP front for a fake whose answers end by closing the connection (HTTP/1.1 allows a
response without Content-Length or chunking: its body is "delimited by connection close").

uvicorn always chunks an HTTP/1.1 body of unknown length, so a fake behind it cannot send
one itself. The front relays each request to the fake as it is and rewrites the answer: the
chunked framing is taken off, ``Connection: close`` put on, and the connection closed when the
fake's body ends — or when the fake drops it (``Fault.disconnect_after``): to the client that
is a clean end of body, exactly what a cut proxy or provider sends.

    with FakeOpenAIServer() as fake, CloseDelimitedFront(fake) as front:
        fake.faults.append(Fault.disconnect_after(2))
        Client(base_url=front.base_url, ...)
"""
from __future__ import annotations

import socket
import threading
from typing import Any, List, Optional
from urllib.parse import urlsplit


class CloseDelimitedFront:
    def __init__(self, fake: Any) -> None:
        self.fake = fake
        self._listener: Optional[socket.socket] = None
        self._threads: List[threading.Thread] = []

    def start(self) -> "CloseDelimitedFront":
        self._listener = socket.create_server(("127.0.0.1", 0))
        thread = threading.Thread(target=self._accept, daemon=True, name="close-delimited-front")
        thread.start()
        return self

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __enter__(self) -> "CloseDelimitedFront":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._listener is not None, "start() first"
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    @property
    def base_url(self) -> str:
        """The fake's base URL (its path, e.g. ``/v1``) at the front's address."""
        return self.url + urlsplit(self.fake.base_url).path

    def _accept(self) -> None:
        while self._listener is not None:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.fake.port))
        relay = threading.Thread(target=_pipe, args=(client, upstream), daemon=True)
        relay.start()
        try:
            reader = upstream.makefile("rb")
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = reader.readline()
                if not line:
                    return
                head += line
            lines = head.split(b"\r\n")
            chunked = any(line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower()
                          for line in lines)
            kept = [line for line in lines[1:] if line and not line.lower().startswith(
                (b"transfer-encoding:", b"connection:"))]
            client.sendall(b"\r\n".join([lines[0], *kept, b"connection: close", b"", b""]))
            if not chunked:
                while True:
                    data = reader.read1(65536)
                    if not data:
                        return
                    client.sendall(data)
            while True:
                size_line = reader.readline()
                if not size_line.strip():
                    return   # the fake dropped the connection mid-body: end ours cleanly
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    return
                data = reader.read(size + 2)
                client.sendall(data[:size])
                if len(data) < size + 2:
                    return
        except OSError:
            return
        finally:
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                return
            target.sendall(data)
    except OSError:
        return
