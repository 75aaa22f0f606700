"""Browser ids the server issues, so a made-up id is no way around the per-student limits.

The page asks ``POST /api/browser-id`` once, keeps the answer in localStorage and sends it as
``X-Xedullm-Session``. An id is ``<32 hex>.<32 hex>``: a random part and an HMAC-SHA256 of it
(cut to 128 bits) under a key kept in the store (setting ``browser_id_key``), so every server on
one store accepts the ids any of them issued, and a restart keeps them valid. An id this class
did not sign counts as the caller's address (policy.py): a program that invents a new id per
request stays one student.

An address gets at most ``browser_ids_per_address`` ids a day (each private window or browser
is one); past that it gets none and its new browsers count as the address. That bounds what a
program fetching fresh ids gains (a few budgets a day, not one per request). A whole class behind
one shared address (NAT, a proxy the server does not trust) reaches the cap quickly: the admin
page then shows an alert saying so and what to do. The counts are kept in memory, per server
process (a restart forgets them; at worst an address gets that day's ids once more).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any, Callable, Dict, List, Optional, Tuple

from .guess_throttle import key_of

KEY_SETTING = "browser_id_key"
MAX_ADDRESSES = 10_000      # memory bound: the addresses seen longest ago go first
_SHAPE = re.compile(r"[0-9a-f]{32}\.[0-9a-f]{32}")


class BrowserIds:
    def __init__(self, store: Any, per_address: Callable[[], int], today: Callable[[float], str]) -> None:
        key = store.get_setting(KEY_SETTING)
        if key is None:
            key = secrets.token_hex(32)
            store.set_setting(KEY_SETTING, key)
            # Two servers starting at once on one database: both keep the key that was saved.
            key = store.get_setting(KEY_SETTING) or key
        self._key = bytes.fromhex(key)
        self._per_address = per_address   # read each time (the setting may change)
        self._today = today
        self._issued: Dict[str, Tuple[str, int, float]] = {}   # address → (day, ids issued, first at)

    def _sign(self, random_part: str) -> str:
        return hmac.new(self._key, f"browser.{random_part}".encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self, address: str, now: float) -> Optional[str]:
        """A new id for a browser at ``address``, or None once the address had its ids today."""
        address = key_of(address)
        day = self._today(now)
        known_day, count, first = self._issued.pop(address, (day, 0, now))
        if known_day != day:
            count, first = 0, now
        self._issued[address] = (day, count, first)          # most recent last
        while len(self._issued) > MAX_ADDRESSES:
            del self._issued[next(iter(self._issued))]
        if count >= self._per_address():
            return None
        self._issued[address] = (day, count + 1, first)
        random_part = secrets.token_hex(16)
        return f"{random_part}.{self._sign(random_part)}"

    def verify(self, value: str) -> Optional[str]:
        """The random part of an id this class issued; None for anything else."""
        if not _SHAPE.fullmatch(value):
            return None
        random_part, _, signature = value.partition(".")
        return random_part if hmac.compare_digest(signature, self._sign(random_part)) else None

    def alerts(self, now: float) -> List[Dict[str, Any]]:
        """One alert per address that had all its ids today: likely a class behind one address."""
        day, cap = self._today(now), self._per_address()
        found = []
        for address, (known_day, count, first) in list(self._issued.items()):
            if known_day != day or count < cap:
                continue
            zh = (f"{address} 今天已领满 {cap} 个浏览器编号，这个地址之后打开的新浏览器都按同一个地址计额度。"
                  f"若全班共用一个出口地址（NAT 或未设置 --forwarded-allow-ips 的代理），请用 "
                  f"--browser-ids-per-address 调高，或给学生发学生令牌（最可靠）。")
            en = (f"{address} has had all {cap} browser ids for today; new browsers from that address now share "
                  f"one budget. If the whole class reaches the server through one address (NAT, or a proxy "
                  f"not named in --forwarded-allow-ips), raise --browser-ids-per-address, or hand out student "
                  f"tokens (the strong form).")
            found.append({"kind": "browser_ids", "since": first, "address": address,
                          "zh": zh, "en": en, "message": f"{zh} / {en}"})
        return found
