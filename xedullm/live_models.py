"""When a provider says the *default* model does not exist (it was retired after the catalog was
written): the models the provider lists now and the closest one, for the error, `xedullm key
check` and `xedullm models PROVIDER` alike (issue 26)."""
from __future__ import annotations

from typing import Optional, Sequence

_SHOWN = 15   # a long list (OpenRouter has hundreds) is cut, the closest match is always named


def closest_model(model: str, models: Sequence[str]) -> Optional[str]:
    import difflib  # only on this error path

    lowered = {m.lower(): m for m in models}
    # A dated snapshot or a new version of the same line ('qwen-plus-2026-09-11') comes first.
    same_line = sorted((m for m in lowered if m.startswith(model.lower())), key=len)
    if same_line:
        return lowered[same_line[0]]
    close = difflib.get_close_matches(model.lower(), list(lowered), n=1, cutoff=0.3)
    return lowered[close[0]] if close else None


def default_gone_text(provider_id: str, model: str, models: Sequence[str]) -> str:
    """'The default model X is gone; the provider lists now: …; closest: Y' in Chinese and English."""
    models = [m for m in models if m != model]
    near = closest_model(model, models)
    shown = ", ".join(models[:_SHOWN]) + (f" …（共 {len(models)} 个 / {len(models)} in all）"
                                            if len(models) > _SHOWN else "")
    zh = f"默认模型 {model} 服务商已不再提供（可能已下线）。"
    en = f"The default model {model} is no longer offered by the provider (probably retired)."
    if models:
        zh += f"{provider_id} 现在提供：{shown}。"
        en += f" {provider_id} lists now: {shown}."
    if near:
        zh += f"最接近的是 {near}：写 model='{near}'（命令行 --model {near}）。"
        en += f" Closest: {near}; pass model='{near}' (--model {near} on the command line)."
    else:
        zh += "请用 model= 选一个上面的模型。"
        en += " Pick one of them with model=."
    return f"{zh} / {en}"


def explain_default_gone(err, model: str, models: Sequence[str]):
    """``err`` (a ModelNotFoundError for the default model) again, naming the live models."""
    new = type(err)(provider=err.provider, status_code=err.status_code, code=err.code,
                    detail=err.detail, hint=default_gone_text(err.provider or "", model, models))
    new.models = list(models)
    new.closest = closest_model(model, [m for m in models if m != model])
    return new
