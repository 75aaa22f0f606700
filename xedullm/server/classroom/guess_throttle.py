"""Wrong student tokens and wrong access codes, throttled per address like the admin login.

An address may get a few keys wrong (typos happen); after ``FREE_FAILURES`` every further key
from it waits ``FIRST_WAIT`` seconds, doubling with each wrong one up to ``LONGEST_WAIT``. While
it waits, every key from that address is refused with ``Retry-After`` *before* it is checked
(else the refusal itself would still answer the guess). An address's failures are forgotten
``FORGET_AFTER`` seconds after its last one. A success does not clear them: one valid token
must not let its holder interleave unlimited guesses.

Throughput at the cap, per address: one guess per ``LONGEST_WAIT`` = 96 a day. See
docs/reliability.md (issue 27) for what that means for the shortest token a batch can make.

Kept in memory (a restart forgets, which at worst gives an address ``FREE_FAILURES`` more).
A burst (``ALERT_FAILURES`` or more wrong keys from one address within ``ALERT_WINDOW``) shows on
the admin page as an alert naming the address.
"""
from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

FREE_FAILURES = 10
FIRST_WAIT = 2.0
LONGEST_WAIT = 15 * 60.0
FORGET_AFTER = 3600.0
ALERT_FAILURES = 20
ALERT_WINDOW = 600.0
MAX_ADDRESSES = 10_000     # memory bound: the oldest records go first


@dataclass
class _Record:
    count: int = 0
    last: float = 0.0
    first: float = 0.0
    refused: int = 0         # keys refused unchecked while waiting
    recent: List[float] = field(default_factory=list)


def key_of(address: str) -> str:
    """An IPv6 address counts by its /64 (one machine may hold a whole /64); IPv4 as it is."""
    if ":" not in address:
        return address
    try:
        network = ipaddress.ip_network(f"{address}/64", strict=False)
    except ValueError:
        return address
    return str(network)


class GuessThrottle:
    def __init__(self) -> None:
        self._by_address: Dict[str, _Record] = {}

    def wait_left(self, address: str, now: Optional[float] = None) -> float:
        """Seconds ``address`` must wait before its next key is checked (0: check it now)."""
        now = time.time() if now is None else now
        address = key_of(address)
        record = self._by_address.get(address)
        if record is None:
            return 0.0
        if now - record.last > FORGET_AFTER:
            del self._by_address[address]
            return 0.0
        if record.count < FREE_FAILURES:
            return 0.0
        wait = min(FIRST_WAIT * 2 ** (record.count - FREE_FAILURES), LONGEST_WAIT)
        left = record.last + wait - now
        if left > 0:
            record.refused += 1
            _note(record, now)
        return max(0.0, left)

    def failed(self, address: str, now: Optional[float] = None) -> None:
        now = time.time() if now is None else now
        address = key_of(address)
        record = self._by_address.pop(address, None) or _Record(first=now)
        if now - record.last > FORGET_AFTER:
            record = _Record(first=now)
        record.count += 1
        record.last = now
        _note(record, now)
        self._by_address[address] = record       # most recent last
        while len(self._by_address) > MAX_ADDRESSES:
            del self._by_address[next(iter(self._by_address))]

    def alerts(self, now: Optional[float] = None) -> List[Dict[str, Any]]:
        """One alert per address that sent ``ALERT_FAILURES`` or more wrong (or unchecked) keys
        within the last ``ALERT_WINDOW`` seconds."""
        now = time.time() if now is None else now
        found = []
        for address, record in list(self._by_address.items()):
            record.recent = [t for t in record.recent if t > now - ALERT_WINDOW][-1000:]
            if len(record.recent) < ALERT_FAILURES:
                continue
            zh = (f"有人在猜学生令牌或访问码：{address} 在 {int(ALERT_WINDOW // 60)} 分钟内试了 {len(record.recent)} 次错误的"
                  f"令牌/访问码，已被限速。若不是学生抄错，请查看是哪台电脑；必要时换访问码或停用令牌。")
            en = (f"Someone is guessing student tokens or the access code: {address} sent {len(record.recent)} wrong "
                  f"tokens/codes in {int(ALERT_WINDOW // 60)} minutes and is being slowed down. Unless it is a "
                  f"student's typo, find that computer; change the access code or revoke tokens if needed.")
            found.append({"kind": "guessing", "since": record.recent[0], "address": address,
                          "zh": zh, "en": en, "message": f"{zh} / {en}"})
        return found


def _note(record: _Record, now: float) -> None:
    record.recent.append(now)
    if len(record.recent) > 2000:
        del record.recent[:1000]
