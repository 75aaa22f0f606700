"""The teacher's way in to /admin: password, throttle, session cookie, same-origin checks.

- The password is compared in constant time (digests of equal length), so timing says nothing.
- Failed logins are counted per client address in the store (they survive a restart): the
  first few are free, then each further try must wait twice as long as the last, up to 15
  minutes. While a client waits, even the right password is refused, so guessing gains nothing.
- The session is a cookie ``<expiry>.<hmac>`` signed with a key derived from the store's
  secret and the password: a new password ends every old session. HttpOnly (no script reads
  it), SameSite=Strict (no other site's page sends it), Path=/admin.
- Changes need a custom header and, when the browser says where a request comes from, the same
  origin: a cross-site form or script cannot make one (and /admin answers no CORS).
"""
from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from typing import Any, Optional

from ..store.contract import LoginFailures, Store

COOKIE = "xedullm_admin"
CSRF_HEADER = "x-xedullm-admin"
SESSION_SECONDS = 12 * 3600
FREE_FAILURES = 3
FIRST_WAIT = 30.0
LONGEST_WAIT = 15 * 60.0


def password_matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(hashlib.sha256(given.encode("utf-8", "replace")).digest(),
                               hashlib.sha256(expected.encode("utf-8", "replace")).digest())


def wait_left(failures: LoginFailures, now: float) -> float:
    """Seconds this client must still wait before it may try a password again."""
    if failures.count < FREE_FAILURES:
        return 0.0
    wait = min(FIRST_WAIT * 2 ** (failures.count - FREE_FAILURES), LONGEST_WAIT)
    return max(0.0, failures.last + wait - now)


class Sessions:
    def __init__(self, store: Store, password: str) -> None:
        secret = store.get_setting("session_secret")
        if secret is None:
            secret = secrets.token_hex(32)
            store.set_setting("session_secret", secret)
        self._key = hmac.new(bytes.fromhex(secret), password.encode("utf-8", "replace"), hashlib.sha256).digest()

    def _sign(self, expires: int) -> str:
        return hmac.new(self._key, f"admin.{expires}".encode(), hashlib.sha256).hexdigest()

    def new_cookie(self, now: Optional[float] = None) -> str:
        expires = int((now or time.time()) + SESSION_SECONDS)
        value = f"{expires}.{self._sign(expires)}"
        return (f"{COOKIE}={value}; Path=/admin; HttpOnly; SameSite=Strict; "
                f"Max-Age={SESSION_SECONDS}")

    @staticmethod
    def ended_cookie() -> str:
        return f"{COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0"

    def valid(self, request: Any) -> bool:
        value = request.cookies.get(COOKIE, "")
        expires, _, signature = value.partition(".")
        if not expires.isdigit() or not hmac.compare_digest(signature.encode(), self._sign(int(expires)).encode()):
            return False
        return time.time() < int(expires)


def same_origin(request: Any) -> bool:
    """False when the browser tells us the request comes from another site's page."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        # Our pages send no referrer, so browsers hide the origin of their own POSTs; they
        # still say where the request comes from in Sec-Fetch-Site, checked above.
        return site is not None
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
