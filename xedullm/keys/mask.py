"""Keys as text: cleaning what copy-paste adds, masking for display, redaction from output."""
from __future__ import annotations

import base64
import re
from typing import Iterable, List, Optional, Tuple
from urllib.parse import quote


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


# A run of this many characters of a key is treated as the key: providers echo keys partly
# masked ("sk-abc123…"), and a random 10-character run never occurs in ordinary text.
FRAGMENT = 10


def redact(text: str, secrets: Iterable[Optional[str]]) -> str:
    """Replace every secret in ``text`` with its mask: also in another case, URL- or
    base64-encoded, and any run of :data:`FRAGMENT` or more of its characters."""
    spans: List[Tuple[int, int, str]] = []
    folded = _fold(text)
    for secret in secrets:
        if not secret or len(secret) < 4:
            continue
        for form in _forms(secret):
            spans += [(start, end, mask_key(secret)) for start, end in _runs(folded, _fold(form))]
    if not spans:
        return text
    out, at = [], 0
    for start, end, mask in sorted(spans):
        if end <= at:
            continue
        if start >= at:
            out += [text[at:start], mask]
        at = max(at, end)
    out.append(text[at:])
    return "".join(out)


def _fold(text: str) -> str:
    """Lower case, one character for one, so positions in the result are positions in ``text``."""
    folded = text.lower()
    if len(folded) == len(text):
        return folded
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def _forms(secret: str) -> List[str]:
    """How a secret may appear in text: as is, URL-encoded, and base64 at each byte alignment
    (inside 'user:key' Basic auth, say), without the edge characters its neighbours change."""
    forms = [secret, quote(secret, safe="")]
    raw = secret.encode("utf-8", "replace")
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw).decode()
        middle = encoded[4:-4] if pad else encoded[:-4]
        if len(middle) >= FRAGMENT:
            forms += [middle, middle.replace("+", "-").replace("/", "_")]
    return forms


def _runs(text: str, form: str) -> List[Tuple[int, int]]:
    """Spans of ``text`` made of runs of at least FRAGMENT characters of ``form`` (all of it
    when shorter)."""
    size = min(len(form), FRAGMENT)
    pieces = {form[i:i + size] for i in range(len(form) - size + 1)}
    found: List[Tuple[int, int]] = []
    for i in range(len(text) - size + 1):
        if text[i:i + size] in pieces:
            if found and found[-1][1] >= i:
                found[-1] = (found[-1][0], i + size)
            else:
                found.append((i, i + size))
    return found
