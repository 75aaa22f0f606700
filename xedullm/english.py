"""English text with a count in it: "1 request", "2 requests" (the Chinese side needs no plural)."""
from __future__ import annotations

from typing import Optional


def counted(n: int, noun: str, plural: Optional[str] = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
