"""What one student request may hold. Far above any real classroom conversation, far below
what would let one student's script exhaust the teacher's server or budget.

Set them with ``ServerSettings(limits=Limits(...))`` (``Client.run(limits=...)`` passes it
through). docs/reliability.md lists them.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 4 * 1024 * 1024   # the raw JSON body
    max_messages: int = 200                  # messages in one request (history included)
    max_content_chars: int = 100_000         # characters in one message's content


DEFAULT = Limits()
