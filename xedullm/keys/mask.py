"""Keys as text: cleaning what copy-paste adds, masking for display, redaction from output."""
from __future__ import annotations

import re
from typing import Iterable, Optional


def clean_key(key: Optional[str]) -> Optional[str]:
    """Strip what copy-paste adds: spaces, quotes, newlines, a leading 'Bearer '."""
    if key is None:
        return None
    key = str(key).strip().strip("\"'“”‘’").strip()
    if key.lower().startswith("bearer "):
        key = key[7:].strip()
    key = re.sub(r"\s+", "", key)
    return key or None


def mask_key(key: Optional[str]) -> str:
    """'sk-or-v1-abcdef…b1c3' → 'sk-or…b1c3'. Short keys are hidden completely."""
    if not key:
        return ""
    if len(key) < 12:
        return "…" * 3
    return f"{key[:5]}…{key[-4:]}"


def redact(text: str, secrets: Iterable[Optional[str]]) -> str:
    """Replace every secret (and its URL-encoded form) in ``text`` with its mask."""
    from urllib.parse import quote

    for secret in secrets:
        if not secret or len(secret) < 4:
            continue
        for form in {secret, quote(secret, safe="")}:
            text = text.replace(form, mask_key(secret))
    return text
