"""Pictures in questions: OpenAI content parts, which models can see, files as data: URLs.

A message's ``content`` may be OpenAI's list of parts, ``{"type": "text", "text": …}`` and
``{"type": "image_url", "image_url": {"url": "https://…" | "data:image/png;base64,…"}}``.
Every layer keeps that one form; an adapter turns it into its provider's own (DashScope's
``{"image": …}``) or refuses with :func:`cannot_see` (no picture is ever dropped silently).
Where each provider's form was confirmed: docs/pictures-and-embeddings.md.
"""
from __future__ import annotations

import base64
import mimetypes
import os
import re
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .errors import BadRequestError

#: what the review, the ledger and stored conversations show instead of a picture
PLACEHOLDER = "[图片 / picture]"
#: prompt tokens one picture is counted as before the provider says (holds and budgets): Qwen-VL
#: charges at most 1280 a picture, GLM-4V and Kimi about as much for a photo
IMAGE_TOKEN_ESTIMATE = 1280

# Model ids that see pictures, as patterns, per catalog provider id (data, as the catalog is;
# a provider left out has no vision model we know of). Each pattern is matched anywhere in the
# lower-cased model id.
VISION_MODELS: Dict[str, Tuple[str, ...]] = {
    "qwen": ("qwen-vl", "qwen2-vl", "qwen2.5-vl", "qwen3-vl", "qvq", "qwen-omni", "qwen2.5-omni"),
    "glm": ("glm-4v", "glm-4.1v", "glm-4.5v"),
    "moonshot": ("vision", "kimi-latest", "kimi-k2.5"),
    "ernie": ("-vl",),            # ERNIE v2 (OpenAI-compatible) ernie-4.5-*-vl; the v1 API refuses
    "openrouter": ("vision", "-vl", "gpt-4o", "gemini", "claude", "llama-3.2-11b", "llama-3.2-90b", "pixtral"),
    "deepseek": (),
}
# Providers that take a picture's base64 bare, without the "data:image/…;base64," in front
# (GLM answers a data: URL with an error; docs/pictures-and-embeddings.md).
BARE_BASE64 = ("glm",)
# Shown in refusals: models a teacher can switch to.
VISION_EXAMPLES = "qwen-vl-max / qwen-vl-plus（通义千问）、glm-4v-flash（智谱，免费）、moonshot-v1-8k-vision-preview（Kimi）、ernie-4.5-8k-vl（文心 v2）"
VISION_EXAMPLES_EN = ("qwen-vl-max / qwen-vl-plus (Qwen), glm-4v-flash (GLM, free), "
                      "moonshot-v1-8k-vision-preview (Kimi), ernie-4.5-8k-vl (ERNIE v2)")

_DATA_URL = re.compile(r"^data:(image/[a-z0-9.+-]+);base64,", re.IGNORECASE)


def sees(provider_id: Optional[str], model: str) -> bool:
    """Whether ``model`` at this provider can see pictures. None (any OpenAI-compatible
    server, a classroom server) or a provider this table does not know: the other side
    decides, so yes."""
    patterns = VISION_MODELS.get(provider_id) if provider_id is not None else None
    if patterns is None:
        return True
    lowered = model.lower()
    return any(pattern in lowered for pattern in patterns)


def cannot_see(where_zh: str, where_en: str, model: str, why_zh: str = "", why_en: str = "") -> BadRequestError:
    err = BadRequestError(
        f"{where_zh}的模型 {model} 看不到图片{why_zh}：请去掉图片，或换一个能看图的模型，例如 {VISION_EXAMPLES}。/ "
        f"{where_en} model {model} cannot see pictures{why_en}: leave the picture out, or use a model that "
        f"can see, e.g. {VISION_EXAMPLES_EN}.", code="model_cannot_see")
    err.param = "messages"
    err.student_facing = True   # written for the student: the classroom server passes it on as it is
    return err


def is_image_part(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == "image_url"


def image_url(part: Dict[str, Any]) -> str:
    """The URL of an image part (OpenAI nests it; some tools send it as a bare string)."""
    value = part.get("image_url")
    return value.get("url", "") if isinstance(value, dict) else value if isinstance(value, str) else ""


def has_images(messages: Iterable[Dict[str, Any]]) -> bool:
    return any(count_images(m.get("content")) for m in messages)


def count_images(content: Any) -> int:
    return sum(1 for p in content if is_image_part(p)) if isinstance(content, list) else 0


def text_of(content: Any) -> str:
    """The text of a content: the string itself, or its text parts joined."""
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return content if isinstance(content, str) else ""


def data_url_bytes(url: str) -> Optional[int]:
    """How many bytes the picture in a data: URL holds (None for any other URL)."""
    match = _DATA_URL.match(url)
    if match is None:
        return None
    payload = len(url) - match.end()
    return payload * 3 // 4


def check_url(url: Any, where: str) -> str:
    """An https or data:image URL, else a clear BadRequestError (``where`` names the field)."""
    if isinstance(url, str) and (url.startswith("https://") or _DATA_URL.match(url)):
        return url
    shown = url[:40] if isinstance(url, str) else type(url).__name__
    err = BadRequestError(
        f"{where} 的图片地址应以 https:// 开头，或是 data:image/…;base64, 形式，收到 {shown!r}。/ "
        f"{where}: a picture's URL must start with https:// or be a data:image/…;base64, URL, got {shown!r}.",
        code="invalid_image_url")
    err.param = where
    raise err


def as_part(image: str) -> Dict[str, Any]:
    """A picture given to ``inference(images=[…])``: an https/data: URL as it is, or a file
    read and made into a data: URL with its type."""
    if not isinstance(image, (str, os.PathLike)):
        raise BadRequestError(f"images 里的每一项应是文件路径或 https:// 地址，收到 {type(image).__name__}。/ "
                              f"Each entry of images must be a file path or an https:// URL, got "
                              f"{type(image).__name__}.")
    text = os.fspath(image)
    if text.startswith(("https://", "data:")):
        return {"type": "image_url", "image_url": {"url": check_url(text, "images")}}
    if text.startswith("http://"):
        check_url(text, "images")
    if not os.path.isfile(text):
        raise BadRequestError(f"找不到图片文件 {text!r}：请检查路径，或给出 https:// 地址。/ "
                              f"No picture file {text!r}: check the path, or give an https:// URL.")
    mime = mimetypes.guess_type(text)[0]
    if mime is None or not mime.startswith("image/"):
        raise BadRequestError(f"{text!r} 看起来不是图片（支持 png、jpg、webp、gif）。/ "
                              f"{text!r} does not look like a picture (png, jpg, webp and gif work).")
    with open(text, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}


def question(text: str, images: Sequence[str]) -> List[Dict[str, Any]]:
    """``inference(text, images=[…])`` as one user message with parts: the text, then the pictures."""
    parts: List[Dict[str, Any]] = [{"type": "text", "text": text}]
    parts += [as_part(image) for image in images]
    return [{"role": "user", "content": parts}]


def bare_base64(messages: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The messages with every data: URL cut to its base64 (for the BARE_BASE64 providers)."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list) and count_images(content):
            content = [_bare(p) if is_image_part(p) else p for p in content]
            message = dict(message, content=content)
        out.append(message)
    return out


def _bare(part: Dict[str, Any]) -> Dict[str, Any]:
    url = image_url(part)
    match = _DATA_URL.match(url)
    return {"type": "image_url", "image_url": {"url": url[match.end():]}} if match else part


def without_pictures(messages: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The messages with every picture replaced by :data:`PLACEHOLDER` (to store or show)."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list) and count_images(content):
            content = [{"type": "text", "text": PLACEHOLDER} if is_image_part(p) else p for p in content]
            message = dict(message, content=content)
        out.append(message)
    return out
