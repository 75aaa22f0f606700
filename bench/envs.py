"""One virtual environment per contestant, under bench/.venvs/, so no peer ever becomes a
dependency of xedullm and every contestant imports only what it installs itself.

Installing is idempotent: an environment whose recorded spec matches and whose pinned
packages are present is left alone, so measuring never needs the network.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENVS = BENCH / ".venvs"
# Where a prebuilt llama-cpp-python wheel may wait (building it takes ~10 minutes on 2 cores).
WHEEL_DIRS = [Path("/tmp/bg/wheels")]

# Newer releases move the proxy into a separate `litellm-proxy` distribution the registry here
# does not carry; 1.100.0 is a recent release whose `[proxy]` extra installs on its own.
LITELLM_VERSION = "1.100.0"
OPENAI_VERSION = "3.57.0"
XEDU_VERSION = "2.0.0"
LLAMA_CPP_VERSION = "0.3.36"


@dataclass(frozen=True)
class Env:
    name: str
    # Each entry is one pip invocation's arguments, run in order.
    steps: Tuple[Tuple[str, ...], ...]
    # Distribution names whose versions the report prints.
    shows: Tuple[str, ...]
    # Files whose contents belong to the spec (our own dependency list): a change reinstalls.
    watches: Tuple[Path, ...] = ()

    @property
    def path(self) -> Path:
        return VENVS / self.name

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    def spec_hash(self) -> str:
        digest = hashlib.sha256(json.dumps(self.steps).encode())
        for path in self.watches:
            digest.update(path.read_bytes())
        return digest.hexdigest()[:16]


ENVS: Dict[str, Env] = {
    env.name: env for env in [
        # Ours with the `local` extra (xllamacpp), plus llama-cpp-python: the engine's previous
        # runtime, still the fallback where xllamacpp has no wheel, measured side by side.
        Env("xedullm", (
            ("-e", f"{REPO}[local]"),
            # Not ours any more, but the floors are: the bare httpx pass-through and raw httpx.
            ("httpx",),
            (f"llama-cpp-python=={LLAMA_CPP_VERSION}",),
        ), ("xedullm", "urllib3", "aiohttp", "httpx", "starlette", "uvicorn", "xllamacpp", "llama_cpp_python"),
            watches=(REPO / "pyproject.toml",)),
        # XEduLLM 2.0.0 declares no pins that still install on Python 3.11: numpy<2 and six
        # are what its import needs beyond its own requirements, and holidays what one import
        # in about 170 wants (XEdu's greeting then pip-installs it, which fails offline).
        Env("xedu", (
            (f"xedu-python=={XEDU_VERSION}", "numpy<2", "six", "requests", "holidays"),
        ), ("xedu-python", "numpy", "requests")),
        Env("openai", ((f"openai=={OPENAI_VERSION}",),), ("openai", "httpx", "httpx2")),
        Env("litellm", ((f"litellm[proxy]=={LITELLM_VERSION}",),), ("litellm", "openai", "httpx")),
    ]
}


def _ready(env: Env) -> bool:
    marker = env.path / "bench-spec.txt"
    return (Path(env.python).exists() and marker.exists()
            and marker.read_text().strip() == env.spec_hash())


def ensure(names: List[str], log=print) -> None:
    """Create and fill the named environments that are missing or out of date."""
    VENVS.mkdir(parents=True, exist_ok=True)
    for name in names:
        env = ENVS[name]
        if _ready(env):
            continue
        log(f"  setting up bench/.venvs/{name} (once; needs the network) …")
        if not Path(env.python).exists():
            venv.EnvBuilder(with_pip=True, clear=True).create(env.path)
        find_links = [a for d in WHEEL_DIRS if d.is_dir() for a in ("--find-links", str(d))]
        for step in env.steps:
            cmd = [env.python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                   *find_links, *step]
            done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if done.returncode != 0:
                sys.stderr.write(done.stdout[-4000:])
                raise SystemExit(f"pip failed in bench/.venvs/{name}: {' '.join(step)}")
        (env.path / "bench-spec.txt").write_text(env.spec_hash() + "\n")


def versions(name: str) -> Dict[str, str]:
    """Installed versions of the distributions the report names, read without importing them."""
    env = ENVS[name]
    code = ("import json,sys\nfrom importlib import metadata\nout={}\n"
            "for d in sys.argv[1:]:\n"
            "    try: out[d]=metadata.version(d)\n"
            "    except metadata.PackageNotFoundError: out[d]='-'\n"
            "print(json.dumps(out))")
    done = subprocess.run([env.python, "-c", code, *env.shows], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)
