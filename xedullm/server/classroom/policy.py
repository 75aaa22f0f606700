"""Who may ask, how much, and with which model, when classroom controls are on.

Two steps. :meth:`ClassroomPolicy.identify` runs before the request body is read: a stranger
hears "access code needed", not which fields were wrong. :meth:`ClassroomPolicy.admit` then
checks every limit and holds the request's estimated tokens in the store, in one transaction
(see contract.py for what "exact" means), before anything is sent upstream.

Fair holds: each answer is capped (``max_answer_tokens``), a hold is what answers in this class
really use (:class:`AnswerSizes`), not the most they could, and a request refused only because
answers still running hold the rest of the budget waits for them (``budget_wait``) instead
of failing.

Who a caller is, for per-student limits: a token's name; else the page's browser id
(``browser:<id>``, kept in localStorage), only when this class issued it (browser_ids.py);
else, for programs with only the access code and any id the class did not issue, their
address (``code:<ip>``), so one script cannot use up a budget everyone shares, nor get a
fresh budget by naming itself anew.
"""
from __future__ import annotations

import hmac
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any, List, Optional

from ...errors import AuthenticationError, LLMError, QuotaExceededError, RateLimitError
from ...english import counted
from ...pictures import IMAGE_TOKEN_ESTIMATE, count_images, text_of
from ...types import ChatRequest
from . import student_tokens
from .steering import ClassPaused, NameNeeded, header, name_from
from .room import Classroom, today
from .open_policy import Admission
from ..store.contract import Claim, ClaimResult, StudentToken

# How often a request waiting for held budget looks again when no answer here has ended
# (another server on the same store may have released some).
_HELD_POLL = 1.0


@dataclass(frozen=True)
class Caller:
    who: str                              # token name, 'browser:<id>', 'code:<ip>' or 'ip:<ip>'
    token: Optional[StudentToken] = None
    name: Optional[str] = None            # shown to the teacher: the token's name, or what the page sent


@dataclass(frozen=True)
class Ticket:
    """What an admission holds; the ledger settles it when the request ends."""

    claim_id: Optional[str]   # None: nothing was held (no limit applied to this request)
    held: int
    prompt_chars: int


class Refused(LLMError):
    """Mixin: a policy refusal, charged to ``who`` in the ledger."""

    who: Optional[str] = None


class AccessDenied(AuthenticationError):
    student_facing = True


class BudgetUsedUp(QuotaExceededError, Refused):
    student_facing = True


class SlowDown(RateLimitError, Refused):
    student_facing = True


def bearer(request: Any) -> Optional[str]:
    scheme, _, value = header(request, "authorization").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def prompt_chars(chat: ChatRequest) -> int:
    # Characters bound tokens from above for Chinese and (by ~4x) for English text; a picture
    # counts as what the providers charge for one at most.
    total = 0
    for m in chat.messages:
        content = m.get("content") or ""
        if isinstance(content, list):
            total += len(text_of(content)) + IMAGE_TOKEN_ESTIMATE * count_images(content)
        else:
            total += len(content)
    return total


class ClassroomPolicy:
    def __init__(self, classroom: Classroom) -> None:
        self._room = classroom
        self.answer_sizes = classroom.answer_sizes

    @property
    def access_code_required(self) -> bool:
        return self._room.access_code is not None

    def models(self) -> List[str]:
        return [self._room.settings.get("model")]

    async def identify(self, request: Any) -> Caller:
        key = bearer(request)
        if key is None:
            return self._identify(request, None, None)
        # A key from an address that got too many wrong is refused before it is checked.
        address = request.client.host if request.client else "unknown"
        throttle = self._room.guesses
        wait = throttle.wait_left(address)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise SlowDown(f"这台电脑输错令牌或访问码的次数太多，请 {seconds} 秒后再试；记不清请问老师。/ "
                           f"Too many wrong tokens or access codes from this computer; try again in {seconds} "
                           f"seconds, or ask your teacher.", retry_after=seconds)
        token = None
        if student_tokens.looks_like_token(key) and not self._is_code(key):
            token = await self._room.call(self._room.store.token_by_digest, student_tokens.digest(key))
        try:
            caller = self._identify(request, key, token)
        except AccessDenied:
            throttle.failed(address)
            raise
        if caller.token is None and student_tokens.looks_like_token(key) and not self._is_code(key):
            throttle.failed(address)   # a token-shaped key that is no token: still a guess
        return caller

    def _is_code(self, key: str) -> bool:
        code = self._room.access_code
        return code is not None and hmac.compare_digest(key.encode(), code.encode())

    def _identify(self, request: Any, key: Optional[str], token: Optional[StudentToken]) -> Caller:
        code = self._room.access_code
        if key is not None and self._is_code(key):
            return self._anonymous(request, "code")
        if key is not None and student_tokens.looks_like_token(key):
            # A short key that is no token may still be some program's placeholder api_key.
            if token is not None or key.startswith(student_tokens.PREFIX):
                _check_token(token)
                return Caller(who=token.name, token=token, name=token.name)
        if code is not None:
            raise AccessDenied(
                "这个课堂需要访问码：请向老师要访问码（或你的学生令牌），在网页里输入，或在程序里把它作为 api_key。/ "
                "This classroom needs an access code: ask your teacher for it (or for your student token), "
                "enter it on the page, or pass it as api_key in your program.")
        return self._anonymous(request, "ip")

    def _anonymous(self, request: Any, kind: str) -> Caller:
        browser = self._room.browser_ids.verify(header(request, "x-xedullm-session").strip())
        name = name_from(request)
        if browser is not None:
            return Caller(who=f"browser:{browser}", name=name)
        # The address, as uvicorn saw it (or as the teacher's named proxy forwarded it).
        return Caller(who=f"{kind}:{request.client.host if request.client else 'unknown'}", name=name)

    async def admit(self, request: Any, requested_model: Optional[str], *, caller: Caller,
                    chat: ChatRequest) -> Admission:
        room = self._room
        # Checked per request, so the teacher's pause and name rule apply from the next one on.
        if room.paused:
            raise ClassPaused()
        if caller.name is None and room.require_name:
            raise NameNeeded()
        token = caller.token
        limits = token.limits if token else None
        model = room.settings.get("model")
        if limits and requested_model in limits.models:
            model = requested_model
        chars = prompt_chars(chat)
        cap = room.settings.get("max_answer_tokens")
        answer_cap = min(chat.max_tokens or cap, cap)
        who_budget = limits.daily_tokens if limits and limits.daily_tokens is not None else room.per_student_daily
        if room.daily_budget is None and who_budget is None and not (limits and (limits.rpm or limits.concurrent)):
            # No limit to check, so no hold to take: the store is not asked before the answer
            # (one hop fewer on every request of an unmetered class). The ledger still gets its
            # row. A budget the teacher sets meanwhile counts answers started after it.
            return Admission(who=caller.who, model=model, ticket=Ticket(None, 0, chars),
                             max_tokens=answer_cap, name=caller.name)
        estimate = self.answer_sizes.estimate(chars, answer_cap)
        deadline = time.monotonic() + room.settings.get("budget_wait")
        while True:
            now = time.time()
            claim = Claim(id=uuid.uuid4().hex, who=caller.who, now=now, day=today(now), estimate=estimate,
                          class_budget=room.daily_budget, who_budget=who_budget,
                          rpm=limits.rpm if limits else None, concurrent=limits.concurrent if limits else None,
                          hold_for=room.hold_for)
            result = await room.call(room.store.claim, claim)
            if result.granted:
                room.running.add(claim.id)
                break
            left = deadline - time.monotonic()
            if result.refusal not in ("class_held", "who_held") or left <= 0:
                raise _refusal(result, claim)
            # Answers still running hold the rest: wait for one to end, then ask again.
            await room.released(min(left, _HELD_POLL))
        return Admission(who=caller.who, model=model, ticket=Ticket(claim.id, result.held, chars),
                         max_tokens=answer_cap, name=caller.name)


def _check_token(token: Optional[StudentToken]) -> None:
    if token is None:
        raise AccessDenied("这个学生令牌不对：请检查是否抄错，或向老师要一个新的。/ "
                           "This student token is not valid: check it was copied exactly, or ask your teacher "
                           "for a new one.")
    if token.revoked is not None:
        raise AccessDenied("老师已停用这个学生令牌，请向老师要一个新的。/ "
                           "Your teacher has revoked this student token; ask them for a new one.")
    if token.limits.expires is not None and time.time() >= token.limits.expires:
        raise AccessDenied(f"这个学生令牌已于 {student_tokens.expires_text(token.limits.expires)} 过期，请向老师要一个新的。/ "
                           f"This student token expired after {student_tokens.expires_text(token.limits.expires)}; "
                           f"ask your teacher for a new one.")


def _refusal(result: ClaimResult, claim: Claim) -> LLMError:
    reason = result.refusal
    wait = max(1, round(result.retry_after or 1))
    err: Refused
    if reason == "class_budget":
        err = BudgetUsedUp(f"全班今天的额度（{claim.class_budget} token）已用完。明天再来，或请老师在管理页调高预算。/ "
                           f"The class's budget for today ({counted(claim.class_budget, 'token')}) is used up. Come back "
                           f"tomorrow, or ask your teacher to raise it on the admin page.")
    elif reason == "who_budget":
        err = BudgetUsedUp(f"你今天的额度（{claim.who_budget} token）已用完。明天再来，或请老师调高你的额度。/ "
                           f"Your budget for today ({counted(claim.who_budget, 'token')}) is used up. Come back tomorrow, "
                           f"or ask your teacher to raise your limit.")
    elif reason in ("class_held", "who_held"):
        err = SlowDown(f"今天的额度快用完了，剩下的正被进行中的回答占用。请 {wait} 秒后再试。/ "
                       f"Today's budget is nearly used up and the rest is held by answers still running. "
                       f"Try again in {counted(wait, 'second')}.", retry_after=wait)
    elif reason == "rpm":
        err = SlowDown(f"你每分钟最多可以发 {claim.rpm} 个请求，请 {wait} 秒后再试。/ "
                       f"You may send at most {counted(claim.rpm, 'request')} a minute; try again in {counted(wait, 'second')}.",
                       retry_after=wait)
    else:
        err = SlowDown(f"你同时最多可以有 {claim.concurrent} 个回答在进行，请等上一个回答结束再发。/ "
                       f"You may have at most {counted(claim.concurrent, 'answer')} running at once; wait for one to "
                       f"finish, then try again.", retry_after=wait)
    err.who = claim.who
    return err
