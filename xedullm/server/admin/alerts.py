"""What the teacher must know at once: problems only the teacher can fix.

One student's typo is that student's business; the provider refusing the teacher's key, an
empty balance, or an unreachable provider stop the whole class. They are told apart in the
ledger: such failures happened to requests the classroom had already *admitted* (a student
refused by our own policy never reached the provider). An alert stays while the latest
admitted request within ``WINDOW`` seconds failed that way, and clears with the next answer.

With fallbacks (``serve --fallback``) the class goes on, but the teacher should still know:
while the latest answers came from a fallback, an alert names the provider that did not answer
and the one that took over — ``upstream_quota`` when the primary's balance ran out (only the
teacher can top it up), else ``upstream_down`` — and clears when the primary answers again.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional

from ... import catalog
from ...errors import ConfigurationError

WINDOW = 600.0
NEARLY = 0.9

# The outcome (OpenAI error code) a ledger row records for each upstream trouble.
_UPSTREAM = {
    "invalid_api_key": "upstream_auth",
    "insufficient_quota": "upstream_quota",
    "upstream_unreachable": "upstream_down",
    "upstream_timeout": "upstream_down",
    "upstream_error": "upstream_down",
}


def alerts(rows: Iterable[Dict[str, Any]], *, now: float, provider: Any, tokens_today: int,
           daily_budget: Optional[int], primary: Optional[str] = None) -> List[Dict[str, Any]]:
    """The alerts for the overview, from the latest ledger rows (newest first). ``primary`` is
    the id the ledger records for the teacher's own provider (default: ``provider.id``)."""
    found: List[Dict[str, Any]] = []
    primary = primary or (provider.id if provider else None)
    for row in rows:
        if row["started"] < now - WINDOW:
            break
        if not row.get("admitted"):
            continue
        answered = row.get("provider")
        if row["outcome"] == "ok" and answered and primary and answered != primary:
            took_over = next((a for a in found if a.get("fallback") == answered), None)
            if took_over is None:
                found.append(_fallback_alert(provider, primary, answered, row.get("fallback_reason"),
                                             since=row["started"]))
            else:
                took_over["since"] = row["started"]   # the run of fallback answers began earlier
            continue
        if row["outcome"] in ("ok", "disconnected"):
            break
        kind = _UPSTREAM.get(row["outcome"])
        if kind and all(a["kind"] != kind for a in found):
            found.append(_alert(kind, provider, since=row["started"]))
    if daily_budget and tokens_today >= NEARLY * daily_budget:
        found.append(_budget_alert(tokens_today, daily_budget))
    return found


def _alert(kind: str, provider: Any, since: float) -> Dict[str, Any]:
    label_zh = provider.label_zh if provider else "服务商"
    label_en = provider.label_en if provider else "the provider"
    key_url = getattr(provider, "key_url", "") or ""
    pid = provider.id if provider else "PROVIDER"
    if kind == "upstream_auth":
        where_zh = f"到 {key_url} 查看或新建密钥，" if key_url else "检查或换一个密钥，"
        where_en = f"check or create a key at {key_url}, " if key_url else "check or replace the key, "
        zh = (f"{label_zh}拒绝了老师的密钥：全班现在都用不了。请{where_zh}"
              f"在本页的“密钥”框里粘贴新密钥（或运行 xedullm key set {pid}），几秒内就会生效，不用重启服务器。")
        en = (f"{label_en} refused your key: the whole class is stopped. Please {where_en}"
              f"paste the new key in the key box on this page (or run `xedullm key set {pid}`): it is used "
              f"within seconds, no restart needed.")
        if getattr(provider, "key_kinds_zh", ""):   # ERNIE: which of its two kinds of key is which
            zh += provider.key_kinds_zh
            en += " " + provider.key_kinds_en
    elif kind == "upstream_quota":
        where_zh = f"（{key_url} 所在的控制台）" if key_url else ""
        where_en = f" (the console at {key_url})" if key_url else ""
        zh = f"{label_zh}账户的余额或免费额度已用完：全班现在都用不了。请到控制台{where_zh}充值，或换一个有余额的密钥。"
        en = (f"Your {label_en} account has run out of balance or free quota: the whole class is stopped. "
              f"Top it up in the console{where_en}, or use another key with balance.")
    else:
        zh = f"连不上{label_zh}，或它一直出错：请检查这台电脑的网络；一直这样请换一个服务商或稍后再上课。"
        en = (f"{label_en} cannot be reached or keeps failing: check this computer's network; if it "
              f"persists, switch provider or try again later.")
    alert = {"kind": kind, "since": since, "zh": zh, "en": en, "message": f"{zh} / {en}"}
    if kind in ("upstream_auth", "upstream_quota") and provider is not None:
        alert["key_box"] = f"#key-{provider.id}"   # the admin page links the alert to the key box
    return alert


# What the alert says of a primary that failed for a reason other than its balance.
_DOWN = {
    "upstream_unreachable": ("连不上", "could not be reached"),
    "upstream_timeout": ("响应超时", "timed out"),
    "upstream_error": ("一直出错", "kept failing"),
    "rate_limit_exceeded": ("请求太多、被限流", "is rate-limiting requests"),
}


def _fallback_alert(provider: Any, primary: str, answered: str, reason: Optional[str],
                    since: float) -> Dict[str, Any]:
    """``reason``: the primary's failure (``ChatResult.fallback_reason``); None in rows written
    before the ledger kept it."""
    label_zh = provider.label_zh if provider else primary
    label_en = provider.label_en if provider else primary
    try:
        other = catalog.find_provider(answered)
        other_zh, other_en = other.label_zh, other.label_en
    except ConfigurationError:
        other_zh = other_en = answered
    back_zh, back_en = "它恢复后会自动改回。", f"It switches back by itself once {label_en} recovers."
    if reason == "insufficient_quota":
        key_url = getattr(provider, "key_url", "") or ""
        where_zh = f"（{key_url} 所在的控制台）" if key_url else ""
        where_en = f" (the console at {key_url})" if key_url else ""
        zh = (f"{label_zh}账户的余额或免费额度已用完，现在由备用的{other_zh}接替回答。"
              f"请到控制台{where_zh}充值，或换一个有余额的密钥；充值后会自动改回{label_zh}。")
        en = (f"Your {label_en} account has run out of balance or free quota; the fallback {other_en} is "
              f"answering instead. Top it up in the console{where_en}, or use another key with balance; it "
              f"switches back to {label_en} by itself once it has balance.")
        kind = "upstream_quota"
    elif reason in _DOWN:
        what_zh, what_en = _DOWN[reason]
        zh = f"{label_zh}{what_zh}，现在由备用的{other_zh}接替回答。请检查网络，或稍后再看；{back_zh}"
        en = (f"{label_en} {what_en}; the fallback {other_en} is answering instead. Check the network, or "
              f"look again later. {back_en}")
        kind = "upstream_down"
    else:   # skipped while its circuit was open, or a row that does not say why
        zh = (f"{label_zh}没有回答（连不上、出错、太忙或余额用完），现在由备用的{other_zh}接替回答。"
              f"请检查网络和{label_zh}账户的余额；{back_zh}")
        en = (f"{label_en} did not answer (unreachable, failing, busy or out of balance); the fallback {other_en} "
              f"is answering instead. Check the network and your {label_en} balance. {back_en}")
        kind = "upstream_down"
    return {"kind": kind, "since": since, "provider": primary, "fallback": answered, "reason": reason,
            "zh": zh, "en": en, "message": f"{zh} / {en}"}


def key_missing_alert(provider: Any) -> Dict[str, Any]:
    """The server started without the teacher's key: where to paste it."""
    zh = (f"还没有{provider.label_zh}的密钥：学生现在看到“老师还在设置”。请到 {provider.key_url} 获取密钥，"
          f"粘贴到本页的“密钥”框里（只能在运行服务器的这台电脑上粘贴），保存后下一个问题就能回答。")
    en = (f"No {provider.label_en} key yet: students are told the teacher is still setting up. Get a key at "
          f"{provider.key_url} and paste it in the key box on this page (only on the computer running the "
          f"server); the next question after saving is answered.")
    return {"kind": "key_missing", "since": None, "zh": zh, "en": en, "message": f"{zh} / {en}",
            "key_box": f"#key-{provider.id}"}


def _budget_alert(used: int, budget: int) -> Dict[str, Any]:
    percent = min(100, round(100 * used / budget))
    if used >= budget:
        zh = f"全班今天的 token 预算已用完（{used}/{budget}）：学生的请求都会被拒绝。需要时在下面的设置里调高预算。"
        en = (f"The class's token budget for today is used up ({used}/{budget}): students' requests are "
              f"refused. Raise the budget in the settings below if needed.")
    else:
        zh = f"全班今天的 token 预算已用 {percent}%（{used}/{budget}）：需要时在下面的设置里调高预算。"
        en = (f"{percent}% of the class's token budget for today is used ({used}/{budget}): raise it in "
              f"the settings below if needed.")
    return {"kind": "budget_nearly_used", "since": None, "zh": zh, "en": en, "message": f"{zh} / {en}"}
