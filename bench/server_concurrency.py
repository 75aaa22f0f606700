"""How many students streaming at once one classroom server carries, and its memory.

    python bench/server_concurrency.py                 # 60, 200 and 500 students
    python bench/server_concurrency.py --students 1000 --token-delay 0.05

Three processes, as in a classroom: a fake provider (``python -m xedullm.testing``), the
server (``xedullm serve``) and this script playing the class (async httpx, one connection per
student). Every student streams one answer; an answer counts only if it is complete and
exactly right. The server's memory is read from /proc (Linux), so it is the server's alone.
The class and the server share this machine's cores: on a small machine the class itself
costs CPU the server would otherwise have.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-bench-0123456789abcdef0123"
# A question of about 200 characters: the fake answers "你好！你刚才说：" + question in pieces
# of 4 characters, so each answer is ~50 events.
QUESTION = "请用三句话解释为什么天空是蓝色的，并举一个生活中的例子。" * 7


def spawn(args, env):
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT, start_new_session=True)


def first_line_matching(proc, pattern):
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(proc.stderr.read())
        found = re.search(pattern, line)
        if found:
            return found.group(1)


def memory_mib(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_student(http, i):
    question = f"{i}号：{QUESTION}"
    started = time.perf_counter()
    first = None
    pieces, done = [], False
    try:
        async with http.stream("POST", "/v1/chat/completions", json={
                "messages": [{"role": "user", "content": question}], "stream": True}) as response:
            if response.status_code != 200:
                return {"ok": False, "why": f"HTTP {response.status_code}"}
            async for line in response.aiter_lines():
                if not line:
                    continue
                if first is None:
                    first = time.perf_counter() - started
                if line == "data: [DONE]":
                    done = True
                    continue
                frame = json.loads(line[len("data: "):])
                if "error" in frame:
                    return {"ok": False, "why": frame["error"]["message"]}
                if frame["choices"]:
                    pieces.append(frame["choices"][0]["delta"].get("content") or "")
    except httpx.HTTPError as exc:
        return {"ok": False, "why": type(exc).__name__}
    ok = done and "".join(pieces) == "你好！你刚才说：" + question
    return {"ok": ok, "why": "" if ok else "incomplete or wrong", "first": first,
            "total": time.perf_counter() - started}


async def whole_class(url, n):
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(300, connect=60), limits=limits) as http:
        started = time.perf_counter()
        results = await asyncio.gather(*(one_student(http, i) for i in range(n)))
        return results, time.perf_counter() - started


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, nargs="+", default=[60, 200, 500])
    parser.add_argument("--token-delay", type=float, default=0.05,
                        help="seconds between the provider's stream events (default 0.05 ≈ 20 events/s)")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT), DEEPSEEK_API_KEY=KEY, PYTHONUNBUFFERED="1")
    fake = spawn([sys.executable, "-m", "xedullm.testing", "openai", "--flavor", "deepseek", "--api-key", KEY,
                  "--token-delay", str(args.token_delay)], env)
    server = None
    try:
        base = first_line_matching(fake, r"(http://\S+/v1)")
        top = max(args.students)
        # The gate admits everyone at once: this measures the server, not the waiting line.
        server = spawn([sys.executable, "-m", "xedullm", "serve", "-p", "deepseek", "--base-url", base,
                        "--host", "127.0.0.1", "--port", "0", "--max-concurrent", str(top),
                        # The whole class comes from 127.0.0.1 here, as one caller.
                        "--max-connections-per-address", "100000", "--max-per-caller", "100000"], env)
        url = first_line_matching(server, r"Running on local URL:\s+(http://\S+)")
        for pipe in (server.stdout, server.stderr, fake.stdout, fake.stderr):   # keep the pipes drained
            threading.Thread(target=pipe.read, daemon=True).start()
        asyncio.run(whole_class(url, 1))   # warm-up: imports, first upstream connection
        print(f"server idle: RSS {memory_mib(server.pid, 'VmRSS'):.1f} MiB; provider token delay "
              f"{args.token_delay}s, ~{len(QUESTION) // 4 + 3} events per answer; {os.cpu_count()} CPU cores")
        print("| students | complete & correct | first token p50 / p95 (s) | answer p50 / max (s) "
              "| wall (s) | CPU s: server / provider / class | server RSS peak (MiB) |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for n in args.students:
            cpu0, fake0, class0 = cpu_seconds(server.pid), cpu_seconds(fake.pid), time.process_time()
            results, wall = asyncio.run(whole_class(url, n))
            good = [r for r in results if r["ok"]]
            firsts = [r["first"] for r in good]
            totals = [r["total"] for r in good]
            print(f"| {n} | {len(good)}/{n} | {pct(firsts, 50):.2f} / {pct(firsts, 95):.2f} | "
                  f"{statistics.median(totals) if totals else float('nan'):.2f} / "
                  f"{max(totals) if totals else float('nan'):.2f} | {wall:.1f} | "
                  f"{cpu_seconds(server.pid) - cpu0:.1f} / {cpu_seconds(fake.pid) - fake0:.1f} / "
                  f"{time.process_time() - class0:.1f} | {memory_mib(server.pid, 'VmHWM'):.1f} |", flush=True)
            failures = sorted({r["why"] for r in results if not r["ok"]})
            if failures:
                print(f"  failures: {failures[:5]}")
        print(f"server RSS after: {memory_mib(server.pid, 'VmRSS'):.1f} MiB")
    finally:
        for proc in (server, fake):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
