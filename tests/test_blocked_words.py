"""The blocked-words matcher on its own: width, case and spaces ignored; streams masked even when
a word is split across chunks. (The classroom server's use of it is tested with the server.)"""
from hypothesis import given, strategies as st

from xedullm.server.classroom.blocked_words import MASK, BlockedWords, StreamMasker

WORDS = BlockedWords(["坏词", "bad word", "赌博网站"])


def test_width_case_and_spaces_do_not_hide_a_word():
    for text in ("这是坏词", "这是 坏 词", "ＢＡＤ　ＷＯＲＤ!", "a BadWord b", "赌 博 网 站"):
        assert WORDS.spans(text), text
    assert not WORDS.spans("这是好词，badminton world, ba d-wo rd")  # "-" is not a space: no match
    assert WORDS.mask("他说 坏 词 了")[0] == f"他说 {MASK * 3} 了"


def test_a_word_split_across_chunks_is_masked():
    masker = StreamMasker(WORDS)
    shown = "".join(masker.feed(p) for p in ["前面", "坏", "", "词", "后面 b", "ad ", "word!"]) + masker.close()
    assert "坏" not in shown and "bad" not in shown and shown.startswith("前面") and shown.endswith("!")
    assert masker.masked == 2


@given(st.lists(st.text(alphabet="坏词好 badwor", max_size=6), max_size=12))
def test_streaming_masks_exactly_what_masking_the_whole_answer_masks(pieces):
    masker = StreamMasker(WORDS)
    shown = "".join(masker.feed(p) for p in pieces) + masker.close()
    whole, count = WORDS.mask("".join(pieces))
    assert shown == whole and masker.masked == count
