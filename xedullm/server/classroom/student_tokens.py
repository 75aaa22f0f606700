"""Student tokens: made here, shown once, kept only as a hash.

A token is random (24 bytes), so a plain SHA-256 of it is as hard to reverse as the token is
to guess; a slow password hash would only slow every request down.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import re
import secrets
import time
from typing import Any, Iterable, Optional

from ...errors import ConfigurationError
from ..store.contract import Store, TokenLimits

PREFIX = "xs-"
RESERVED_NAMES = ("anonymous",)
RESERVED_PREFIXES = ("browser:", "code:", "ip:")   # names the server gives callers without a token
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,64}")


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(24)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def create_token(store: Store, name: str, limits: TokenLimits) -> str:
    """Make a token for ``name`` and keep its hash; the token itself is returned, shown once."""
    token = new_token()
    try:
        store.add_token(name, digest(token), limits, time.time())
    except ValueError:
        raise ConfigurationError(f"已经有叫“{name}”的令牌；换个名字，或先停用它：xedullm tokens revoke {name} / "
                                 f"A token named '{name}' already exists; pick another name or revoke it first: "
                                 f"xedullm tokens revoke {name}") from None
    return token


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
