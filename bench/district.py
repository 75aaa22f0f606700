"""District scale: what PostgreSQL costs per request, and two servers behind nginx vs one.

    python -m bench.district [--students 200] [--duration 20] [--burst 1000]

1. The store alone: claim + record (one admitted request's store work) on SQLite and on
   PostgreSQL (a throwaway cluster with fsync on, scripts/postgres-for-tests.sh), from one
   thread and from four.
2. ``--students`` streaming at once for ``--duration`` seconds, each asking again as soon as
   an answer ends: one ``xedullm serve`` on PostgreSQL, then two behind nginx (the
   configuration of docs/district.md). Answers/s, errors, first-chunk p50/p99.
3. ``--burst`` requests at once over both servers through nginx with a class budget of 400
   answers: exactly 400 must be answered and the ledger must equal the provider's usage.

Everything runs on 127.0.0.1: the provider is the fake, the class is this script.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator, List

import httpx

from .server_concurrency import QUESTION, cpu_seconds, first_line_matching, one_student, pct, spawn

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-bench-district-7e21"
SCRIPT = ROOT / "scripts" / "postgres-for-tests.sh"
BURST_QUESTION = "算一算"        # 3 prompt tokens + 3 completion pieces at the fake: 6 tokens
BURST_COST = 6


# -- the pieces -------------------------------------------------------------------------------
@contextlib.contextmanager
def postgres() -> Iterator[Dict[str, str]]:
    started = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, check=True,
                             env=dict(os.environ, XEDULLM_PG_FSYNC="on"))
    found = dict(line.split(" ", 1)[1].split("=", 1) for line in started.stdout.splitlines())
    try:
        yield found
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", found["XEDULLM_TEST_POSTGRES_DIR"]], capture_output=True)
        shutil.rmtree(found["XEDULLM_TEST_POSTGRES_DIR"], ignore_errors=True)


def new_schema(url: str) -> str:
    import psycopg

    name = f"b_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {name}")
    return f"{url}?options=-csearch_path%3D{name}"


def serve(base: str, store: str, *flags: str):
    env = dict(os.environ, PYTHONPATH=str(ROOT), DEEPSEEK_API_KEY=KEY, PYTHONUNBUFFERED="1", XEDULLM_STORE=store)
    proc = spawn([sys.executable, "-m", "xedullm", "serve", "-p", "deepseek", "--base-url", base, "--host",
                  "127.0.0.1", "--port", "0", "--max-concurrent", "1000", "--max-waiting", "1000",
                  "--admin-password", "bench-admin-pw", *flags], env)
    url = first_line_matching(proc, r"Running on local URL:\s+(http://\S+)")
    first_line_matching(proc, r"(用量记录保存在)")
    for pipe in (proc.stdout, proc.stderr):
        threading.Thread(target=pipe.read, daemon=True).start()
    return proc, url


@contextlib.contextmanager
def nginx(upstreams: List[str]) -> Iterator[str]:
    """nginx with docs/district.md's configuration, unprivileged, in a folder of its own."""
    text = (ROOT / "docs" / "district.md").read_text(encoding="utf-8")
    site = text.split("```nginx\n", 1)[1].split("```", 1)[0]
    folder = tempfile.mkdtemp(prefix="xedullm-bench-nginx-")
    os.chmod(folder, 0o755)
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    for doc_port, url in zip(("7861", "7862"), upstreams):
        site = site.replace(f"127.0.0.1:{doc_port}", url.split("//", 1)[1])
    if len(upstreams) == 1:
        site = "\n".join(line for line in site.splitlines() if "127.0.0.1:7862" not in line)
    temp = "\n".join(f"  {k}_temp_path {folder}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    Path(folder, "site.conf").write_text(site, encoding="utf-8")
    Path(folder, "nginx.conf").write_text(
        f"daemon off;\nworker_processes 1;\nworker_rlimit_nofile 8192;\npid {folder}/nginx.pid;\n"
        f"error_log {folder}/error.log warn;\nevents {{ worker_connections 4096; }}\n"
        f"http {{\n  access_log off;\n{temp}\n  include {folder}/site.conf;\n}}\n", encoding="utf-8")
    root = os.geteuid() == 0
    if root:
        shutil.chown(folder, "nobody")
    proc = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-p", folder, "-c", f"{folder}/nginx.conf",
                             "-e", f"{folder}/error.log"], user="nobody" if root else None)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


# -- 1. the store alone -------------------------------------------------------------------------
def store_alone(pg_url: str, n: int) -> List[str]:
    from xedullm.server.classroom.room import today
    from xedullm.server.store import open_store
    from xedullm.server.store.contract import Claim, LedgerRow

    day = today()

    def one_request(store, i):
        now = time.time()
        claim = Claim(id=uuid.uuid4().hex, who=f"s{i % 40}", now=now, day=day, estimate=100,
                      class_budget=10 ** 12, who_budget=10 ** 10, rpm=10 ** 6, concurrent=50, hold_for=30)
        assert store.claim(claim).granted
        store.record(LedgerRow(started=now, day=day, latency=0.1, who=claim.who, model="m", stream=True,
                               status=200, outcome="ok", admitted=True, prompt_tokens=10, completion_tokens=20,
                               total_tokens=30, charged=30), claim.id)

    lines = ["| store | claim + record, 1 thread (ms per request) | 4 threads (requests/s) |", "|---|---:|---:|"]
    with tempfile.TemporaryDirectory() as folder:
        for label, url in (("SQLite (WAL, synchronous=NORMAL)", f"sqlite:///{folder}"),
                           ("PostgreSQL 15 (fsync on, localhost TCP)", new_schema(pg_url))):
            store = open_store(url)
            try:
                for i in range(50):
                    one_request(store, i)
                start = time.perf_counter()
                for i in range(n):
                    one_request(store, i)
                single = (time.perf_counter() - start) / n * 1000
                threads = [threading.Thread(target=lambda k=k: [one_request(store, k * n + i) for i in range(n // 4)])
                           for k in range(4)]
                start = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                rate = (n // 4 * 4) / (time.perf_counter() - start)
            finally:
                store.close()
            lines.append(f"| {label} | {single:.2f} | {rate:.0f} |")
    return lines


# -- 2. streams ---------------------------------------------------------------------------------
async def keep_streaming(url: str, students: int, duration: float):
    limits = httpx.Limits(max_connections=students, max_keepalive_connections=students)
    results: List[dict] = []
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(120, connect=30), limits=limits) as http:
        stop_at = time.perf_counter() + duration

        async def student(i):
            k = 0
            while time.perf_counter() < stop_at:
                results.append(await one_student(http, i * 10000 + k))
                k += 1

        started = time.perf_counter()
        await asyncio.gather(*(student(i) for i in range(students)))
        return results, time.perf_counter() - started


def stream_row(label: str, url: str, students: int, duration: float, pids: List[int]) -> str:
    asyncio.run(keep_streaming(url, 4, 1.0))   # warm-up
    cpu0 = [cpu_seconds(p) for p in pids]
    results, wall = asyncio.run(keep_streaming(url, students, duration))
    cpu = sum(cpu_seconds(p) - c for p, c in zip(pids, cpu0))
    good = [r for r in results if r["ok"]]
    firsts = [r["first"] for r in good]
    errors = Counter(r["why"] for r in results if not r["ok"])
    shown = ", ".join(f"{n}× {why}" for why, n in errors.most_common(3)) or "0"
    return (f"| {label} | {len(good) / wall:.1f} | {shown} | {pct(firsts, 50) * 1000:.0f} / "
            f"{pct(firsts, 99) * 1000:.0f} | {cpu:.1f} |")


# -- 3. the burst -------------------------------------------------------------------------------
async def burst(url: str, n: int) -> Counter:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        async def one(i):
            r = await http.post("/v1/chat/completions", json={
                "messages": [{"role": "user", "content": BURST_QUESTION}], "max_tokens": 3})
            return "ok" if r.status_code == 200 else r.json()["error"]["code"]

        return Counter(await asyncio.gather(*(one(i) for i in range(n))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--store-requests", type=int, default=2000)
    parser.add_argument("--token-delay", type=float, default=0.05)
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    print(f"_load average before: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}_\n")
    with postgres() as pg:
        pg_url = pg["XEDULLM_TEST_POSTGRES_URL"]
        print("### Store work per admitted request\n")
        print("\n".join(store_alone(pg_url, args.store_requests)), flush=True)

        fake = spawn([sys.executable, "-m", "xedullm.testing", "openai", "--flavor", "deepseek", "--api-key", KEY,
                      "--token-delay", str(args.token_delay)], env)
        procs = [fake]
        try:
            base = first_line_matching(fake, r"(http://\S+/v1)")
            for pipe in (fake.stdout, fake.stderr):
                threading.Thread(target=pipe.read, daemon=True).start()
            print(f"\n### {args.students} students streaming for {args.duration:g} s, each asking again at once "
                  f"(~{len(QUESTION) // 4 + 3} events per answer, {args.token_delay}s apart; {os.cpu_count()} cores "
                  f"shared by servers, nginx, PostgreSQL, the fake provider and the class)\n")
            print("| setup | answers/s | errors | first chunk p50 / p99 (ms) | servers' CPU s |")
            print("|---|---:|---:|---:|---:|")
            with tempfile.TemporaryDirectory() as folder:
                lite, lite_url = serve(base, f"sqlite:///{folder}")
                procs.append(lite)
                print(stream_row("1 server, SQLite, direct (baseline)", lite_url, args.students, args.duration,
                                 [lite.pid]), flush=True)
                lite.terminate()
                lite.wait(timeout=10)
            one, one_url = serve(base, new_schema(pg_url))
            procs.append(one)
            print(stream_row("1 server, PostgreSQL, direct", one_url, args.students, args.duration, [one.pid]),
                  flush=True)
            with nginx([one_url]) as front:
                print(stream_row("1 server, PostgreSQL, behind nginx", front, args.students, args.duration,
                                 [one.pid]), flush=True)
            one.terminate()
            store = new_schema(pg_url)
            pair = [serve(base, store) for _ in range(2)]
            procs += [p for p, _ in pair]
            with nginx([u for _, u in pair]) as front:
                print(stream_row("2 servers, one PostgreSQL, behind nginx", front, args.students, args.duration,
                                 [p.pid for p, _ in pair]), flush=True)
            for p, _ in pair:
                p.terminate()

            budget_answers = 400
            store = new_schema(pg_url)
            pair = [serve(base, store, "--daily-budget", str(budget_answers * BURST_COST)) for _ in range(2)]
            procs += [p for p, _ in pair]
            with nginx([u for _, u in pair]) as front:
                started = time.perf_counter()
                outcomes = asyncio.run(burst(front, args.burst))
                wall = time.perf_counter() - started
            from xedullm.server.classroom.room import today
            from xedullm.server.store import open_store

            ledger = open_store(store)
            try:
                used = ledger.used(today())
                rows = sum(1 for _ in ledger.rows())
            finally:
                ledger.close()
            print(f"\n_load average after: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}_")
            print(f"\n### A burst of {args.burst} requests over 2 servers behind nginx, budget "
                  f"{budget_answers * BURST_COST} tokens = {budget_answers} answers of {BURST_COST}\n")
            print("| answered | refused (by code) | tokens used / budget | ledger rows | wall (s) |")
            print("|---:|---|---:|---:|---:|")
            refused = ", ".join(f"{n}× {code}" for code, n in sorted(outcomes.items()) if code != "ok")
            print(f"| {outcomes['ok']} | {refused} | {used} / {budget_answers * BURST_COST} | {rows} | {wall:.1f} |")
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
                    p.wait(timeout=10)


if __name__ == "__main__":
    main()
