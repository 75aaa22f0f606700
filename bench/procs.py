"""Processes the benchmark starts: free ports, readiness, and what /proc says about them."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

BENCH = Path(__file__).resolve().parent
WORK = BENCH / ".work"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Peers must stay offline: LiteLLM would otherwise fetch its model cost map and send telemetry.
OFFLINE_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY_DISABLED": "true",
               "LITELLM_LOG": "ERROR", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def clean_env(**extra: str) -> Dict[str, str]:
    """The environment for a contestant: ours minus anything that points at another venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP")
           and not k.endswith("_API_KEY")}
    env.update(OFFLINE_ENV)
    # Start-up is measured as users meet it: with compiled bytecode cached.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_ok(port: int, path: str, headers: Optional[Dict[str, str]] = None,
            timeout: float = 1.0) -> bool:
    """One GET on 127.0.0.1; True on a 2xx answer."""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            status = sock.recv(64)
    except OSError:
        return False
    return status[9:10] == b"2"


class Server:
    """A server process started for the run; ``ready_seconds`` is spawn-to-first-2xx."""

    def __init__(self, name: str, cmd: Sequence[str], port: int, ready_path: str,
                 env: Dict[str, str], headers: Optional[Dict[str, str]] = None,
                 timeout: float = 120.0) -> None:
        self.name, self.port = name, port
        WORK.mkdir(parents=True, exist_ok=True)
        self.log_path = WORK / f"{name}.log"
        log = open(self.log_path, "wb")
        start = time.perf_counter()
        self.proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        while not http_ok(port, ready_path, headers):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited during start-up; see {self.log_path}\n"
                                   + self.log_path.read_text(errors="replace")[-3000:])
            if time.perf_counter() - start > timeout:
                self.stop()
                raise RuntimeError(f"{name} did not answer {ready_path} within {timeout:.0f} s; "
                                   f"see {self.log_path}")
            time.sleep(0.01)
        self.ready_seconds = time.perf_counter() - start

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> List[int]:
        """The server and its descendants (LiteLLM's CLI may run the proxy in a child)."""
        found, frontier = [self.proc.pid], [self.proc.pid]
        while frontier:
            pid = frontier.pop()
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            found += [int(c) for c in children]
            frontier += [int(c) for c in children]
        return found

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK   # utime + stime
        return total

    def memory_mib(self, field: str) -> float:
        """VmRSS (now) or VmHWM (peak) summed over the server's processes, in MiB."""
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
            except OSError:
                continue
        return total / 1024

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 2)   # SIGINT: let it shut down like Ctrl-C
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def run_json(cmd: Sequence[str], env: Dict[str, str], timeout: float = 900) -> dict:
    """Run a worker that prints one JSON object as its last stdout line."""
    done = subprocess.run(list(cmd), capture_output=True, text=True, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd[:3]))} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
