"""What happened to each chat request: the record written after it ends.

The server calls :meth:`record` exactly once for every request that reached the policy —
answered, failed, refused or abandoned by a disconnecting student — so a real ledger
(classroom controls) can count usage and pair it with admissions. The default keeps nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ...types import Usage

#: the ASGI scope key holding a request's id, sent as its answer's ``x-request-id`` (app.py)
REQUEST_ID = "xedullm.request_id"


@dataclass(frozen=True)
class LedgerEntry:
    started: float            # time.time() when the request arrived
    latency: float            # seconds until the answer ended
    who: Optional[str]        # Admission.who, or None when the policy refused the request
    model: Optional[str]
    stream: bool
    status: int               # the outcome's HTTP status (an in-stream error counts as its
                              # error status); 499 when the student went away first
    outcome: str              # 'ok', 'disconnected', or the OpenAI error code/type sent
    usage: Optional[Usage]    # as reported upstream, when it was
    ticket: Any = None        # Admission.ticket
    messages: Optional[List[Dict[str, str]]] = None   # what went upstream (for classroom review)
    answer: str = ""          # the answer text sent to the student, as far as it got
    name: Optional[str] = None   # Admission.name: what the teacher sees beside ``who``
    flagged: bool = False     # a blocked word in the question or answer, or the provider's moderation
    provider: Optional[str] = None   # who answered (a fallback's id when the primary could not)
    fallback_reason: Optional[str] = None   # then why the primary could not ('insufficient_quota', …)
    reasoning: str = ""       # the reasoning text sent to the student, as far as it got
    upstream: bool = False    # the request was handed to the provider (it may bill it)
    request_id: Optional[str] = None   # the x-request-id its answer carried


class NullLedger:
    async def record(self, entry: LedgerEntry) -> None:
        return None
