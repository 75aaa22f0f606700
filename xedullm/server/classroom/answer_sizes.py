"""How many tokens to hold for a request: what this class's answers really use.

A hold is the most a request is expected to use, not the most it could: with every request
holding ``prompt + max_tokens`` a few long answers would hold the whole day's budget and
refuse everyone else. Budgets stay exact in the sense of contract.py either way.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any, Deque, Iterable, Optional

# What an answer may cost until the class has answered enough to know better. Holds are
# clipped to what is left of a budget, so a high guess never refuses a request while budget remains.
ANSWER_ESTIMATE = 1024


class AnswerSizes:
    """What this class's answers really use: the 90th percentile of the last answers'
    completion tokens, and of prompt tokens per prompt character."""

    SAMPLES = 200
    ENOUGH = 10      # answers seen before the percentile replaces the first guesses

    def __init__(self) -> None:
        self._completion: Deque[int] = deque(maxlen=self.SAMPLES)
        self._per_char: Deque[float] = deque(maxlen=self.SAMPLES)

    def note(self, prompt_chars: int, prompt_tokens: Optional[int], completion_tokens: Optional[int]) -> None:
        if completion_tokens is not None and completion_tokens >= 0:
            self._completion.append(completion_tokens)
        if prompt_tokens is not None and prompt_chars > 0:
            self._per_char.append(prompt_tokens / prompt_chars)

    def seed(self, completions: Iterable[Optional[int]]) -> None:
        """Start from answers already in the ledger (oldest first), e.g. after a restart."""
        for tokens in completions:
            self.note(0, None, tokens)

    def estimate(self, chars: int, answer_cap: int) -> int:
        """Tokens to hold for a prompt of ``chars`` characters whose answer may use ``answer_cap``."""
        per_char = _p90(self._per_char) if len(self._per_char) >= self.ENOUGH else 1.0
        answer = _p90(self._completion) if len(self._completion) >= self.ENOUGH else ANSWER_ESTIMATE
        return math.ceil(chars * min(per_char, 1.0)) + max(1, min(answer_cap, math.ceil(answer)))


def _p90(values: Any) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
