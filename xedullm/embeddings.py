"""Embedding models as data: which providers have them, the one used by default, and how many
texts one request may carry there. ``Client.embed`` splits longer lists into such batches.

Where each provider's limits were confirmed: docs/pictures-and-embeddings.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .errors import BadRequestError


@dataclass(frozen=True)
class EmbeddingModels:
    default: Optional[str]       # None: the engine picks (a classroom server: the teacher's)
    models: Tuple[str, ...]
    batch: int                   # texts per request


# Per catalog provider id; ``None`` is any OpenAI-compatible server (base_url alone), and
# "classroom" a classroom server (Client(xedu_url=…)). Providers left out have none we know of.
EMBEDDING_MODELS: Dict[Optional[str], EmbeddingModels] = {
    "qwen": EmbeddingModels("text-embedding-v4", ("text-embedding-v4", "text-embedding-v3", "text-embedding-v2"), 10),
    "glm": EmbeddingModels("embedding-3", ("embedding-3", "embedding-2"), 64),
    "local": EmbeddingModels(None, (), 32),
    None: EmbeddingModels("text-embedding-3-small", (), 256),
    "classroom": EmbeddingModels(None, (), 64),
}
WITH_EMBEDDINGS_ZH = "阿里-通义千问（text-embedding-v4）、智谱（embedding-3）、本地模型，或任何 OpenAI 兼容服务"
WITH_EMBEDDINGS_EN = "Qwen (text-embedding-v4), GLM (embedding-3), the local model, or any OpenAI-compatible service"
# One text at most this long (characters): far above a paragraph, below every provider's limit.
MAX_TEXT_CHARS = 8000


def models_for(key: Optional[str], label_zh: str, label_en: str) -> EmbeddingModels:
    found = EMBEDDING_MODELS.get(key)
    if found is None:
        err = BadRequestError(
            f"{label_zh}没有文本向量（embedding）模型：请换用 {WITH_EMBEDDINGS_ZH}。/ "
            f"{label_en} has no embedding model: use {WITH_EMBEDDINGS_EN}.", code="no_embedding_model")
        err.student_facing = True   # written for people: the classroom server passes it on as it is
        raise err
    return found


def checked_texts(texts: Any) -> List[str]:
    """``embed()``'s input: one text or a non-empty list of non-empty texts."""
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, (list, tuple)) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise BadRequestError("embed() 需要一段文字，或非空的文字列表（每段都不能为空）。/ "
                              "embed() takes a text or a non-empty list of texts (none of them empty).")
    for i, text in enumerate(texts):
        if len(text) > MAX_TEXT_CHARS:
            raise BadRequestError(f"第 {i + 1} 段文字太长（最多 {MAX_TEXT_CHARS} 字），请切成小段再向量化。/ "
                                  f"Text {i + 1} is too long (at most {MAX_TEXT_CHARS} characters): split it "
                                  f"into smaller passages first.")
    return list(texts)
