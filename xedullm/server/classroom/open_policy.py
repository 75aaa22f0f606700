"""Who may ask, and with which model: the step before every chat request.

The default lets every student in and always uses the teacher's model. Classroom controls
(access codes, student tokens, quotas, rate limits) replace it with a policy that raises
the matching ``LLMError`` (``AuthenticationError``, ``RateLimitError``, ``QuotaExceededError``)
from :meth:`admit`; the server turns that into the OpenAI-format error for the student.

A policy may also define ``identify(request) -> caller``: the server then calls it before it
reads the body (a stranger hears "access code needed", not which field was wrong) and calls
``admit(request, requested_model, caller=caller, chat=chat_request)`` with the built request,
so the policy can hold an estimate of its cost (see classroom_policy.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, List, Optional

if TYPE_CHECKING:
    from .live_settings import LiveSettings


@dataclass(frozen=True)
class Admission:
    who: str       # whom the ledger charges: a token name, or 'anonymous'
    model: str     # the model this request will use
    ticket: Any = None   # what the policy holds for this request; the ledger settles it
    name: Optional[str] = None   # the name the teacher sees beside ``who`` (classroom names)
    max_tokens: Optional[int] = None   # the answer's length cap, when the policy sets one
    column: Optional[str] = None   # a compare column's id: its Client answers (compare_columns.py)


class OpenPolicy:
    """Everyone is admitted; the student's ``model`` field is ignored."""

    access_code_required = False

    def __init__(self, settings: "LiveSettings") -> None:
        self._settings = settings

    def models(self) -> List[str]:
        return [self._settings.get("model")]

    async def admit(self, request: Any, requested_model: Optional[str]) -> Admission:
        return Admission(who="anonymous", model=self._settings.get("model"))
