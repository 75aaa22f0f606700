"""`xedullm presets [NAME]`: the classroom prompt presets, or one preset's whole text."""
from __future__ import annotations

from .output import echo, t


def register(commands) -> None:
    parser = commands.add_parser(
        "presets", help="课堂提示词预设 / classroom prompt presets",
        description="列出课堂提示词预设；给出名字时显示它的完整提示词。用法：xedullm serve --preset 名字，"
                    "或在代码里 chatbot.use_preset('名字')。 / List the classroom prompt presets; with a name, "
                    "show its whole prompt. Use one with `xedullm serve --preset NAME` or chatbot.use_preset('NAME').")
    parser.add_argument("name", nargs="?", default=None, help="预设的 id 或名字 / a preset's id or name")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..classroom_presets import find_preset, presets

    if args.name:
        preset = find_preset(args.name)
        echo(f"{preset.name_zh} / {preset.name_en}  ({preset.id})")
        echo(preset.description)
        echo()
        echo(preset.text)
        return 0
    for preset in presets():
        # One block per preset: nothing is cut at any terminal width.
        echo(f"{preset.id}  {preset.name_zh} / {preset.name_en}")
        echo(f"    {preset.description}")
    echo()
    echo(t(args.lang, "查看完整提示词：xedullm presets 名字；使用：xedullm serve --preset 名字",
           "Whole prompt: xedullm presets NAME; use it: xedullm serve --preset NAME"))
    return 0
