"""The SSE decoder against the framing rules of protocols.md 0.1, fed in every split."""
import pytest

from xedullm.sse import SSEDecoder

MIXED = (
    b": keep-alive\n\n"
    b"data: {\"a\":1}\r\n\r\n"
    b"id:1\revent:result\r:HTTP_STATUS/200\rdata:{\"b\":2}\r\r"
    b"data: line1\ndata: line2\n\n"
    b"retry: 3000\nunknown: x\ndata:  two spaces\n\n"
    b"data: [DONE]\n\n"
)


def decode(raw: bytes, step: int):
    decoder = SSEDecoder()
    events = []
    for i in range(0, len(raw), step):
        events.extend(decoder.feed(raw[i:i + step]))
    events.extend(decoder.close())
    return events


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_every_split_gives_the_same_events(step):
    events = decode(MIXED, step)
    assert [e.data for e in events] == ['{"a":1}', '{"b":2}', "line1\nline2", " two spaces", "[DONE]"]
    assert events[0].comments == ["keep-alive"]
    assert (events[1].event, events[1].id, events[1].comments) == ("result", "1", ["HTTP_STATUS/200"])
    assert events[3].retry == 3000


def test_eof_without_blank_line_still_delivers_last_event():
    assert [e.data for e in decode(b"data: {\"x\":1}", 4)] == ['{"x":1}']


def test_comment_only_stream_yields_nothing():
    assert decode(b": keep-alive\n\n: keep-alive\n\n", 5) == []


def test_invalid_utf8_is_replaced_not_fatal():
    (event,) = decode(b'data: {"t":"\xff\xfe ok"}\n\n', 3)
    assert event.data == '{"t":"\ufffd\ufffd ok"}'


def test_multibyte_character_split_across_chunks():
    raw = 'data: {"t":"你好"}\n\n'.encode()
    assert decode(raw, 1)[0].data == '{"t":"你好"}'
