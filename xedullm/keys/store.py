"""Where saved keys live: the OS keyring when one works, else a private JSON file.

The file is the fallback for machines without a keyring backend (servers, containers,
many classroom Linux boxes). It is created with mode 0600 inside a 0700 directory and
always replaced atomically, so a crash never leaves a half-written or world-readable file.

``XEDULLM_HOME`` moves the directory; ``XEDULLM_KEYRING=0`` forces the file even when a
keyring exists (tests, shared machines where the keyring is not trusted).
"""
from __future__ import annotations

import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Union

from ..errors import ConfigurationError

SERVICE = "xedullm"
KEYS_FILE = "keys.json"
_SECRET_SUFFIX = ".secret_key"


@dataclass(frozen=True)
class StoredKey:
    api_key: str = field(repr=False)
    secret_key: Optional[str] = field(default=None, repr=False)

    def __repr__(self) -> str:
        from .mask import mask_key

        return f"StoredKey(api_key={mask_key(self.api_key)!r}, secret_key={mask_key(self.secret_key)!r})"


def home_dir() -> Path:
    """The user's xedullm config directory (not created here)."""
    from ..paths import config_dir

    return config_dir()


class FileKeyStore:
    """Keys in ``<home>/keys.json``: ``{"version": 1, "keys": {id: {api_key, secret_key}}}``."""

    kind = "file"

    def __init__(self, path: Optional[Path] = None) -> None:
        self.path = Path(path) if path else home_dir() / KEYS_FILE

    def location(self) -> str:
        return str(self.path)

    def get(self, provider_id: str) -> Optional[StoredKey]:
        return self.items().get(provider_id)

    def items(self) -> Dict[str, StoredKey]:
        keys = {}
        for pid, entry in self._read().items():
            if isinstance(entry, dict) and entry.get("api_key"):
                keys[pid] = StoredKey(entry["api_key"], entry.get("secret_key") or None)
        return keys

    def set(self, provider_id: str, api_key: str, secret_key: Optional[str] = None) -> None:
        data = self._read()
        data[provider_id] = {"api_key": api_key, "secret_key": secret_key}
        self._write(data)

    def remove(self, provider_id: str) -> bool:
        data = self._read()
        if provider_id not in data:
            return False
        del data[provider_id]
        self._write(data)
        return True

    def _read(self) -> dict:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise self._error("读不了", "Cannot read", exc) from None
        self._tighten_mode()
        try:
            data = json.loads(raw)
            keys = data["keys"]
            if not isinstance(keys, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            # Deliberately no parser message: it could quote part of a key.
            raise ConfigurationError(
                f"密钥文件已损坏：{self.path}。请删除它，再用 `xedullm key set <服务商>` 重新保存密钥。 / "
                f"The key file is damaged: {self.path}. Delete it and save your keys again with "
                f"`xedullm key set <provider>`."
            ) from None
        return keys

    def _write(self, keys: dict) -> None:
        directory = self.path.parent
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            # mkstemp creates the file 0600 from the first byte; os.replace swaps it in whole.
            fd, tmp = tempfile.mkstemp(prefix=".keys-", suffix=".tmp", dir=str(directory))
        except OSError as exc:
            raise self._error("写不了", "Cannot write", exc) from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"version": 1, "keys": keys}, f, ensure_ascii=False, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            _unlink_quietly(tmp)
            raise self._error("写不了", "Cannot write", exc) from None
        except BaseException:
            _unlink_quietly(tmp)
            raise

    def _tighten_mode(self) -> None:
        """Repair a file someone made readable by others (e.g. copied with cp)."""
        if os.name != "posix":
            return
        try:
            if stat.S_IMODE(self.path.stat().st_mode) & 0o077:
                os.chmod(self.path, 0o600)
        except OSError:
            pass

    def _error(self, zh_verb: str, en_verb: str, exc: OSError) -> ConfigurationError:
        reason = exc.strerror or type(exc).__name__
        return ConfigurationError(
            f"{zh_verb}密钥文件 {self.path}（{reason}）。请检查该目录的权限，或用环境变量 XEDULLM_HOME 换一个目录。 / "
            f"{en_verb} the key file {self.path} ({reason}). Check the folder's permissions or point "
            f"XEDULLM_HOME at another folder."
        )


class KeyringKeyStore:
    """Keys in the OS keyring under service 'xedullm', one entry per provider id.

    The key itself is the stored password so people can find and delete it with their OS
    tools (Credential Manager, Keychain Access, Seahorse). ERNIE's secret key is a second
    entry ``ernie.secret_key``.
    """

    kind = "keyring"

    def __init__(self, backend) -> None:
        self.backend = backend

    def location(self) -> str:
        name = type(self.backend).__module__ + "." + type(self.backend).__name__
        return f"{name} (service {SERVICE!r})"

    def get(self, provider_id: str) -> Optional[StoredKey]:
        api_key = self._call("get_password", SERVICE, provider_id)
        if not api_key:
            return None
        secret = self._call("get_password", SERVICE, provider_id + _SECRET_SUFFIX)
        return StoredKey(api_key, secret or None)

    def items(self) -> Dict[str, StoredKey]:
        # A keyring cannot list its entries portably; the catalog says what to look for.
        from ..catalog import PROVIDERS

        found = {}
        for p in PROVIDERS:
            if p.needs_key:
                stored = self.get(p.id)
                if stored:
                    found[p.id] = stored
        return found

    def set(self, provider_id: str, api_key: str, secret_key: Optional[str] = None) -> None:
        # The secret first: a reader never sees a new API key paired with a stale secret.
        if secret_key:
            self._call("set_password", SERVICE, provider_id + _SECRET_SUFFIX, secret_key)
        else:
            self._delete(provider_id + _SECRET_SUFFIX)
        self._call("set_password", SERVICE, provider_id, api_key)

    def remove(self, provider_id: str) -> bool:
        removed = self._delete(provider_id)
        self._delete(provider_id + _SECRET_SUFFIX)
        return removed

    def _delete(self, username: str) -> bool:
        import keyring.errors

        try:
            self.backend.delete_password(SERVICE, username)
            return True
        except keyring.errors.PasswordDeleteError:
            return False
        except Exception as exc:  # noqa: BLE001 - any backend failure means the same to the user
            raise _keyring_error(exc) from None

    def _call(self, method: str, *args):
        try:
            return getattr(self.backend, method)(*args)
        except Exception as exc:  # noqa: BLE001 - backends raise many unrelated types
            raise _keyring_error(exc) from None


def _keyring_error(exc: Exception) -> ConfigurationError:
    # Only the exception type: backend messages are not ours to vouch for.
    return ConfigurationError(
        f"系统钥匙串不可用（{type(exc).__name__}）。请解锁钥匙串后重试，或设置环境变量 XEDULLM_KEYRING=0 改用本地密钥文件。 / "
        f"The system keyring is not available ({type(exc).__name__}). Unlock it and try again, or set "
        f"XEDULLM_KEYRING=0 to use the local key file instead."
    )


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def keyring_backend():
    """The OS keyring backend if a real one is usable, else None."""
    if os.environ.get("XEDULLM_KEYRING", "").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        import keyring
        from keyring.backends import chainer, fail, null

        backend = keyring.get_keyring()
    except Exception:  # noqa: BLE001 - a broken keyring install must not break key lookup
        return None
    if isinstance(backend, (fail.Keyring, null.Keyring)):
        return None
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return None
    return backend


#: How often a keyring is read again by :func:`store_stamp` watchers: a keyring has no mtime.
KEYRING_TTL = 2.0


def store_stamp() -> tuple:
    """What changes when the key store may have changed, cheaply: the private file's mtime,
    size and inode (one ``stat``), or for a keyring the current ``KEYRING_TTL`` slice of time
    (so a watcher reads it again at most that often)."""
    backend = keyring_backend()
    if backend is not None:
        import time

        return ("keyring", int(time.monotonic() // KEYRING_TTL))
    path = FileKeyStore().path
    try:
        st = path.stat()
    except OSError:
        return ("file", str(path), None)
    return ("file", str(path), st.st_mtime_ns, st.st_size, st.st_ino)


def open_store() -> Union[KeyringKeyStore, FileKeyStore]:
    backend = keyring_backend()
    return KeyringKeyStore(backend) if backend is not None else FileKeyStore()
