"""``python -m bench``: set up the contestants' environments, run the sections, print the
tables and write them, with this machine's description, to bench/RESULTS.md.

    python -m bench                          # everything (about 11 min on 2 cores)
    python -m bench --quick                  # a short smoke run (written to bench/.work/)
    python -m bench --only startup,server    # some sections; the others keep their last tables
    python -m bench --only profile           # where xedullm spends its time (not in the default run)
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

from . import envs
from .procs import BENCH, WORK

SECTIONS = ("startup", "overhead", "server", "local")
EXTRA = ("profile",)
TITLES = {"startup": "1. Start-up", "overhead": "2. Client overhead per request",
          "server": "3. Classroom server", "local": "4. Local model", "profile": "Profile of xedullm"}
NEEDS = {"startup": ["xedullm", "xedu", "openai", "litellm"],
         "overhead": ["xedullm", "xedu", "openai", "litellm"],
         "server": ["xedullm", "litellm"], "local": ["xedullm"], "profile": ["xedullm"]}


def _sections(quick: bool) -> Dict[str, Callable[[], str]]:
    from . import local, overhead, profile, server, startup

    return {
        "startup": lambda: startup.run(repeats=2 if quick else 7),
        "overhead": lambda: overhead.run(rounds=1 if quick else 3, quick=quick),
        # Rounds enough that one slow minute of these shared cores moves a median little: the
        # floor's own added latency is half a millisecond, and one round's p50 moves by a third.
        "server": lambda: server.run(rounds=1 if quick else 9, count=20 if quick else 300,
                                     load_rounds=1 if quick else 3, duration=3 if quick else 8),
        "local": lambda: local.run(rounds=1 if quick else 2, quick=quick),
        "profile": lambda: profile.run(quick),
    }


def machine() -> Dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    commit = subprocess.run(["git", "-C", str(BENCH.parent), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "?"
    return {"CPU": cpu, "cores": str(os.cpu_count()), "RAM": f"{mem_kib / 1024 / 1024:.1f} GiB",
            "OS": f"{platform.system()} {platform.release()}",
            "Python": platform.python_version(), "xedullm commit": commit}


def _load() -> str:
    return "{:.2f} / {:.2f} / {:.2f}".format(*os.getloadavg())


def _versions(names: List[str]) -> str:
    parts = []
    for name in names:
        found = envs.versions(name)
        parts.append(", ".join(f"{d} {v}" for d, v in found.items() if v != "-"))
    return "; ".join(parts)


def _merge(path: Path, header: str, blocks: Dict[str, str]) -> None:
    """Replace the run's sections in ``path`` and keep the others from earlier runs."""
    text = path.read_text() if path.exists() else ""
    if "<!-- machine -->" in text:
        text = re.sub(r"<!-- machine -->.*?<!-- /machine -->", lambda _: header, text, flags=re.S)
    else:
        text = "# Benchmarks: xedullm against its peers\n\n" + header + "\n"
    for name in SECTIONS + EXTRA:
        if name not in blocks:
            continue
        block = f"<!-- {name} -->\n{blocks[name]}\n<!-- /{name} -->"
        pattern = rf"<!-- {name} -->.*?<!-- /{name} -->"
        if re.search(pattern, text, flags=re.S):
            text = re.sub(pattern, lambda _: block, text, flags=re.S)
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="short smoke run; results go to bench/.work/RESULTS-quick.md")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections: {', '.join(SECTIONS + EXTRA)}")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS + EXTRA]
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)}")

    needed = sorted({env for s in chosen for env in NEEDS[s]}, key=list(envs.ENVS).index)
    print("Environments:", flush=True)
    envs.ensure(needed, log=lambda m: print(m, flush=True))
    info = machine()
    command = "python -m bench" + (" --quick" if args.quick else "") + (
        f" --only {','.join(chosen)}" if args.only != ",".join(SECTIONS) else "")
    print("\n".join(f"{k}: {v}" for k, v in info.items()), flush=True)

    runners = _sections(args.quick)
    blocks: Dict[str, str] = {}
    failed = []
    for name in chosen:
        print(f"\n## {TITLES[name]}", flush=True)
        before, started = _load(), time.time()
        try:
            body = runners[name]()
        except Exception as exc:   # one broken contestant must not lose the other sections
            failed.append(name)
            body = f"**This section failed:**\n\n```\n{str(exc)[-3000:]}\n```"
        stamp = (f"_Measured {time.strftime('%Y-%m-%d %H:%M', time.localtime(started))} in "
                 f"{time.time() - started:.0f} s with `{command}`; load average (1/5/15 min) "
                 f"before {before}, after {_load()}. Versions: {_versions(NEEDS[name])}._")
        blocks[name] = f"## {TITLES[name]}\n\n{stamp}\n\n{body}"
        print(f"\n{stamp}\n\n{body}", flush=True)

    header = ("<!-- machine -->\n"
              "Reproduce with `python -m bench` (sets up `bench/.venvs/` once, then needs no "
              "network). Wall-clock figures on a shared 2-core machine are noisy: each section "
              "gives the load average around it, and repeated runs as median (min–max).\n\n"
              + "\n".join(f"- **{k}**: {v}" for k, v in info.items()) + "\n<!-- /machine -->")
    target = WORK / "RESULTS-quick.md" if args.quick else BENCH / "RESULTS.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    _merge(target, header, blocks)
    print(f"\nwritten: {target.relative_to(BENCH.parent)}", flush=True)
    if failed:
        print(f"failed sections: {', '.join(failed)} (logs in bench/.work/)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
