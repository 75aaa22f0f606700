"""Where classroom state lives, chosen by URL: ``open_store(url)``.

``sqlite:///path/to/dir`` (or a plain directory path) is the embedded default;
``postgresql://user:password@host:5432/db`` is shared by several servers. A backend is
one module with a :class:`~.base.Store` subclass plus its scheme in ``BACKENDS``.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Dict, Optional, Tuple, Union
from urllib.parse import urlsplit

from ...errors import ConfigurationError
from .contract import Store, default_data_dir

STORE_ENV = "XEDULLM_STORE"

# URL scheme -> (module, class); imported only when chosen
BACKENDS: Dict[str, Tuple[str, str]] = {
    "sqlite": ("sqlite", "SQLiteStore"),
    "postgresql": ("postgresql", "PostgreSQLStore"),
}


def open_store(url: Optional[str] = None, data_dir: Union[str, Path, None] = None) -> Store:
    """The store at ``url`` (else ``$XEDULLM_STORE``, else SQLite in ``data_dir`` or the default)."""
    url = url or os.environ.get(STORE_ENV) or None
    if url is None:
        return _backend("sqlite")(data_dir or default_data_dir())
    scheme = urlsplit(url).scheme.lower()
    if "://" not in url:  # a plain folder
        return _backend("sqlite")(url)
    scheme = scheme.split("+")[0]   # postgresql+psycopg://… is a common spelling
    if scheme == "postgres":
        scheme = "postgresql"
    if scheme not in BACKENDS:
        raise ConfigurationError(
            f"不认识的存储地址类型 {scheme!r}：可用 {', '.join(s + '://' for s in BACKENDS)}，"
            f"例如 sqlite:///D:/课堂数据。/ Unknown store URL scheme {scheme!r}: use one of "
            f"{', '.join(s + '://' for s in BACKENDS)}, e.g. sqlite:///home/teacher/class.")
    if scheme == "sqlite":
        # As SQLAlchemy spells it: sqlite:///relative/dir, sqlite:////absolute/dir, sqlite:///C:/dir
        path = urlsplit(url).path[1:]
        return _backend("sqlite")(path or data_dir or default_data_dir())
    return _backend(scheme)(url)


def _backend(scheme: str):
    module, name = BACKENDS[scheme]
    return getattr(importlib.import_module(f".{module}", __name__), name)
