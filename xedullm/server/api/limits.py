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
    max_image_bytes: int = 2 * 1024 * 1024   # one picture (a data: URL's bytes); the page sends far less
    max_images: int = 4                      # pictures in one request (history included)
    max_embedding_inputs: int = 64           # texts in one /v1/embeddings request


DEFAULT = Limits()
