"""The teacher's local models, for the students' machines (``xedullm models pull NAME --from
http://TEACHER:7860``): ``GET /v1/local-models`` lists them (id, file, size, sha256) and
``GET|HEAD /v1/local-models/{id}`` sends one file, ``Range: bytes=N-`` / ``N-M`` honoured so
a cut download continues.

Behind the same door as the chat: the policy's ``identify`` (the class's access code or a
student token as ``Authorization: Bearer``), nothing when the class has no door.

Forty machines pulling at once must not starve the chat: at most ``MAX_DOWNLOADS`` files go
out at once (the next hears 503 with ``Retry-After``; ``pull`` waits and continues); the file
is read in 1 MiB pieces on two threads of its own, never on the event loop nor on the thread
pool answers use; each piece is sent only when the client has taken the last (uvicorn's
flow control), so a slow machine holds one piece of memory, not the file.
"""
from __future__ import annotations

import asyncio
import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...errors import LLMError
from ...models import InstalledModel, installed_models
from ..state import state_of
from .connection_guard import ON_DISCONNECT
from .openai_format import error_reply

MAX_DOWNLOADS = 8
RETRY_AFTER = 5
PIECE = 1 << 20
# Reads and checksums on threads of their own: the default pool is the answers'.
_READER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="xedullm-model-files")


class Shelf:
    """Per app (``app.state.model_files``): downloads under way, and checksums already made."""

    def __init__(self) -> None:
        self.sending = 0
        self._sums: Dict[Tuple[str, int, int], str] = {}
        self._summing: Dict[str, asyncio.Future] = {}

    async def sha256(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key in self._sums:
            return self._sums[key]
        running = self._summing.get(key[0])
        if running is None:   # the first asker sums; the others wait for the same result
            running = asyncio.get_running_loop().run_in_executor(_READER, _sha256, path)
            self._summing[key[0]] = running
            try:
                self._sums[key] = await running
            finally:
                self._summing.pop(key[0], None)
            return self._sums[key]
        return await running


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(PIECE), b""):
            digest.update(piece)
    return digest.hexdigest()


def _shelf(request: Request) -> Shelf:
    shelf = getattr(request.app.state, "model_files", None)
    if shelf is None:
        shelf = request.app.state.model_files = Shelf()
    return shelf


async def _refused(request: Request) -> Optional[Response]:
    """The chat's door: None when the caller may come in, else the refusal."""
    identify = getattr(state_of(request).policy, "identify", None)
    if identify is None:
        return None
    try:
        await identify(request)
    except LLMError as err:
        reply = error_reply(err, own_message=True)
        return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)
    return None


def _shared() -> List[InstalledModel]:
    return [m for m in installed_models() if m.model is not None]


async def list_models(request: Request) -> Response:
    refused = await _refused(request)
    if refused is not None:
        return refused
    shelf = _shelf(request)
    data = [{"id": m.name, "object": "local_model", "file": m.model.file, "size": m.size,
             "sha256": await shelf.sha256(m.path), "label": m.model.label,
             "languages": list(m.model.languages), "license": m.model.license} for m in _shared()]
    return JSONResponse({"object": "list", "data": data})


async def model_file(request: Request) -> Any:
    refused = await _refused(request)
    if refused is not None:
        return refused
    wanted = request.path_params["model_id"]
    found = next((m for m in _shared() if m.name == wanted), None)
    if found is None:
        return _error(404, "model_not_found",
                      f"老师的电脑上没有本地模型 {wanted[:100]}：GET /v1/local-models 列出有的。/ "
                      f"The teacher's computer has no local model {wanted[:100]}: GET /v1/local-models "
                      f"lists the ones there are.")
    size = found.path.stat().st_size
    span = _span(request.headers.get("range"), size)
    if span is None:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    shelf = _shelf(request)
    if request.method == "GET":
        if shelf.sending >= MAX_DOWNLOADS:
            return _error(503, "server_busy",
                          f"老师的电脑正同时发送 {MAX_DOWNLOADS} 个模型文件，请 {RETRY_AFTER} 秒后再试（会接着下载）。/ "
                          f"The teacher's computer is sending {MAX_DOWNLOADS} model files at once; try again in "
                          f"{RETRY_AFTER} seconds (the download continues where it stopped).",
                          {"Retry-After": str(RETRY_AFTER)})
        shelf.sending += 1   # taken here, before any await: the count is exact
    return FileSend(shelf, found.path, size, span, partial="range" in request.headers,
                    head=request.method == "HEAD")


def _span(value: Optional[str], size: int) -> Optional[Tuple[int, int]]:
    """(first, last) byte to send; None when the range cannot be satisfied."""
    if not value or not value.startswith("bytes=") or "," in value:
        return (0, size - 1)   # no range, or several: the whole file (RFC 9110 allows it)
    first, _, last = value[6:].strip().partition("-")
    try:
        if not first:   # "bytes=-N": the last N bytes
            start, end = max(0, size - int(last)), size - 1
        else:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
    except ValueError:
        return (0, size - 1)
    if start >= size or start > end:
        return None
    return (start, end)


class FileSend:
    """The file's bytes ``span[0]..span[1]``, a piece at a time; stops when the client leaves."""

    def __init__(self, shelf: Shelf, path: Path, size: int, span: Tuple[int, int], *, partial: bool,
                 head: bool) -> None:
        self._shelf, self._path, self._size, self._span = shelf, path, size, span
        self._partial, self._head = partial, head
        self._gone = False

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        try:
            await self._send(scope, receive, send)
        finally:
            if not self._head:
                self._shelf.sending -= 1

    async def _send(self, scope: dict, receive: Any, send: Any) -> None:
        start, end = self._span
        headers = [(b"accept-ranges", b"bytes"), (b"content-type", b"application/octet-stream"),
                   (b"content-length", str(end - start + 1).encode())]
        if self._partial:
            headers.append((b"content-range", f"bytes {start}-{end}/{self._size}".encode()))
        await send({"type": "http.response.start", "status": 206 if self._partial else 200, "headers": headers})
        if self._head or end < start:
            await send({"type": "http.response.body", "body": b""})
            return
        on_disconnect = (scope.get("extensions") or {}).get(ON_DISCONNECT)
        watcher = None
        if on_disconnect is not None:
            on_disconnect.append(self._left)
        else:
            watcher = asyncio.ensure_future(self._watch(receive))
        loop = asyncio.get_running_loop()
        f = await loop.run_in_executor(_READER, open, self._path, "rb")
        try:
            position = start
            while position <= end and not self._gone:
                want = min(PIECE, end + 1 - position)
                piece = await loop.run_in_executor(_READER, _read_at, f, position, want)
                if not piece:
                    break   # the file shrank under us: the client sees a short body
                position += len(piece)
                await send({"type": "http.response.body", "body": piece, "more_body": position <= end})
        finally:
            f.close()
            if watcher is not None:
                watcher.cancel()

    def _left(self) -> None:
        self._gone = True

    async def _watch(self, receive: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._gone = True


def _read_at(f: Any, position: int, size: int) -> bytes:
    f.seek(position)
    return f.read(size)


def _error(status: int, code: str, message: str, headers: Optional[Dict[str, str]] = None) -> Response:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error" if status < 500
                                   else "server_error", "param": None, "code": code}},
                        status_code=status, headers=headers)


def model_file_routes() -> List[BaseRoute]:
    return [
        Route("/v1/local-models", list_models, methods=["GET"]),
        Route("/v1/local-models/{model_id}", model_file, methods=["GET", "HEAD"]),
    ]
