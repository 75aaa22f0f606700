"""Whether this CPU has the instructions the local engine's library was built for.

xllamacpp's x86-64 wheels are built with AVX2 as their baseline (``get_system_info()`` reports
``AVX2 = 1`` on every CPU; checked 2026-12-07 with xllamacpp 2026.10): on an older CPU without
AVX2 (some school PCs from before ~2013, low-end Celeron/Pentium/Atom models) importing it ends
the process with an illegal instruction. Checking first turns that crash into advice.
"""
from __future__ import annotations

import platform
import sys
from typing import Optional

#: runtime -> the x86-64 instruction set its ready-made binaries need
NEEDS = {"xllamacpp": "AVX2"}
_PF_AVX2_INSTRUCTIONS_AVAILABLE = 40   # IsProcessorFeaturePresent, Windows 10+


def _is_x86_64() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "x64")


def linux_flags_have_avx2(cpuinfo: str) -> Optional[bool]:
    """From /proc/cpuinfo's text: True/False, or None when it lists no flags at all."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return "avx2" in line.split(":", 1)[-1].split()
    return None


def has_avx2() -> Optional[bool]:
    """True/False where the system says, None where it cannot tell (then we just try)."""
    try:
        if sys.platform.startswith("linux"):
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                return linux_flags_have_avx2(f.read())
        if sys.platform == "win32":
            import ctypes

            present = ctypes.windll.kernel32.IsProcessorFeaturePresent(_PF_AVX2_INSTRUCTIONS_AVAILABLE)
            # Windows before 10 does not know feature 40 and answers 0: unknown, not "no".
            return True if present else None
        if sys.platform == "darwin":
            import subprocess

            out = subprocess.run(["sysctl", "-n", "machdep.cpu.leaf7_features"], capture_output=True,
                                 text=True, timeout=5).stdout
            return "AVX2" in out.upper().split() if out.strip() else None
    except (OSError, ValueError, AttributeError):
        return None
    return None


def missing_instructions(runtime: str) -> Optional[str]:
    """The instruction set ``runtime`` needs and this CPU lacks, e.g. "AVX2"; else None."""
    needed = NEEDS.get(runtime)
    if needed is None or not _is_x86_64():
        return None
    return needed if has_avx2() is False else None
