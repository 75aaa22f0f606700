"""A classmate's answer time while one student attacks the classroom server (issue 14).

    python bench/fairness.py                       # this checkout
    python bench/fairness.py --fd-limit 256        # the server with macOS's usual open-file limit
    python bench/fairness.py --pythonpath /tmp/old # the same against another checkout's server

Three processes on 127.0.0.1, as in a classroom: a fake provider (``python -m xedullm.testing``,
answers paced at ``--token-delay``), the server (``xedullm serve`` with an access code and a
data directory), and this script playing one attacker (from 127.0.0.1, with the access code
only) and one classmate (from 127.0.0.2, the page's browser id). Each scenario is bounded:

- quiet: the classmate's streamed answer, 5 times in a row;
- 330 streams: the attacker opens 330 long streaming answers at once, 3 s later the classmate
  asks (3 times in a row); the attacker's statuses are counted when all have one;
- 300 half-open: the attacker opens 300 sockets and sends half a request line on each, then
  the classmate asks; afterwards, how many of the 300 the server has closed.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-bench-fair-0123456789abcdef"
CODE = "bench-class-code"
LONG = "请详细地写一篇关于长城历史的作文。" * 30      # ~500 characters: a ~25 s answer at 0.05 s/event


def spawn(args, env, fd_limit=None, cwd=ROOT):
    def limit():
        if fd_limit:
            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=cwd, start_new_session=True, preexec_fn=limit)


def first_line_matching(proc, pattern):
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(proc.stderr.read())
        found = re.search(pattern, line)
        if found:
            return found.group(1)


async def classmate(url, n=1):
    """Seconds for each of ``n`` complete streamed answers (None for a failed one)."""
    times = []
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=60) as http:
        for i in range(n):
            started = time.perf_counter()
            try:
                async with http.stream("POST", "/v1/chat/completions", headers={
                        "Authorization": f"Bearer {CODE}"},   # another address: another student
                        json={"messages": [{"role": "user", "content": f"同学的问题{i}"}], "stream": True}) as r:
                    text = "".join([line async for line in r.aiter_lines()])
                    ok = r.status_code == 200 and "[DONE]" in text
            except httpx.HTTPError:
                ok = False
            times.append(time.perf_counter() - started if ok else None)
    return times


async def hog_streams(url, n, seconds):
    """One student's ``n`` streams at once; returns the statuses they got, classmate's times."""
    statuses = []

    async def one(http):
        try:
            async with http.stream("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {CODE}"},
                                   json={"messages": [{"role": "user", "content": LONG}], "stream": True}) as r:
                statuses.append(r.status_code)
                if r.status_code == 200:
                    with anyio_timeout(seconds):
                        async for _ in r.aiter_raw():
                            pass
        except (httpx.HTTPError, OSError) as exc:
            statuses.append(type(exc).__name__)

    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        hogs = [asyncio.ensure_future(one(http)) for _ in range(n)]
        await asyncio.sleep(3)   # the attack is under way: every stream sent, the first ones answering
        times = await classmate(url, 3)
        while len(statuses) < n and not all(h.done() for h in hogs):
            await asyncio.sleep(0.05)
        for h in hogs:
            h.cancel()
        for outcome in await asyncio.gather(*hogs, return_exceptions=True):
            if isinstance(outcome, Exception):
                statuses.append(type(outcome).__name__)
    return statuses, times


class anyio_timeout:
    """``with anyio_timeout(s):`` inside a task: cancel the block after ``s`` seconds."""

    def __init__(self, seconds):
        self.seconds = seconds

    def __enter__(self):
        task = asyncio.current_task()
        self.handle = asyncio.get_running_loop().call_later(self.seconds, task.cancel)

    def __exit__(self, *exc):
        self.handle.cancel()


def half_open(url, n, wait):
    port = int(url.rsplit(":", 1)[1])
    socks, refused = [], 0
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
        except OSError:
            refused += 1
    times = asyncio.run(classmate(url, 3))
    time.sleep(wait)
    closed = 0
    for s in socks:
        s.settimeout(0.01)
        try:
            closed += s.recv(1) == b""
        except socket.timeout:
            pass
        except OSError:
            closed += 1
        s.close()
    return times, closed, refused


def shown(times):
    good = [t for t in times if t is not None]
    failed = len(times) - len(good)
    text = f"{statistics.median(good):.2f} s" if good else "no answer"
    return text + (f" ({failed}/{len(times)} failed)" if failed else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token-delay", type=float, default=0.05)
    parser.add_argument("--streams", type=int, default=330)
    parser.add_argument("--sockets", type=int, default=300)
    parser.add_argument("--fd-limit", type=int, default=None, help="the server's open-file limit")
    parser.add_argument("--pythonpath", default=str(ROOT), help="the checkout whose server to run")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=args.pythonpath, DEEPSEEK_API_KEY=KEY, PYTHONUNBUFFERED="1")
    fake_env = dict(env, PYTHONPATH=str(ROOT))
    data = tempfile.mkdtemp(prefix="xedullm-bench-fair-")
    fake = spawn([sys.executable, "-m", "xedullm.testing", "openai", "--flavor", "deepseek", "--api-key", KEY,
                  "--token-delay", str(args.token_delay)], fake_env)
    server = None
    try:
        base = first_line_matching(fake, r"(http://\S+/v1)")
        server = spawn([sys.executable, "-m", "xedullm", "serve", "-p", "deepseek", "--base-url", base,
                        "--host", "127.0.0.1", "--port", "0", "--access-code", CODE, "--data-dir", data],
                       env, args.fd_limit,
                       cwd=args.pythonpath)   # `-m` puts the working directory first on sys.path
        url = first_line_matching(server, r"Running on local URL:\s+(http://\S+)")
        for pipe in (server.stdout, server.stderr, fake.stdout, fake.stderr):   # keep the pipes drained
            threading.Thread(target=pipe.read, daemon=True).start()
        print(f"server {args.pythonpath}; fd limit {args.fd_limit or 'default'}; token delay {args.token_delay}s")
        print(f"quiet: classmate's answer {shown(asyncio.run(classmate(url, 5)))}")
        statuses, times = asyncio.run(hog_streams(url, args.streams, 20))
        statuses = [str(s) for s in statuses]
        counts = {s: statuses.count(s) for s in sorted(set(statuses))}
        print(f"{args.streams} streams from one student: their statuses {counts}; "
              f"classmate's answer {shown(times)}")
        times, closed, refused = half_open(url, args.sockets, 25)
        print(f"{args.sockets} half-open sockets from one student ({refused} refused at connect): "
              f"classmate's answer {shown(times)}; closed by the server within ~25 s: {closed}")
    finally:
        for proc in (server, fake):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
