"""Compare mode: the teacher's extra models, one column each on the student page.

``serve --compare deepseek,moonshot:kimi-k2`` gives the server one more Client per entry
(built by ``Client.run`` the way fallbacks are, keys from the environment or the key store).
A column is asked like any other model: the page sends ``model: "compare:<provider>"`` to
``/v1/chat/completions``, so each column's answer is one request through the same policy,
budget and ledger as a normal question (a class budget counts every column).

Ids carry the ``compare:`` prefix so they can never be mistaken for a provider's model id,
and so a student naming one while compare mode is off hears exactly that.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

from ..api.openai_format import InvalidRequest

if TYPE_CHECKING:
    from ...client import Client

PREFIX = "compare:"


@dataclass(frozen=True)
class Column:
    id: str            # what the page sends as ``model``
    label: str         # the column's heading: the provider's Chinese name, or its address
    client: "Client"

    @property
    def model(self) -> str:
        return self.client.model

    def public(self) -> Dict[str, str]:
        return {"id": self.id, "label": self.label, "model": self.model}


def make_columns(clients: Sequence["Client"]) -> List[Column]:
    columns: List[Column] = []
    taken: Dict[str, int] = {}
    for client in clients:
        base = client.provider.id if client.provider is not None else "model"
        taken[base] = taken.get(base, 0) + 1
        # The same provider twice (two of its models) gets -2, -3… in the order given.
        suffix = "" if taken[base] == 1 else f"-{taken[base]}"
        label = client.provider.label_zh if client.provider is not None else client.label
        columns.append(Column(id=f"{PREFIX}{base}{suffix}", label=label, client=client))
    return columns


class CompareOff(InvalidRequest):
    """A compare id sent to a server whose teacher did not turn compare mode on."""

    def __init__(self, wanted: str) -> None:
        super().__init__(f"这个课堂没有开启多模型对比，不能使用 model={wanted!r}：去掉 model，或请老师用 "
                         f"xedullm serve --compare 开启。",
                         f"Compare mode is off in this classroom, so model={wanted!r} cannot be used: leave "
                         f"model out, or ask your teacher to start the server with xedullm serve --compare.",
                         "model")


class UnknownColumn(InvalidRequest):
    def __init__(self, wanted: str, columns: Sequence[Column]) -> None:
        names = ", ".join(c.id for c in columns)
        super().__init__(f"没有对比模型 {wanted!r}。可用：{names}（GET /api/info 的 compare 列出它们）。",
                         f"No compare model {wanted!r}. Available: {names} (GET /api/info lists them under "
                         f"compare).", "model")


def column_for(columns: Sequence[Column], requested_model: Optional[str]) -> Optional[Column]:
    """The column a request names, None for an ordinary request; refuses a compare id that is
    unknown, or any compare id while compare mode is off."""
    if not requested_model or not requested_model.startswith(PREFIX):
        return None
    if not columns:
        raise CompareOff(requested_model[:80])
    for column in columns:
        if column.id == requested_model:
            return column
    raise UnknownColumn(requested_model[:80], columns)
