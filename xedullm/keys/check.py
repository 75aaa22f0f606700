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
