"""Prove, without building anything, that the `local` extra installs from ready wheels where
teachers are: for each platform and Python below, the extra's requirements are evaluated with
that platform's environment markers, and pip downloads them with --only-binary=:all: (no
source builds allowed) for that platform. Where no wheel exists (Python 3.9, 32-bit Windows)
the extra must pick llama-cpp-python instead; that is printed, not downloaded (it is built
from source there, as the README says).

Usage: python scripts/check_local_wheels.py [--python PYTHON]   (PYTHON runs pip; default: this one)
Needs the package index (pip's normal configuration). Exit 1 if any wheel is missing.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib  # type: ignore

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]

# (label, pip --platform tags, marker environment, Python versions)
PLATFORMS = [
    ("Windows x64", ["win_amd64"], {"sys_platform": "win32", "platform_machine": "AMD64"}),
    ("macOS arm64", ["macosx_14_0_arm64"], {"sys_platform": "darwin", "platform_machine": "arm64"}),
    ("macOS x86_64", ["macosx_13_0_x86_64"], {"sys_platform": "darwin", "platform_machine": "x86_64"}),
    ("Linux x86_64", ["manylinux2014_x86_64"], {"sys_platform": "linux", "platform_machine": "x86_64"}),
    ("Linux aarch64", ["manylinux2014_aarch64"], {"sys_platform": "linux", "platform_machine": "aarch64"}),
]
WHEEL_PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
# Where the extra must fall back to the source build (reported, not downloaded).
FALLBACKS = [
    ("Windows x64, Python 3.9", {"sys_platform": "win32", "platform_machine": "AMD64"}, "3.9"),
    ("Windows 32-bit", {"sys_platform": "win32", "platform_machine": "x86"}, "3.12"),
]


def local_requirements() -> list:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return [Requirement(text) for text in data["project"]["optional-dependencies"]["local"]]


def chosen(requirements: list, env: dict, python: str) -> list:
    full = dict(env, python_version=python, python_full_version=python + ".0", os_name="nt"
                if env["sys_platform"] == "win32" else "posix", implementation_name="cpython",
                platform_python_implementation="CPython", extra="local")
    return [r for r in requirements if r.marker is None or r.marker.evaluate(full)]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    requirements = local_requirements()
    failures = 0
    for label, tags, env in PLATFORMS:
        for python in WHEEL_PYTHONS:
            picked = chosen(requirements, env, python)
            names = [r.name for r in picked]
            if names != ["xllamacpp"]:
                print(f"FAIL {label} / Python {python}: the extra picks {names}, not the xllamacpp wheel")
                failures += 1
                continue
            with tempfile.TemporaryDirectory() as folder:
                command = [args.python, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                           "--implementation", "cp", "--python-version", python, "-d", folder]
                for tag in tags:
                    command += ["--platform", tag]
                done = subprocess.run(command + [str(r.specifier and f"{r.name}{r.specifier}" or r.name)
                                                 for r in picked], capture_output=True, text=True)
                got = sorted(p.name for p in Path(folder).glob("*.whl"))
            if done.returncode != 0 or not got:
                print(f"FAIL {label} / Python {python}: no wheel ({done.stderr.strip().splitlines()[-1:]})")
                failures += 1
            else:
                print(f"ok   {label} / Python {python}: {', '.join(got)}")
    for label, env, python in FALLBACKS:
        names = [r.name for r in chosen(requirements, env, python)]
        status = "ok  " if names == ["llama-cpp-python"] else "FAIL"
        failures += status == "FAIL"
        print(f"{status} {label}: falls back to {names} (built from source there)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
