"""When the primary provider fails, the next one answers: which errors allow that, in what
order the answerers are tried, and the circuit breaker that skips a primary that keeps failing.

Pure decisions, no I/O: the Client runs the calls (sync or async) and reports each outcome to
an :class:`Attempts`, which says whether to go on to the next answerer or to raise.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Generic, Optional, Sequence, Tuple, TypeVar

from .errors import (APIConnectionError, APITimeoutError, ConfigurationError, LLMError, QuotaExceededError,
                     RateLimitError, ServerError)



def _log():
    # logging costs more to import than the rest of this module: only a fallback needs it.
    import logging

    return logging.getLogger("xedullm")

# What another provider can fix: the network, the provider's servers, its rate limits (after
# the primary's own retries) and an empty balance. A bad request or a content filter would
# fail the same way anywhere, so those are raised as they are.
FALLBACK_ERRORS = (APIConnectionError, ServerError, RateLimitError, QuotaExceededError)


# Why the primary did not answer, as the OpenAI-style code the classroom ledger uses for the
# same error (``ChatResult.fallback_reason``): the teacher's alert tells an empty balance, which
# only the teacher can fix, from a network or a provider that is down. Most specific first.
_REASONS = (
    (QuotaExceededError, "insufficient_quota"),
    (RateLimitError, "rate_limit_exceeded"),
    (APITimeoutError, "upstream_timeout"),
    (APIConnectionError, "upstream_unreachable"),
    (ServerError, "upstream_error"),
)
# The primary was skipped with no failure of its own on record (its circuit was open).
CIRCUIT_OPEN = "circuit_open"


def can_fall_back(err: BaseException) -> bool:
    return isinstance(err, FALLBACK_ERRORS)


def reason_of(err: BaseException) -> str:
    """The code for an error a fallback may answer instead of (see ``_REASONS``)."""
    return next((code for cls, code in _REASONS if isinstance(err, cls)), "upstream_error")


def parse_spec(spec: str) -> Tuple[str, Optional[str], Optional[str]]:
    """'PROVIDER[:MODEL][@BASE_URL]' -> (provider, model, base_url).

    Model ids may contain ':' (OpenRouter's ':free'), so only the first ':' splits; a base
    URL may too, so '@' is split first.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigurationError("备用服务商应写成 PROVIDER[:MODEL][@BASE_URL]，例如 qwen:qwen-turbo。/ "
                                 "A fallback is written PROVIDER[:MODEL][@BASE_URL], e.g. qwen:qwen-turbo.")
    spec, _, base_url = spec.strip().partition("@")
    provider, _, model = spec.partition(":")
    return provider.strip(), model.strip() or None, base_url.strip() or None


class Breaker:
    """Closed: calls go through. After ``failures`` failures in a row it opens for ``cooldown``
    seconds (calls skip this answerer); then one call is let through as a probe (half-open):
    success closes it, failure opens it again."""

    def __init__(self, failures: int = 3, cooldown: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1 or cooldown < 0:
            raise ConfigurationError("breaker_failures 至少为 1，breaker_cooldown 不能为负。/ "
                                     "breaker_failures must be at least 1 and breaker_cooldown not negative.")
        self.failures, self.cooldown, self._clock = failures, cooldown, clock
        self._lock = threading.Lock()
        self._in_a_row = 0
        self._opened_at: Optional[float] = None
        self._probing = False
        #: the last failure's ``reason_of``, kept while the open circuit skips this answerer
        self.reason: Optional[str] = None

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._clock() - self._opened_at >= self.cooldown else "open"

    def allow(self) -> bool:
        with self._lock:
            state = self.state
            if state == "closed":
                return True
            if state == "half-open" and not self._probing:
                self._probing = True
                return True
            return False

    def succeeded(self) -> None:
        with self._lock:
            self._in_a_row, self._opened_at, self._probing, self.reason = 0, None, False, None

    def reset(self) -> None:
        """Closed, with no failures counted (what the breaker knows is out of date)."""
        self.succeeded()

    def failed(self, reason: Optional[str] = None) -> None:
        with self._lock:
            self.reason = reason
            self._in_a_row += 1
            if self._probing or self._in_a_row >= self.failures:
                self._opened_at, self._probing = self._clock(), False


T = TypeVar("T")


class Attempts(Generic[T]):
    """One request's way through the answerers: ``(label, answerer, breaker or None)``."""

    def __init__(self, answerers: Sequence[Tuple[str, T, Optional[Breaker]]]) -> None:
        self._answerers = list(answerers)

    def __iter__(self):
        has_fallback = len(self._answerers) > 1
        last = len(self._answerers) - 1
        reason: Optional[str] = None   # why the first answerer (the primary) did not answer
        for i, (label, answerer, breaker) in enumerate(self._answerers):
            # An open breaker only skips when someone else can answer.
            if breaker is not None and has_fallback and i < last and not breaker.allow():
                _log().info("跳过暂时不可用的 %s / skipping %s while its circuit is open", label, label)
                reason = reason or breaker.reason or CIRCUIT_OPEN
                continue
            attempt = Attempt(label, answerer, breaker, is_last=i == last, fallback_reason=reason)
            yield attempt
            reason = reason or attempt.reason   # only reached when the next answerer tries


class Attempt(Generic[T]):
    def __init__(self, label: str, answerer: T, breaker: Optional[Breaker], is_last: bool,
                 fallback_reason: Optional[str] = None) -> None:
        self.label, self.answerer, self.breaker, self.is_last = label, answerer, breaker, is_last
        #: why an earlier answerer did not answer (None for the first one tried, the primary)
        self.fallback_reason = fallback_reason
        self.reason: Optional[str] = None   # why this one failed, once it has

    def succeeded(self) -> None:
        if self.breaker is not None:
            self.breaker.succeeded()

    def failed(self, err: LLMError, answered: bool) -> None:
        """Record the failure; re-raise unless the next answerer should try (nothing was
        answered yet, the error is one another provider can fix, and someone is left)."""
        if can_fall_back(err):
            self.reason = reason_of(err)
            if self.breaker is not None:
                self.breaker.failed(self.reason)
        if answered or self.is_last or not can_fall_back(err):
            raise err
        _log().warning("%s 出错，改由备用服务商回答 / %s failed, a fallback answers: %s", self.label, self.label,
                    type(err).__name__)

