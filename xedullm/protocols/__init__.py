"""Wire-protocol adapters, one per protocol (not per provider). Sans-I/O: each turns our
request types into an :class:`HTTPRequest` and the provider's bytes back into results."""
from __future__ import annotations

import importlib
from typing import Dict, Optional, Tuple

from ..catalog import Provider
from .adapter import Adapter

# protocol name (a catalog row's ``protocol``) -> (module, adapter class); imported on first use
ADAPTERS: Dict[str, Tuple[str, str]] = {
    "openai": ("openai_compat", "OpenAICompatAdapter"),
    "dashscope": ("dashscope", "DashScopeAdapter"),
    "ernie": ("ernie", "ErnieAdapter"),
    # An old XEduLLM teacher server (Client(xedu_url=…) finds out on first use).
    "gradio": ("gradio", "GradioAdapter"),
}


def options_for(protocol: str):
    """The OpenAI options an HTTP protocol carries (its module's ``OPTIONS`` table)."""
    module, _ = ADAPTERS[protocol]
    return importlib.import_module(f".{module}", __name__).OPTIONS


def adapter_for(protocol: str, provider: Optional[Provider]) -> Adapter:
    if protocol not in ADAPTERS:
        raise ValueError(f"no HTTP adapter for protocol {protocol!r}")
    module, name = ADAPTERS[protocol]
    return getattr(importlib.import_module(f".{module}", __name__), name)(provider)
