"""xedullm: classroom-friendly access to large language models. 课堂里的大模型工具包。

    from xedullm import Client
    chatbot = Client(provider='deepseek', api_key='...')
    print(chatbot.inference('你好'))
"""
from . import errors
from .client import Client
from .errors import *  # noqa: F401,F403 - the whole error hierarchy is public
from .types import ChatChunk, ChatResult, Usage

# Imported on first use: ``from xedullm import Client`` stays quick (a thread pool, difflib).
_LAZY = {"compare": "side_by_side", "compare_stream": "side_by_side", "presets": "classroom_presets"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = ["ChatChunk", "ChatResult", "Client", "Usage", "compare", "compare_stream", "presets", *errors.__all__]
