"""Asking a provider whether a key works. It sits above the Client (it makes one), so the
rest of ``keys`` never imports the client."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..catalog import Provider


@dataclass(frozen=True)
class KeyCheck:
    """Outcome of one cheap authenticated call."""

    status: str   # 'valid' | 'invalid' | 'no_balance' | 'network' | 'unknown'
    error: Optional[Exception] = None
    # The key works but the provider no longer lists our default model (issue 26).
    note: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.status == "valid"


def check_key(provider: Provider, api_key: str, secret_key: Optional[str] = None,
              base_url: Optional[str] = None, timeout: float = 20.0) -> KeyCheck:
    """Ask the provider whether the key works, as cheaply as it allows.

    Listing models costs nothing where the provider has that endpoint; elsewhere a
    one-token answer is the cheapest call that proves the key.
    """
    from ..client import Client
    from ..errors import APIConnectionError, AuthenticationError, LLMError, QuotaExceededError

    client = Client(provider=provider.id, base_url=base_url, api_key=api_key,
                    secret_key=secret_key, timeout=timeout, max_retries=0, verbose=False)
    try:
        if provider.has_models_endpoint:
            models = client.support_model()  # live from the provider: free, and proves the key
            if models and client.model == client.provider.default_model and client.model not in models:
                from ..live_models import default_gone_text
                return KeyCheck("valid", note=default_gone_text(provider.id, client.model, models))
        else:
            client.inference("hi", max_tokens=1)
    except AuthenticationError as exc:
        return KeyCheck("invalid", exc)
    except QuotaExceededError as exc:
        return KeyCheck("no_balance", exc)
    except APIConnectionError as exc:
        return KeyCheck("network", exc)
    except LLMError as exc:
        # Rate limits, server trouble, a retired model: the key may be fine, but we cannot say.
        return KeyCheck("unknown", exc)
    return KeyCheck("valid")


def check_and_save(provider: Provider, api_key: Optional[str], secret_key: Optional[str] = None,
                   base_url: Optional[str] = None) -> KeyCheck:
    """Check a key live and, only when it works, save it in the key store (the place
    ``xedullm key set`` uses). Nothing is saved unless the result is ``ok``; a running server
    takes the key up with ``Client.reload_credentials``. The admin page's key box uses this."""
    from ..errors import ConfigurationError
    from .mask import clean_key
    from .store import open_store

    if not provider.needs_key:
        raise ConfigurationError(f"{provider.label_zh}不需要密钥。/ {provider.label_en} needs no key.",
                                 provider=provider.id)
    api_key, secret_key = clean_key(api_key), clean_key(secret_key) if provider.needs_secret else None
    if not api_key or (provider.needs_secret and not secret_key):
        what = "API Key 和 Secret Key" if provider.needs_secret else "密钥"
        what_en = "an API Key and a Secret Key" if provider.needs_secret else "a key"
        raise ConfigurationError(f"请粘贴{provider.label_zh}的{what}，什么都没有保存。/ "
                                 f"Paste {what_en} for {provider.label_en}; nothing was saved.",
                                 provider=provider.id)
    for key in (api_key, secret_key):
        if key and not (key.isascii() and key.isprintable()):
            raise ConfigurationError(
                "密钥里有中文、全角或不可见字符：请重新复制，只保留英文字母、数字和符号。什么都没有保存。/ "
                "The key contains non-ASCII or invisible characters: copy it again, keeping only letters, "
                "digits and symbols. Nothing was saved.", provider=provider.id)
    result = check_key(provider, api_key, secret_key, base_url=base_url)
    if result.ok:
        open_store().set(provider.id, api_key, secret_key)
    return result
