"""Section 1: how long a fresh process takes, and how much memory, to import each library
and to answer one question (import + construct + one non-stream answer from the fake)."""
from __future__ import annotations

import subprocess
import tempfile
import time
from typing import Dict, List, Tuple

from . import report
from .envs import ENVS
from .fixture import KEY, MODEL, QUESTION, REPLY, start_fake
from .procs import clean_env

# (row label, venv, import statement)
IMPORTS: List[Tuple[str, str, str]] = [
    ("xedullm", "xedullm", "from xedullm import Client"),
    ("XEduLLM 2.0.0", "xedu", "from XEdu.LLM import Client"),
    ("openai SDK", "openai", "import openai"),
    ("LiteLLM", "litellm", "import litellm"),
]

_ARGS = "import os\ne = os.environ\n"
ONE_SHOT: Dict[str, str] = {
    "xedullm": _ARGS + "from xedullm import Client\n"
               "c = Client(base_url=e['B_URL'], api_key=e['B_KEY'], model=e['B_MODEL'], verbose=False)\n"
               "a = c.inference(e['B_Q'])\n",
    "xedu": _ARGS + "from XEdu.LLM import Client\n"
            "c = Client(base_url=e['B_URL'], api_key=e['B_KEY'], model=e['B_MODEL'])\n"
            "a = c.inference(e['B_Q'])\n",
    "openai": _ARGS + "from openai import OpenAI\n"
              "c = OpenAI(base_url=e['B_URL'], api_key=e['B_KEY'])\n"
              "a = c.chat.completions.create(model=e['B_MODEL'], messages=[{'role': 'user', "
              "'content': e['B_Q']}]).choices[0].message.content\n",
    "litellm": _ARGS + "import litellm\n"
               "a = litellm.completion(model='openai/' + e['B_MODEL'], api_base=e['B_URL'], "
               "api_key=e['B_KEY'], messages=[{'role': 'user', 'content': e['B_Q']}]).choices[0].message.content\n",
}
_CHECK = "assert a == e['B_REPLY'], 'wrong answer'\n"


# The child reports its own VmHWM: ru_maxrss would also count the pages of the (larger)
# benchmark process it was forked from, which Linux carries across exec.
_PEAK = ("\nimport sys as _s\n_s.stderr.write('\\nBENCH-VMHWM ' + "
         "open('/proc/self/status').read().split('VmHWM:')[1].split()[0] + '\\n')\n")


def measure(python: str, code: str, env: Dict[str, str]) -> Tuple[float, float]:
    """(wall seconds, peak RSS MiB) of ``python -c code`` in a fresh process."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        done = subprocess.run([python, "-c", code + _PEAK], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=err)
        wall = time.perf_counter() - start
        err.seek(0)
        text = err.read().decode(errors="replace")
    if done.returncode != 0 or "BENCH-VMHWM " not in text:
        raise RuntimeError(f"{python} -c failed:\n{code}\n{text[-2000:]}")
    return wall, int(text.rsplit("BENCH-VMHWM ", 1)[1].split()[0]) / 1024


def run(repeats: int, log=print) -> str:
    env = clean_env()
    rows = {label: ([], []) for label, _, _ in IMPORTS}
    shots = {label: ([], []) for label, _, _ in IMPORTS}
    baseline: Tuple[List[float], List[float]] = ([], [])
    with start_fake(0.0, "fake-startup") as fake:
        shot_env = dict(env, B_URL=f"{fake.url}/v1", B_KEY=KEY, B_MODEL=MODEL, B_Q=QUESTION,
                        B_REPLY=REPLY)
        # One untimed pass writes bytecode caches, as any second run by a user would find them.
        for _, venv, stmt in IMPORTS:
            measure(ENVS[venv].python, stmt, env)
            measure(ENVS[venv].python, ONE_SHOT[venv] + _CHECK, shot_env)
        for i in range(repeats):
            log(f"  start-up round {i + 1}/{repeats}")
            wall, rss = measure(ENVS["xedullm"].python, "pass", env)
            baseline[0].append(wall)
            baseline[1].append(rss)
            # Round-robin, so a burst of load from elsewhere hits every contestant alike.
            for label, venv, stmt in IMPORTS:
                wall, rss = measure(ENVS[venv].python, stmt, env)
                rows[label][0].append(wall * 1000)
                rows[label][1].append(rss)
                wall, rss = measure(ENVS[venv].python, ONE_SHOT[venv] + _CHECK, shot_env)
                shots[label][0].append(wall * 1000)
                shots[label][1].append(rss)
    blocks = []
    for title, data in (("Import `Client` (or the library) in a fresh process", rows),
                        ("One-shot script: import, construct, one non-stream answer from the fake",
                         shots)):
        best_ms = report.best_peer({k: report.median(v[0]) for k, v in data.items()}, True)
        best_mib = report.best_peer({k: report.median(v[1]) for k, v in data.items()}, True)
        lines = [[label, report.spread(ms, 0), report.ratio(report.median(ms), best_ms),
                  report.spread(mib, 1), report.ratio(report.median(mib), best_mib)]
                 for label, (ms, mib) in data.items()]
        lines.append(["(bare `python -c pass`)", report.spread([w * 1000 for w in baseline[0]], 0),
                      "", report.spread(baseline[1], 1), ""])
        blocks.append(f"**{title}** — {repeats} runs each, median (min–max); "
                      f"ratio = value ÷ best peer, lower is better\n\n" + report.table(
                          ["contestant", "wall ms", "÷ best peer", "peak RSS MiB", "÷ best peer"],
                          lines))
    return report.join(blocks)
