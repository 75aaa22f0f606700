"""Which key a provider gets: argument > environment > key store; and the advice when none is found."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Iterable, List, Optional

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the catalog is imported where a provider is first looked up, not with Client
    from ..catalog import Provider
from .mask import clean_key, mask_key


@dataclass(frozen=True)
class Credentials:
    api_key: Optional[str] = field(default=None, repr=False)
    secret_key: Optional[str] = field(default=None, repr=False)
    source: str = "none"   # 'argument' | 'env:NAME' | 'store' | 'none'

    def __repr__(self) -> str:
        return (f"Credentials(api_key={mask_key(self.api_key)!r}, "
                f"secret_key={mask_key(self.secret_key)!r}, source={self.source!r})")


def _first_env(names: Iterable[str]):
    for name in names:
        value = clean_key(os.environ.get(name))
        if value:
            return name, value
    return None, None


def resolve_credentials(provider: Provider, api_key: Optional[str] = None,
                        secret_key: Optional[str] = None) -> Credentials:
    """Find the key for ``provider``: explicit argument, then environment, then the key store."""
    api_key, secret_key = clean_key(api_key), clean_key(secret_key)
    if api_key:
        return Credentials(api_key, secret_key, "argument")
    env_name, env_key = _first_env(provider.key_env)
    if env_key:
        _, env_secret = _first_env(provider.secret_env)
        return Credentials(env_key, secret_key or env_secret, f"env:{env_name}")
    if provider.needs_key:
        from .store import open_store

        stored = open_store().get(provider.id)
        if stored:
            return Credentials(stored.api_key, secret_key or stored.secret_key, "store")
    return Credentials(None, secret_key, "none")


def missing_key_error(provider: Provider):
    """The error for 'no key anywhere': the provider's key guide plus the three ways to give it."""
    from ..errors import MissingKeyError

    env_zh = _env_hint(provider, " 和 ")
    env_en = _env_hint(provider, " and ")
    if provider.needs_secret:
        args = "api_key=... 和 secret_key=..."
        args_en = "api_key=... and secret_key=..."
        what_zh, what_en = "API Key 和 Secret Key", "API Key and Secret Key"
    else:
        args, args_en = "api_key=...", "api_key=..."
        what_zh, what_en = "密钥", "API key"
    zh = (f"没有找到{provider.label_zh}的{what_zh}。{provider.key_guide('zh')}"
          f"拿到后运行 `xedullm key set {provider.id}` 保存在本机（推荐，代码里就不用写密钥），"
          f"或设置环境变量 {env_zh}，或在代码里传入 {args}。")
    en = (f"No {what_en} found for {provider.label_en}. {provider.key_guide('en')} "
          f"Then run `xedullm key set {provider.id}` to save it on this computer (recommended: "
          f"no key in your code), or set the environment variable{'s' if provider.needs_secret else ''} "
          f"{env_en}, or pass {args_en} in your code.")
    return MissingKeyError(f"{zh} / {en}", provider=provider.id)


def _env_hint(provider: Provider, joiner: str) -> str:
    names = [provider.key_env[0]] if provider.key_env else []
    if provider.needs_secret and provider.secret_env:
        names.append(provider.secret_env[0])
    return joiner.join(names)


_GLM_SHAPE = re.compile(r"^[0-9A-Za-z]+\.[0-9A-Za-z]+$")


def key_format_warning(provider: Provider, key: Optional[str]) -> Optional[str]:
    """A bilingual warning when ``key`` does not look like this provider's keys, else None.

    Only a warning: providers change their formats, and a real key must never be refused
    because our guess is out of date. The text shows the masked key only.
    """
    key = clean_key(key)
    if not key or not provider.needs_key:
        return None
    shown = mask_key(key)
    if not key.isascii():
        return (f"密钥 {shown} 里有中文或全角字符，可能复制时多带了内容，请重新复制。 / "
                f"The key {shown} contains non-ASCII characters; it was probably copied with extra "
                f"text. Copy it again.")
    if provider.id != "openrouter" and key.startswith("sk-or-"):
        return (f"密钥 {shown} 看起来是 OpenRouter 的密钥，不是{provider.label_zh}的。 / "
                f"The key {shown} looks like an OpenRouter key, not a {provider.label_en} key.")
    if provider.key_prefix and not key.startswith(provider.key_prefix):
        return (f"{provider.label_zh}的密钥通常以 {provider.key_prefix} 开头，而这个密钥是 {shown}，请确认没有复制错。 / "
                f"{provider.label_en} keys usually start with {provider.key_prefix}; this one is {shown}. "
                f"Check that you copied the right key.")
    if provider.id == "glm" and not _GLM_SHAPE.match(key):
        return (f"智谱的密钥通常形如 id.secret（中间有一个点），而这个密钥是 {shown}，请确认复制完整。 / "
                f"Zhipu keys usually look like id.secret (one dot in the middle); this one is {shown}. "
                f"Check that you copied all of it.")
    return None


def known_secrets() -> List[str]:
    """Every key this process could leak: the environment's and the store's. For redaction."""
    from ..catalog import PROVIDERS
    from .store import open_store

    found = []
    for p in PROVIDERS:
        for name in (*p.key_env, *p.secret_env):
            value = clean_key(os.environ.get(name))
            if value:
                found.append(value)
    try:
        for stored in open_store().items().values():
            found.extend(k for k in (stored.api_key, stored.secret_key) if k)
    except Exception:  # noqa: BLE001 - used while reporting another error; never mask it
        pass
    return found


def provider_with_key() -> Optional[str]:
    """The first provider (catalog order) whose key is in the environment or the key store."""
    from ..catalog import PROVIDERS, api_form

    for provider in PROVIDERS:
        if not provider.needs_key:
            continue
        found = resolve_credentials(provider)
        if found.api_key and (found.secret_key or not api_form(provider, None, found.api_key).needs_secret):
            return provider.id
    return None
