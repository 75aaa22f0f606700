"""Load generator: raw asyncio HTTP/1.1 over keep-alive connections, standard library only.

Kept out of the way on purpose: no HTTP library, one process, one event loop, so it costs
less CPU than the servers it measures (it reports its own CPU seconds to prove it).
Every answer is checked against the expected reply text; anything else counts as an error.

    python loadgen.py '<json spec>'    -> one JSON line on stdout

spec: port, path, headers, model, question, reply, stream, concurrency,
      and either count (requests per worker) or duration (seconds).
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Dict, List, Optional, Tuple


class Conn:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: Optional[asyncio.StreamReader] = None
        self.writer: Optional[asyncio.StreamWriter] = None

    async def ensure(self) -> None:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port,
                                                                     limit=1 << 20)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def read_head(reader: asyncio.StreamReader) -> Tuple[int, Dict[str, str]]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed before the status line")
    status = int(status_line.split(b" ", 2)[1])
    headers: Dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


async def body_pieces(reader: asyncio.StreamReader, headers: Dict[str, str]):
    """The body as it arrives: chunked transfer decoded, or Content-Length bytes."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";", 1)[0], 16)
            if size == 0:
                await reader.readline()   # the empty trailer section
                return
            data = await reader.readexactly(size + 2)
            yield data[:-2]
    elif "content-length" in headers:
        yield await reader.readexactly(int(headers["content-length"]))
    else:
        yield await reader.read()


class Result:
    __slots__ = ("ok", "first", "total", "error")

    def __init__(self) -> None:
        self.ok = False
        self.first: Optional[float] = None
        self.total = 0.0
        self.error = ""


async def one(conn: Conn, request: bytes, stream: bool, reply: str) -> Result:
    result = Result()
    start = time.perf_counter()
    try:
        await conn.ensure()
        conn.writer.write(request)
        status, headers = await read_head(conn.reader)
        text: List[str] = []
        done = False
        if stream and status == 200:
            buffer = b""
            async for data in body_pieces(conn.reader, headers):
                buffer += data
                *events, buffer = buffer.split(b"\n\n")
                for event in events:
                    for line in event.split(b"\n"):
                        if not line.startswith(b"data:"):
                            continue
                        payload = line[5:].strip()
                        if payload == b"[DONE]":
                            done = True
                            continue
                        choices = json.loads(payload).get("choices") or [{}]
                        piece = (choices[0].get("delta") or {}).get("content")
                        if piece:
                            if result.first is None:
                                result.first = time.perf_counter() - start
                            text.append(piece)
        else:
            raw = b"".join([d async for d in body_pieces(conn.reader, headers)])
            if status == 200:
                text.append(json.loads(raw)["choices"][0]["message"]["content"])
                done = True
                result.first = time.perf_counter() - start
        if headers.get("connection", "").lower() == "close":
            conn.close()
        result.total = time.perf_counter() - start
        if status != 200:
            result.error = f"HTTP {status}"
        elif not done:
            result.error = "stream ended without [DONE]"
        elif "".join(text) != reply:
            result.error = "wrong answer text"
        else:
            result.ok = True
    except (OSError, asyncio.IncompleteReadError, ValueError, KeyError) as exc:
        conn.close()
        result.total = time.perf_counter() - start
        result.error = type(exc).__name__
    return result


def build_request(spec: dict) -> bytes:
    body = json.dumps({"model": spec["model"], "stream": spec["stream"],
                       "messages": [{"role": "user", "content": spec["question"]}]},
                      ensure_ascii=False).encode()
    head = [f"POST {spec['path']} HTTP/1.1", f"Host: 127.0.0.1:{spec['port']}",
            "Content-Type: application/json", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in spec.get("headers", {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def worker(spec: dict, request: bytes, deadline: Optional[float], out: List[Result]) -> None:
    conn = Conn(spec["port"])
    count = spec.get("count")
    try:
        while (count is None or count > 0) and (deadline is None or time.perf_counter() < deadline):
            out.append(await one(conn, request, spec["stream"], spec["reply"]))
            if count is not None:
                count -= 1
    finally:
        conn.close()


async def main(spec: dict) -> dict:
    request = build_request(spec)
    results: List[Result] = []
    cpu0, start = time.process_time(), time.perf_counter()
    deadline = start + spec["duration"] if spec.get("duration") else None
    await asyncio.gather(*(worker(spec, request, deadline, results)
                           for _ in range(spec["concurrency"])))
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    good = [r for r in results if r.ok]
    errors: Dict[str, int] = {}
    for r in results:
        if not r.ok:
            errors[r.error] = errors.get(r.error, 0) + 1
    return {"wall": wall, "cpu": cpu, "requests": len(results), "ok": len(good),
            "errors": errors, "first": [r.first for r in good], "total": [r.total for r in good]}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))
