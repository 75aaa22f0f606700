"""Run an ASGI app under uvicorn in a background thread, on a port the OS picks."""
from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any, Callable, Optional


class ServerThread:
    """``with ServerThread(app) as s: s.url`` — or ``s.start()`` / ``s.stop()``.

    The socket is bound here (port 0 lets the OS choose), so the port is known before
    uvicorn starts and nothing races for it. Readiness is ``uvicorn.Server.started``.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0,
                 start_timeout: float = 10.0, http: Any = "auto") -> None:
        self.app = app
        self._http = http   # uvicorn's HTTP protocol (the classroom server's own, in its tests)
        self.host = host
        self._requested_port = port
        self._start_timeout = start_timeout
        self._server: Any = None
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._sock: Optional[socket.socket] = None
        self._port: Optional[int] = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started / 服务器尚未启动")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def connections(self) -> int:
        """Open TCP connections right now (uvicorn's own bookkeeping)."""
        if self._server is None:
            return 0
        return len(self._server.server_state.connections)

    def call_soon(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the server's event loop (thread-safe)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn)

    def start(self) -> "ServerThread":
        import uvicorn

        if self.running:
            raise RuntimeError("server already running / 服务器已在运行")
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
        # listening socket says so; without it every reused connection waits ~40 ms (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        self._sock = sock
        self._port = sock.getsockname()[1]
        # log_config=None: never reconfigure the host process's logging. The app's lifespan
        # runs as under `xedullm serve` (the classroom server re-reads shared settings there).
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="auto",
                                timeout_graceful_shutdown=3, http=self._http)
        self._server = uvicorn.Server(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"fake-server-{self.port}",
                                        daemon=True)
        self._thread.start()
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("server failed to start / 服务器启动失败")
            if waited >= self._start_timeout:
                self.stop()
                raise RuntimeError("server did not start in time / 服务器启动超时")
            self._thread.join(0.005)
            waited += 0.005
        return self

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._server.serve(sockets=[self._sock]))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(10)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(10)
        self._thread = None
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
