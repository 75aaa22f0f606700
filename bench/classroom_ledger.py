"""What classroom controls cost, and whether a budget holds across two server processes.

    python -m bench.classroom_ledger [--requests 2000] [--concurrency 16]

1. The store alone: microseconds per ledger record, and per claim + record (one request).
2. Through the server, same run, alternating: requests/s with no controls (NullLedger,
   open policy) and with the SQLite store (identify + claim + record on every request).
3. Two ``xedullm serve`` processes on one data directory with one daily budget, hammered
   together: does the budget hold?

Runs in the current environment against the fake provider; nothing leaves 127.0.0.1.
"""
from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-bench-ledger-5a1c9e"
QUESTION = "算一算"          # 3 prompt tokens + 3 completion pieces at the fake: 6 tokens
COST = 6


def store_alone(n: int = 5000) -> str:
    from xedullm.server.classroom.room import today
    from xedullm.server.store.sqlite import SQLiteStore
    from xedullm.server.store.contract import Claim, LedgerRow

    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(folder)
        day = today()

        def row(now):
            return LedgerRow(started=now, day=day, latency=0.1, who="browser:abc", model="m", stream=True,
                             status=200, outcome="ok", admitted=True, prompt_tokens=10, completion_tokens=20,
                             total_tokens=30, charged=30)

        start = time.perf_counter()
        for _ in range(n):
            store.record(row(time.time()))
        record_us = (time.perf_counter() - start) / n * 1e6
        start = time.perf_counter()
        for i in range(n):
            now = time.time()
            claim = Claim(id=uuid.uuid4().hex, who=f"s{i % 40}", now=now, day=day, estimate=100,
                          class_budget=10 ** 9, who_budget=10 ** 8, rpm=1000, concurrent=5)
            store.claim(claim)
            store.record(row(now), claim.id)
        pair_us = (time.perf_counter() - start) / n * 1e6
        store.close()
    return (f"store alone ({n} each, WAL, synchronous=NORMAL): record {record_us:.0f} µs; "
            f"claim + record (all limits on, 40 students) {pair_us:.0f} µs per request")


async def _hammer(url: str, total: int, concurrency: int, key: str = "x") -> float:
    async with httpx.AsyncClient(base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"},
                                 limits=httpx.Limits(max_connections=concurrency)) as http:
        left = iter(range(total))

        async def worker():
            for _ in left:
                r = await http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": QUESTION}]})
                assert r.status_code == 200, r.text

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - start)


def through_server(requests: int, concurrency: int) -> str:
    from xedullm import Client
    from xedullm.server.app import ServerSettings, create_app
    from xedullm.testing import FakeOpenAIServer, ServerThread

    results = {"none": [], "sqlite": []}
    with FakeOpenAIServer(flavor="deepseek", api_key=KEY) as fake, tempfile.TemporaryDirectory() as folder:
        client = Client(provider="deepseek", base_url=fake.base_url, api_key=KEY, max_retries=0, verbose=False)
        apps = {"none": create_app(client, settings=ServerSettings(max_concurrent=256)),
                "sqlite": create_app(client, settings=ServerSettings(max_concurrent=256, data_dir=folder,
                                                                     daily_budget=10 ** 9))}
        servers = {name: ServerThread(app).start() for name, app in apps.items()}
        try:
            for name, server in servers.items():   # warm up
                asyncio.run(_hammer(server.url, 100, concurrency))
            for _ in range(3):
                for name, server in servers.items():
                    results[name].append(asyncio.run(_hammer(server.url, requests, concurrency)))
        finally:
            for server in servers.values():
                server.stop()
            apps["sqlite"].state.xedullm.classroom.close()
            client.close()
    none, sqlite = statistics.median(results["none"]), statistics.median(results["sqlite"])
    return (f"through the server ({requests} non-stream requests, {concurrency} at once, median of 3 alternating "
            f"runs): no controls {none:.0f} req/s, SQLite ledger + budgets {sqlite:.0f} req/s "
            f"({(1 / sqlite - 1 / none) * 1e6:+.0f} µs per request)")


def two_processes(budget: int = 600, concurrency: int = 24) -> str:
    from xedullm.server.classroom.room import today
    from xedullm.server.store.sqlite import SQLiteStore
    from xedullm.testing import FakeOpenAIServer

    with FakeOpenAIServer(flavor="deepseek", api_key=KEY, token_delay=0.002) as fake, \
            tempfile.TemporaryDirectory() as folder:
        env = dict(os.environ, DEEPSEEK_API_KEY=KEY, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        procs, urls = [], []
        for _ in range(2):
            proc = subprocess.Popen(
                [sys.executable, "-m", "xedullm", "serve", "-p", "deepseek", "--base-url", fake.base_url,
                 "--host", "127.0.0.1", "--port", "0", "--data-dir", folder, "--daily-budget", str(budget),
                 "--admin-password", "bench-pass-1",
                 # The whole class comes from 127.0.0.1 here, as one caller.
                 "--max-connections-per-address", "100000", "--max-per-caller", "100000"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                text=True, env=env, cwd=ROOT)
            procs.append(proc)
            for line in proc.stdout:
                if line.startswith("Running on local URL:"):
                    urls.append(line.split()[-1])
                    break
        outcomes = {"ok": 0, "held": 0, "quota": 0}

        async def student(url, exact):
            body = {"messages": [{"role": "user", "content": QUESTION}]}
            if exact:
                body["max_tokens"] = 3
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                while True:
                    r = await http.post("/v1/chat/completions", json=body)
                    if r.status_code == 200:
                        outcomes["ok"] += 1
                    elif r.json()["error"]["code"] == "insufficient_quota":
                        outcomes["quota"] += 1
                        return
                    else:
                        outcomes["held"] += 1
                        await asyncio.sleep(0.01)

        async def hammer(exact):
            await asyncio.gather(*(student(urls[i % 2], exact) for i in range(concurrency)))

        lines = []
        try:
            for exact, label in ((True, "holds equal to the real cost (max_tokens set)"),
                                 (False, "rough holds (no max_tokens: prompt + 1024)")):
                store = SQLiteStore(folder)
                with store._write() as db:   # a fresh day for each round
                    db.execute("DELETE FROM daily")
                store.close()
                fake.usage_log.clear()
                for key in outcomes:
                    outcomes[key] = 0
                asyncio.run(hammer(exact))
                store = SQLiteStore(folder)
                used = store.used(today())
                store.close()
                reported = sum(u["total_tokens"] for u in fake.usage_log)
                lines.append(f"  - {label}: budget {budget}, {concurrency} students on 2 processes → "
                             f"{outcomes['ok']} answered, used {used} (provider reported {reported}); "
                             f"over by {used - budget}; "
                             f"expected exactly {math.ceil(budget / COST) * COST} with exact holds")
        finally:
            for proc in procs:
                proc.send_signal(2)
            for proc in procs:
                proc.wait(30)
    return "two `xedullm serve` processes, one data directory:\n" + "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.classroom_ledger")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    print(store_alone(), flush=True)
    print(through_server(args.requests, args.concurrency), flush=True)
    print(two_processes(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
