"""A fake model hub: Hugging Face's resolve protocol and ModelScope's file API, on 127.0.0.1.

    hub = FakeHub().start()
    hub.add("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct-q4_k_m.gguf", data)
    os.environ["HF_ENDPOINT"] = hub.url         # huggingface_hub's variable, ours too
    os.environ["MODELSCOPE_DOMAIN"] = hub.url

Hugging Face (as huggingface.co answers, see xedullm/models/hubs.py): ``HEAD|GET
/{repo}/resolve/{revision}/{path}``. An LFS file (``lfs=True``, the default for .gguf)
answers 302 to ``/cdn/{sha256}`` with ``X-Repo-Commit``, ``X-Linked-Etag: "<sha256>"``,
``X-Linked-Size`` and ``ETag``; the CDN serves the bytes with ``Accept-Ranges: bytes``, 206 and
``Content-Range`` for ``Range: bytes=N-`` / ``N-M``, 416 past the end. A plain file answers 200
itself with ``ETag: "<git blob sha1>"``. Unknown files: 404 with ``X-Error-Code:
EntryNotFound``.

ModelScope: ``GET /api/v1/models/{repo}/repo/files?Revision=&Recursive=`` ->
``{"Code":200,"Success":true,"Data":{"Files":[{"Name","Path","Type":"blob","Size","Sha256",
"Revision"}]}}``; ``GET /api/v1/models/{repo}/repo?Revision=&FilePath=`` -> the bytes (Range).

Switches: ``cuts`` (FIFO of byte counts: the next file body stops after that many bytes and
the connection closes), ``corrupt = True`` (one byte of every body served flipped; the
headers still declare the true size and sha256), ``declared_size`` (what HEAD and the listing
claim, e.g. more than any disk has). Records: ``requests`` (method, path, query, headers with
lower-case keys).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs

from .fake_server import _Abort, _install_log_filter
from .server_thread import ServerThread

COMMIT = "4a1c5e7f0b9d2c3e8f6a5b4c3d2e1f0a9b8c7d6e"
BODY_CHUNK = 64 * 1024


@dataclass
class HubFile:
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def git_sha1(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()


class FakeHub:
    def __init__(self) -> None:
        self.files: Dict[Tuple[str, str], HubFile] = {}
        self.cuts: List[int] = []
        self.corrupt = False
        self.declared_size: Optional[int] = None
        self.requests: List[Dict[str, Any]] = []
        self._server: Optional[ServerThread] = None

    def add(self, repo: str, path: str, data: bytes, lfs: Optional[bool] = None) -> HubFile:
        entry = HubFile(data, path.endswith(".gguf") if lfs is None else lfs)
        self.files[(repo, path)] = entry
        return entry

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> "FakeHub":
        _install_log_filter()
        self._server = ServerThread(_Asgi(self)).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the hub first"
        return self._server.url

    def file_requests(self) -> List[Dict[str, Any]]:
        """The GETs that asked for a file's bytes (CDN or ModelScope), oldest first."""
        return [r for r in self.requests if r["method"] == "GET"
                and (r["path"].startswith("/cdn/") or r["path"].endswith("/repo"))]

    # -- the ASGI app -----------------------------------------------------------------------
    async def _app(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        method, path = scope["method"], scope["path"]
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append({"method": method, "path": path, "query": query, "headers": headers})
        if "/resolve/" in path:
            await self._resolve(method, path, send)
        elif path.startswith("/cdn/"):
            entry = next((f for f in self.files.values() if f.sha256 == path[5:]), None)
            await self._serve(method, entry, headers, send)
        elif path.startswith("/api/v1/models/") and path.endswith("/repo/files"):
            await self._ms_list(path[len("/api/v1/models/"):-len("/repo/files")], query, send)
        elif path.startswith("/api/v1/models/") and path.endswith("/repo"):
            repo = path[len("/api/v1/models/"):-len("/repo")]
            await self._serve(method, self.files.get((repo, query.get("FilePath", ""))), headers, send)
        else:
            await _plain(send, 404, b"Not Found")

    async def _resolve(self, method: str, path: str, send: Any) -> None:
        before, _, after = path.lstrip("/").partition("/resolve/")
        _revision, _, file_path = after.partition("/")
        entry = self.files.get((before, file_path))
        if entry is None:
            await _plain(send, 404, b"Entry not found", [(b"x-error-code", b"EntryNotFound")])
            return
        size = str(self.declared_size if self.declared_size is not None else len(entry.data)).encode()
        common = [(b"x-repo-commit", COMMIT.encode())]
        if entry.lfs:
            body = b"Found. Redirecting to /cdn/" + entry.sha256.encode()
            await send({"type": "http.response.start", "status": 302, "headers": [
                *common, (b"location", f"{self.url}/cdn/{entry.sha256}".encode()),
                (b"x-linked-etag", f'"{entry.sha256}"'.encode()), (b"x-linked-size", size),
                (b"etag", f'"{entry.sha256}"'.encode()), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
            return
        await self._serve(method, entry, {}, send, extra=[*common, (b"etag", f'"{entry.git_sha1}"'.encode())])

    async def _ms_list(self, repo: str, query: Dict[str, str], send: Any) -> None:
        import json

        files = [{"Name": p.rsplit("/", 1)[-1], "Path": p, "Type": "blob", "Revision": COMMIT,
                  "Size": self.declared_size if self.declared_size is not None else len(f.data),
                  "Sha256": f.sha256} for (r, p), f in self.files.items() if r == repo]
        body = json.dumps({"Code": 200, "Success": True, "Message": "success",
                           "Data": {"Files": files}}).encode()
        await _plain(send, 200, body, [(b"content-type", b"application/json")])

    async def _serve(self, method: str, entry: Optional[HubFile], headers: Dict[str, str], send: Any,
                     extra: Optional[list] = None) -> None:
        if entry is None:
            await _plain(send, 404, b"Not Found")
            return
        data = entry.data
        if self.corrupt and method == "GET":
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
        total = len(data)
        start, end, status = 0, total - 1, 200
        wanted = headers.get("range", "")
        if wanted.startswith("bytes="):
            first, _, last = wanted[6:].partition("-")
            start = int(first or 0)
            end = min(int(last), total - 1) if last else total - 1
            if start >= total:
                await _plain(send, 416, b"", [(b"content-range", f"bytes */{total}".encode())])
                return
            status = 206
        out = [(b"accept-ranges", b"bytes"), (b"content-length", str(end - start + 1).encode()),
               (b"content-type", b"application/octet-stream"), *(extra or [])]
        if status == 206:
            out.append((b"content-range", f"bytes {start}-{end}/{total}".encode()))
        await send({"type": "http.response.start", "status": status, "headers": out})
        if method == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        cut = self.cuts.pop(0) if self.cuts else None
        position, sent = start, 0
        while position <= end:
            piece = data[position:min(position + BODY_CHUNK, end + 1)]
            if cut is not None and sent + len(piece) >= cut:
                await send({"type": "http.response.body", "body": piece[:cut - sent], "more_body": True})
                raise _Abort()   # uvicorn closes the connection mid-body
            position += len(piece)
            sent += len(piece)
            await send({"type": "http.response.body", "body": piece, "more_body": position <= end})


class _Asgi:
    """The hub as an ASGI 3 app (uvicorn takes a bound method for an ASGI 2 one)."""

    def __init__(self, hub: FakeHub) -> None:
        self._hub = hub

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        await self._hub._app(scope, receive, send)


async def _plain(send: Any, status: int, body: bytes, headers: Optional[list] = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
