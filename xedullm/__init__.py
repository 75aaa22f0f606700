"""xedullm: classroom-friendly access to large language models. 课堂里的大模型工具包。

    from xedullm import Client
    chatbot = Client(provider='deepseek', api_key='...')
    print(chatbot.inference('你好'))
"""
from . import errors
from .client import Client
from .side_by_side import compare, compare_stream
from .errors import *  # noqa: F401,F403 - the whole error hierarchy is public
from .classroom_presets import presets
from .types import ChatChunk, ChatResult, Usage

__version__ = "0.1.0"

__all__ = ["ChatChunk", "ChatResult", "Client", "Usage", "compare", "compare_stream", "presets", *errors.__all__]
