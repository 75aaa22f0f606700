"""Keys: cleaning, masking, redaction and resolution (argument > environment > key store)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Iterable, Optional

from .catalog import Provider


@dataclass(frozen=True)
class Credentials:
    api_key: Optional[str] = field(default=None, repr=False)
    secret_key: Optional[str] = field(default=None, repr=False)
    source: str = "none"   # 'argument' | 'env:NAME' | 'store' | 'none'

    def __repr__(self) -> str:
        return (f"Credentials(api_key={mask_key(self.api_key)!r}, "
                f"secret_key={mask_key(self.secret_key)!r}, source={self.source!r})")


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


def _first_env(names: Iterable[str]):
    for name in names:
        value = clean_key(os.environ.get(name))
        if value:
            return name, value
    return None, None


def resolve_credentials(provider: Provider, api_key: Optional[str] = None,
                        secret_key: Optional[str] = None) -> Credentials:
    """Find the key for ``provider``: explicit argument, then environment, then the key store."""
    api_key, secret_key = clean_key(api_key), clean_key(secret_key)
    if api_key:
        return Credentials(api_key, secret_key, "argument")
    env_name, env_key = _first_env(provider.key_env)
    if env_key:
        _, env_secret = _first_env(provider.secret_env)
        return Credentials(env_key, secret_key or env_secret, f"env:{env_name}")
    return Credentials(None, secret_key, "none")
