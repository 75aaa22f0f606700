"""The teacher's way in to /admin: password, throttle, session cookie, same-origin checks.

- The password is compared in constant time (digests of equal length), so timing says nothing.
- Login attempts are counted per client address in the store (they survive a restart), each
  one *before* its password is looked at, so many attempts sent at once cannot all be tried:
  the first few are free, then each further try must wait twice as long as the last, up to 15
  minutes. While a client waits, even the right password is refused, so guessing gains nothing.
  The address is the socket's unless the teacher named a proxy (``--forwarded-allow-ips``):
  a forged X-Forwarded-For header does not make a new client.
- The session is a cookie ``<id>.<hmac>``: a random id signed with a key derived from the
  store's secret and the password, and kept (hashed) in the store until it expires. Logging
  out ends it on the server; a new password ends every session. HttpOnly (no script reads it),
  SameSite=Strict (no other site's page sends it), Path=/admin.
- Changes need a custom header and, when the browser says where a request comes from, the same
  origin: a cross-site form or script cannot make one (and /admin answers no CORS).
"""
from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from typing import Any, Awaitable, Callable, Optional

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
    """Admin sessions, kept in the store; ``call`` runs a store method on the store's thread."""

    def __init__(self, store: Store, password: str, call: Callable[..., Awaitable[Any]]) -> None:
        secret = store.get_setting("session_secret")
        if secret is None:
            secret = secrets.token_hex(32)
            store.set_setting("session_secret", secret)
        self._store = store
        self._call = call
        self._key = hmac.new(bytes.fromhex(secret), password.encode("utf-8", "replace"), hashlib.sha256).digest()
        # The password changed since sessions were last made: none of them may go on.
        key_id = hashlib.sha256(self._key).hexdigest()[:16]
        if store.get_setting("session_key_id") != key_id:
            store.end_sessions()
            store.set_setting("session_key_id", key_id)

    def _sign(self, session_id: str) -> str:
        return hmac.new(self._key, f"admin.{session_id}".encode(), hashlib.sha256).hexdigest()

    async def new_cookie(self, now: Optional[float] = None) -> str:
        session_id = secrets.token_urlsafe(24)
        await self._call(self._store.add_session, _digest(session_id), (now or time.time()) + SESSION_SECONDS)
        return (f"{COOKIE}={session_id}.{self._sign(session_id)}; Path=/admin; HttpOnly; SameSite=Strict; "
                f"Max-Age={SESSION_SECONDS}")

    @staticmethod
    def ended_cookie() -> str:
        return f"{COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0"

    def _session_id(self, request: Any) -> Optional[str]:
        session_id, _, signature = request.cookies.get(COOKIE, "").partition(".")
        if not session_id or not hmac.compare_digest(signature.encode(), self._sign(session_id).encode()):
            return None   # not one of ours: the store is not even asked
        return session_id

    async def valid(self, request: Any) -> bool:
        session_id = self._session_id(request)
        return session_id is not None and bool(
            await self._call(self._store.session_valid, _digest(session_id), time.time()))

    async def end(self, request: Any) -> None:
        session_id = self._session_id(request)
        if session_id is not None:
            await self._call(self._store.end_session, _digest(session_id))


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


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
