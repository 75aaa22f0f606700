"""``POST /api/browser-id``: the page's browser id, issued by this class (classroom/browser_ids.py).

Behind the class's door: with an access code, only a caller that has it (or a token) gets an
id. An id the caller already holds comes back as it is, so asking again costs nothing. Past the
address's ids for today the answer is a 429 the page reads as "go on without one": its questions
then count as its address, which still works.
"""
from __future__ import annotations

import time
from typing import List

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...errors import LLMError
from ..classroom.steering import header
from ..state import state_of
from .openai_format import error_reply


async def browser_id(request: Request) -> Response:
    state = state_of(request)
    room = state.classroom
    if room is None:     # no classroom controls: nothing counts per student
        return JSONResponse({"browser_id": None})
    try:
        await state.policy.identify(request)
    except LLMError as err:
        reply = error_reply(err)
        return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)
    held = header(request, "x-xedullm-session").strip()
    if room.browser_ids.verify(held) is not None:
        return JSONResponse({"browser_id": held})
    address = request.client.host if request.client else "unknown"
    issued = room.browser_ids.issue(address, time.time())
    if issued is None:
        return JSONResponse({"browser_id": None, "error": {
            "message": "这台电脑今天领的浏览器编号已达上限，本浏览器的提问按这台电脑的地址计算额度（可以照常提问）。"
                       "若全班共用一个地址，请告诉老师。/ This computer has had all its browser ids for today; "
                       "questions from this browser count against this computer's address (asking still "
                       "works). If the whole class shares one address, tell your teacher.",
            "type": "rate_limit_error", "param": None, "code": "browser_ids_used_up"}}, status_code=429)
    return JSONResponse({"browser_id": issued})


def browser_id_routes() -> List[BaseRoute]:
    return [Route("/api/browser-id", browser_id, methods=["POST"])]
