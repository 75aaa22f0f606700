"""What the teacher steers live, as the classroom policy sees it: a paused class, and the
name a student gives on the page.

The page sends the name in ``X-XEduLLM-Name``, percent-encoded UTF-8 (HTTP headers carry only
Latin-1, and names are mostly Chinese). The name is a label for the teacher, not a proof of
who someone is: budgets stay per browser or per token, so two students both typing "张三"
never share one.
"""
from __future__ import annotations

from typing import Any, Optional
from urllib.parse import unquote

from ...errors import BadRequestError, ServerError

NAME_HEADER = "x-xedullm-name"
NAME_MAX = 32


def header(request: Any, name: str) -> str:
    """One request header (``name`` lower case), or "" when absent. Read off the raw list
    because the policy asks on every request for headers that are usually absent, and
    Starlette's ``headers.get`` raises and catches a KeyError for each of those."""
    wanted = name.encode("latin-1")
    for key, value in request.scope["headers"]:
        if key == wanted:
            return value.decode("latin-1")
    return ""


class ClassPaused(ServerError):
    student_facing = True

    def __init__(self) -> None:
        super().__init__("老师暂停了课堂，请先听老师讲；老师继续后再发送。/ "
                         "Your teacher has paused the class; listen to your teacher and send again once "
                         "the class resumes.")


class NameNeeded(BadRequestError):
    student_facing = True

    def __init__(self) -> None:
        super().__init__("请先填写你的名字或座号（网页会询问）；在程序里请用老师发的学生令牌作 api_key。/ "
                         "Give your name or seat number first (the page asks for it); in a program, use the "
                         "student token your teacher gave you as api_key.")
        self.param = "name"


def name_from(request: Any) -> Optional[str]:
    """The student's name from the page's header, cleaned; None when absent or unreadable."""
    raw = header(request, NAME_HEADER)
    if not raw:
        return None
    try:
        text = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        return None
    # One line of printable text: a name is shown in tables, CSV files and log lines.
    name = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return name[:NAME_MAX] or None
