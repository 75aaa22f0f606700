"""Student tokens: made here, shown once, kept only as a hash.

A token is short enough to copy from a paper slip: 8 characters (6 to 12 on request) from an
alphabet without 0/o, 1/l/i, typed in either case. Eight of 31 characters are about 40 bits:
far more than anyone can try over a classroom network in a term, while a plain SHA-256 keeps
the store from holding the tokens themselves (a slow password hash would only slow every
request down). Tokens made by older versions (``xs-`` and 32 characters) keep working.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import re
import secrets
import time
from typing import Any, Iterable, List, Optional, Tuple

from ...errors import ConfigurationError
from ..store.contract import Store, TokenLimits

PREFIX = "xs-"   # tokens of older versions
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
LENGTH = 8
LENGTHS = range(6, 13)          # what is looked up (tokens of older versions may be 6 or 7 long)
# The shortest token made now. Wrong keys are throttled per address (guess_throttle.py) to at
# most ~35,000 guesses a year per address; against a batch of 500, 31**8 / 500 / 35,000 / 256 is
# ~190 years even for 256 addresses guessing together (docs/reliability.md, issue 27).
NEW_LENGTHS = range(8, 13)
BATCH_MAX = 500
RESERVED_NAMES = ("anonymous",)
RESERVED_PREFIXES = ("browser:", "code:", "ip:")   # names the server gives callers without a token
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,64}")


def new_token(length: int = LENGTH) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def looks_like_token(key: str) -> bool:
    """Whether ``key`` has a token's shape (and is worth looking up in the store)."""
    if key.startswith(PREFIX):
        return True
    return len(key) in LENGTHS and all(c in ALPHABET for c in key.lower())


def digest(token: str) -> str:
    # Short tokens are read off paper: 'AB3K' and 'ab3k' are the same token.
    text = token if token.startswith(PREFIX) else token.strip().lower()
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


def check_length(length: Any) -> int:
    if isinstance(length, bool) or not isinstance(length, int) or length not in NEW_LENGTHS:
        raise ConfigurationError(f"令牌长度应是 {NEW_LENGTHS[0]} 到 {NEW_LENGTHS[-1]} 个字符，收到 {length!r}。/ "
                                 f"A token is {NEW_LENGTHS[0]} to {NEW_LENGTHS[-1]} characters long; got {length!r}.")
    return length


def create_token(store: Store, name: str, limits: TokenLimits, length: int = LENGTH) -> str:
    """Make a token for ``name`` and keep its hash; the token itself is returned, shown once."""
    token = new_token(check_length(length))
    try:
        store.add_token(name, digest(token), limits, time.time())
    except ValueError:
        raise ConfigurationError(f"已经有叫“{name}”的令牌；换个名字，或先停用它：xedullm tokens revoke {name} / "
                                 f"A token named '{name}' already exists; pick another name or revoke it first: "
                                 f"xedullm tokens revoke {name}") from None
    return token


def create_batch(store: Store, prefix: str, count: Any, limits: TokenLimits,
                 length: int = LENGTH) -> List[Tuple[str, str]]:
    """``count`` tokens named ``prefix`` + a number (学生01, 学生02, …), skipping names in use,
    so a second batch goes on from where the first ended. Returns (name, token) pairs."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= BATCH_MAX:
        raise ConfigurationError(f"一次可以创建 1 到 {BATCH_MAX} 个令牌，收到 {count!r}。/ "
                                 f"A batch is 1 to {BATCH_MAX} tokens; got {count!r}.")
    prefix = (prefix or "").strip()
    check_name(prefix + "1")
    check_length(length)
    taken = {t.name for t in store.tokens() if t.revoked is None}
    width = max(2, len(str(count)))
    made: List[Tuple[str, str]] = []
    number = 0
    while len(made) < count:
        number += 1
        name = f"{prefix}{number:0{width}d}"
        if name not in taken:
            made.append((check_name(name), create_token(store, name, limits, length)))
    return made


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name.strip()) or name.strip() in RESERVED_NAMES \
            or name.strip().startswith(RESERVED_PREFIXES):
        raise ConfigurationError(
            "令牌名字应是 1 到 64 个字符（学生或小组的名字），不能是 anonymous，也不能以 browser:、code: 或 ip: 开头。/ "
            "A token name is 1 to 64 characters (a student's or group's name), not 'anonymous' and not "
            "starting with 'browser:', 'code:' or 'ip:'.")
    return name.strip()


def parse_expires(text: Optional[str]) -> Optional[float]:
    """'2026-12-31' -> the end of that day, local time, as epoch seconds."""
    if text is None or text == "":
        return None
    try:
        day = _dt.date.fromisoformat(str(text).strip())
    except ValueError:
        raise ConfigurationError(f"过期日期应写成 2026-12-31 这样，收到 {text!r}。/ "
                                 f"Write the expiry date like 2026-12-31; got {text!r}.") from None
    return time.mktime((day + _dt.timedelta(days=1)).timetuple())


def expires_text(expires: Optional[float]) -> Optional[str]:
    """The last day a token works, as 'YYYY-MM-DD'."""
    if expires is None:
        return None
    return time.strftime("%Y-%m-%d", time.localtime(expires - 1))


def limits_from(daily_tokens: Any = None, rpm: Any = None, concurrent: Any = None,
                models: Optional[Iterable[str]] = None, expires: Any = None) -> TokenLimits:
    """Limits from CLI or admin-page input, checked; '' and None mean 'no limit'."""
    models = tuple(m.strip() for m in (models or ()) if isinstance(m, str) and m.strip())
    return TokenLimits(daily_tokens=positive(daily_tokens, "daily_tokens"), rpm=positive(rpm, "rpm"),
                       concurrent=positive(concurrent, "concurrent"), models=models,
                       expires=parse_expires(expires))


def positive(value: Any, name: str) -> Optional[int]:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or isinstance(value, float) or number < 1:
        raise ConfigurationError(f"{name} 应是正整数（或留空表示不限），收到 {value!r}。/ "
                                 f"{name} must be a positive whole number (or empty for no limit); got {value!r}.")
    return number
