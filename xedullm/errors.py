"""The exception hierarchy. Every message is Chinese first, then English, and says what to do.

Messages never contain a key: callers pass provider text through ``keys.redact`` before it
reaches an exception (the transport does this for every upstream error).
"""
from __future__ import annotations

from typing import Optional


class LLMError(Exception):
    """Base of every error xedullm raises."""

    #: whether the transport may retry the request that caused it
    retryable = False
    #: (Chinese, English) advice shown when no more specific advice is given
    advice = ("调用大模型时出错。", "The model call failed.")

    def __init__(
        self,
        message: Optional[str] = None,
        *,
        provider: Optional[str] = None,
        status_code: Optional[int] = None,
        code: Optional[str] = None,
        detail: Optional[str] = None,
        retry_after: Optional[float] = None,
        hint: Optional[str] = None,
    ) -> None:
        self.provider = provider
        self.status_code = status_code
        self.code = None if code is None else str(code)
        self.detail = detail
        self.retry_after = retry_after
        self.hint = hint
        self.message = message or self._compose()
        super().__init__(self.message)

    def _compose(self) -> str:
        zh, en = self.advice
        facts = []
        if self.provider:
            facts.append(f"provider: {self.provider}")
        if self.status_code is not None:
            facts.append(f"HTTP {self.status_code}")
        if self.code:
            facts.append(f"code: {self.code}")
        text = f"{zh} / {en}"
        if self.hint:
            text += f" {self.hint}"
        if facts:
            text += f" [{', '.join(facts)}]"
        if self.detail:
            text += f" 详情 Detail: {self.detail}"
        return text

    def __reduce__(self):  # keep keyword state through pickling (multiprocessing, pytest-xdist)
        return (_rebuild, (type(self), self.message, self.__dict__.copy()))


def _rebuild(cls, message, state):
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class ConfigurationError(LLMError, ValueError):
    advice = ("配置有误。", "Invalid configuration.")


class MissingKeyError(ConfigurationError):
    """No key for the provider anywhere (argument, environment, key store). A classroom server
    started without one waits for the teacher to save it (its students hear "still setting up")."""


class AuthenticationError(LLMError):
    advice = (
        "密钥无效、已停用或与服务商不匹配：请检查 API Key（需要时到服务商控制台删除旧密钥并新建）。",
        "The key was rejected: check the API key (delete it and create a new one in the provider's console if needed).",
    )


class QuotaExceededError(LLMError):
    advice = (
        "账户余额或免费额度已用完：请到服务商控制台充值或查看额度，或换一个服务商。",
        "Balance or free quota is used up: top up or check your quota in the provider's console, or use another provider.",
    )


class RateLimitError(LLMError):
    retryable = True
    advice = (
        "请求太频繁或服务繁忙：请稍等片刻再试。",
        "Too many requests or the service is busy: wait a moment and try again.",
    )


class BadRequestError(LLMError):
    advice = ("请求内容或参数有误：请检查输入的消息和参数。", "The request was rejected: check the messages and parameters.")


class ModelNotFoundError(BadRequestError):
    advice = (
        "找不到这个模型：用 support_model() 查看可用的模型名。",
        "Model not found: call support_model() to see the available model names.",
    )


class ContentFilterError(BadRequestError):
    advice = ("内容未通过服务商的安全审核：请换一种说法再试。", "The content was blocked by the provider's moderation: rephrase and try again.")


class ServerError(LLMError):
    retryable = True
    advice = ("服务商暂时出错：请稍后重试。", "The provider had an internal error: try again later.")


class APIConnectionError(LLMError):
    retryable = True
    advice = (
        "无法连接到服务：请检查网络和服务地址（base_url / xedu_url）。",
        "Could not connect: check the network and the service address (base_url / xedu_url).",
    )


class StreamInterruptedError(APIConnectionError):
    """The answer's stream ended before the provider said it was complete (no ``[DONE]``, no
    finish reason): the connection was cut. What arrived is in ``partial_text``."""

    advice = (
        "回答在中途断开了（连接被切断，服务商没有说回答已完成）：上面的内容不完整，请重新提问。",
        "The answer was cut off (the connection closed before the provider said it was complete): "
        "what arrived is incomplete; please ask again.",
    )
    #: the text that arrived before the cut (set by the Client)
    partial_text = ""
    #: a classroom server shows students this message as it is: it says what to do
    student_facing = True


class APITimeoutError(APIConnectionError):
    advice = (
        "请求超时：服务没有及时响应，请稍后重试或调大 timeout。",
        "The request timed out: try again later or raise the timeout.",
    )


__all__ = [
    "LLMError",
    "ConfigurationError",
    "MissingKeyError",
    "AuthenticationError",
    "QuotaExceededError",
    "RateLimitError",
    "BadRequestError",
    "ModelNotFoundError",
    "ContentFilterError",
    "StreamInterruptedError",
    "ServerError",
    "APIConnectionError",
    "APITimeoutError",
]
