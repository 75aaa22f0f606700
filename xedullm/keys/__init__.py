"""API keys: where they come from (resolve), how they are shown (mask), where they are kept (store).

``check`` (asking a provider whether a key works) builds a Client, so it is imported from
``xedullm.keys.check`` directly and never from here: nothing below the Client imports it.
"""
from .mask import clean_key, mask_key, redact
from .resolve import (Credentials, key_format_warning, known_secrets, missing_key_error, provider_with_key,
                      resolve_credentials)

__all__ = ["Credentials", "clean_key", "key_format_warning", "known_secrets", "mask_key", "missing_key_error",
           "provider_with_key", "redact", "resolve_credentials"]
