"""Words the teacher does not want in a question or an answer, for classes of minors.

Matching ignores width (ｆｕｃｋ, full-width digits), case, spaces and invisible characters
(Unicode category Cf — zero-width space, ZWJ/ZWNJ, word joiner, soft hyphen, BOM, bidi marks,
tag characters — plus variation selectors and the combining grapheme joiner), so "坏 词",
"ＢＡＤ" and "b\u200bad" are caught like "坏词" and "bad"; a masked word's invisible
characters are masked with it. A question with one is refused before it goes upstream; in
an answer each one is masked before the student sees it. A stream holds back just enough text
to catch a word split across chunks.
"""
from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

from ...errors import ConfigurationError

MASK = "▇"

# A short built-in list (--builtin-blocked-words): crude insults and adult terms that have no
# place in a K-12 chat. Teachers add their own with --blocked-words FILE.
BUILTIN = (
    "傻逼", "煞笔", "操你妈", "草泥马", "你妈逼", "狗日的", "王八蛋", "去死吧",
    "色情", "黄片", "裸聊", "约炮", "赌博网站", "毒品购买",
    "fuck", "motherfucker", "bitch", "porn", "nude pics",
)


def ignored(ch: str) -> bool:
    """Characters that do not show, or only change how the one before them shows."""
    code = ord(ch)
    return (unicodedata.category(ch) == "Cf" or 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF
            or 0xE0000 <= code <= 0xE007F or code in (0x034F, 0x180B, 0x180C, 0x180D, 0x180F, 0x115F,
                                                    0x1160, 0x3164, 0xFFA0))


def normalise(text: str) -> Tuple[str, List[int]]:
    """``text`` without width, case, spaces or invisible characters, and for each kept
    character its index in ``text``."""
    out: List[str] = []
    where: List[int] = []
    for i, ch in enumerate(text):
        if ignored(ch):
            continue
        for piece in unicodedata.normalize("NFKC", ch).casefold():
            if not piece.isspace() and not ignored(piece):
                out.append(piece)
                where.append(i)
    return "".join(out), where


class BlockedWords:
    def __init__(self, words: Iterable[str]) -> None:
        self.words = sorted({normalise(w)[0] for w in words if normalise(w)[0]}, key=len, reverse=True)
        self.longest = max((len(w) for w in self.words), default=0)

    def __bool__(self) -> bool:
        return bool(self.words)

    @classmethod
    def load(cls, path: Optional[str], builtin: bool = False) -> "BlockedWords":
        words: List[str] = list(BUILTIN) if builtin else []
        if path:
            try:
                text = Path(path).expanduser().read_text("utf-8-sig")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigurationError(
                    f"读不了屏蔽词文件 {path}（{type(exc).__name__}）：请给出一个 UTF-8 文本文件，每行一个词。/ "
                    f"Cannot read the blocked-words file {path} ({type(exc).__name__}): give a UTF-8 text file "
                    f"with one word or phrase per line.") from None
            words += [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        return cls(words)

    def spans(self, text: str) -> List[Tuple[int, int]]:
        """(start, end) in ``text`` of every blocked word, longest first where they overlap."""
        flat, where = normalise(text)
        found: List[Tuple[int, int]] = []
        taken = [False] * len(flat)
        for word in self.words:
            start = flat.find(word)
            while start != -1:
                end = start + len(word)
                if not any(taken[start:end]):
                    last = where[end - 1] + 1
                    while last < len(text) and ignored(text[last]):
                        last += 1    # a trailing variation selector or tag goes with the word
                    found.append((where[start], last))
                    for k in range(start, end):
                        taken[k] = True
                start = flat.find(word, start + 1)
        return sorted(found)

    def found_in(self, texts: Sequence[str]) -> bool:
        return any(self.spans(t) for t in texts)

    def mask(self, text: str) -> Tuple[str, int]:
        """``text`` with each blocked word masked, and how many were."""
        spans = self.spans(text)
        if not spans:
            return text, 0
        parts, last = [], 0
        for start, end in spans:
            parts += [text[last:start], MASK * (end - start)]
            last = end
        parts.append(text[last:])
        return "".join(parts), len(spans)


class StreamMasker:
    """Masks a streamed answer piece by piece. Text is held back until no blocked word could
    still end inside it, so a word split across two chunks is masked too."""

    def __init__(self, words: BlockedWords) -> None:
        self._words = words
        self._held = ""
        self.masked = 0

    def feed(self, piece: str) -> str:
        """What can be shown now."""
        self._held += piece
        text, count = self._words.mask(self._held)
        self.masked += count
        # Keep back enough original characters to hold the longest word (spaces may sit
        # between its letters, so a generous margin): it may still be completing.
        keep = _tail_for(text, self._words.longest - 1)
        shown, self._held = text[:len(text) - keep], text[len(text) - keep:]
        return shown

    def close(self) -> str:
        """The rest, at the end of the answer."""
        text, count = self._words.mask(self._held)
        self.masked += count
        self._held = ""
        return text


def _tail_for(text: str, letters: int) -> int:
    """How many characters at the end of ``text`` hold ``letters`` non-space characters."""
    if letters <= 0:
        return 0
    seen = 0
    for i in range(len(text) - 1, -1, -1):
        if text[i] == MASK:
            return len(text) - 1 - i  # nothing before a mask can join a word after it
        if not text[i].isspace() and not ignored(text[i]):
            seen += 1
            if seen == letters:
                return len(text) - i
    return len(text)
