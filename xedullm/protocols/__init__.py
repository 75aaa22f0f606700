"""Wire-protocol adapters, one per protocol (not per provider)."""
from __future__ import annotations

from typing import Optional

from ..catalog import Provider
from .base import Adapter


def adapter_for(protocol: str, provider: Optional[Provider]) -> Adapter:
    if protocol == "openai":
        from .openai_compat import OpenAICompatAdapter as cls
    elif protocol == "dashscope":
        from .dashscope import DashScopeAdapter as cls
    elif protocol == "ernie":
        from .ernie import ErnieAdapter as cls
    else:
        raise ValueError(f"no HTTP adapter for protocol {protocol!r}")
    return cls(provider)
