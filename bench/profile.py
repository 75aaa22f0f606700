"""Where xedullm spends its time: cProfile of the client per request and of the server
under streaming load. Not a contest, so not in the default run: ``python -m bench --only profile``."""
from __future__ import annotations

import tempfile

import io
import json
import os
import pstats
import re
import subprocess

from .envs import ENVS, REPO
from .fixture import KEY, MODEL, QUESTION, REPLY, TOKEN_DELAY, start_fake
from .procs import BENCH, WORK, Server, clean_env, free_port
from .server import GATE, _loadgen, _spec

TOP = 15


def _client(requests: int) -> str:
    with start_fake(0.0, "fake-profile") as fake:
        spec = dict(url=f"{fake.url}/v1", key=KEY, model=MODEL, question=QUESTION, reply=REPLY,
                    requests=requests, top=TOP)
        done = subprocess.run([ENVS["xedullm"].python, str(BENCH / "workers" / "profile_client.py"),
                               json.dumps(spec)], capture_output=True, text=True, env=clean_env(),
                              check=True)
    return done.stdout


def _server(duration: float) -> str:
    WORK.mkdir(parents=True, exist_ok=True)
    out = WORK / "serve.prof"
    with start_fake(TOKEN_DELAY, "fake-profile-load") as fake:
        port = free_port()
        cmd = [ENVS["xedullm"].python, str(BENCH / "workers" / "profile_server.py"), str(out), "serve",
               "--base-url", f"{fake.url}/v1", "-m", MODEL, "--host", "127.0.0.1",
               "--port", str(port), "--max-concurrent", str(GATE),
               # One address plays the whole class (see server.py).
               "--max-connections-per-address", "100000", "--max-per-caller", "100000",
               "--data-dir", tempfile.mkdtemp(prefix="profile-", dir=WORK)]
        with Server("xedullm-profile", cmd, port, "/v1/models", clean_env(OPENAI_API_KEY=KEY)):
            result = _loadgen(_spec("xedullm", port, True, 50, duration=duration))
    head = (f"### server, 50 concurrent streams for {duration:.0f} s ({result['ok']} answers, "
            f"{sum(result['errors'].values())} errors)")
    parts = []
    for order, restrict, what in (("tottime", (), "by own time"),
                                  ("cumulative", (re.escape(f"{REPO / 'xedullm'}{os.sep}"),),
                                   "xedullm's functions by cumulative time")):
        text = io.StringIO()
        pstats.Stats(str(out), stream=text).sort_stats(order).print_stats(*restrict, TOP)
        parts.append(f"{head}, {what}\n\n" + text.getvalue().split("\n", 1)[1].strip() + "\n")
    return "\n".join(parts)


def run(quick: bool, log=print) -> str:
    log("  profile: client")
    client = _client(100 if quick else 500)
    log("  profile: server")
    server = _server(3 if quick else 10)
    return "```\n" + client + "\n" + server + "```"
