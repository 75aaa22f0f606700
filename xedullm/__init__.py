"""xedullm: classroom-friendly access to large language models. 课堂里的大模型工具包。

    from xedullm import Client
    chatbot = Client(provider='deepseek', api_key='...')
    print(chatbot.inference('你好'))
"""
from .client import Client
from .errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContentFilterError,
    LLMError,
    ModelNotFoundError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from .types import Usage

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Usage",
    "LLMError",
    "ConfigurationError",
    "AuthenticationError",
    "QuotaExceededError",
    "RateLimitError",
    "BadRequestError",
    "ModelNotFoundError",
    "ContentFilterError",
    "ServerError",
    "APIConnectionError",
    "APITimeoutError",
]
