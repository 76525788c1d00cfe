"""The SSE parser, fed the same bytes in every possible split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voxgate.upstream.sse import ServerSentEvent, SSEParser

STREAM = (
    b": keep-alive\n\n"
    b'event: speech.audio.delta\ndata: {"audio_data": "AAAA"}\n\n'
    b'event: speech.audio.delta\r\ndata: {"audio_data":\r\ndata:  "BBBB"}\r\n\r\n'
    b"event: speech.audio.done\rdata: {}\r\r"
)
EXPECTED = [
    ServerSentEvent("speech.audio.delta", '{"audio_data": "AAAA"}'),
    ServerSentEvent("speech.audio.delta", '{"audio_data":\n "BBBB"}'),
    ServerSentEvent("speech.audio.done", "{}"),
]


def feed_all(pieces: list[bytes]) -> list[ServerSentEvent]:
    parser = SSEParser()
    events: list[ServerSentEvent] = []
    for piece in pieces:
        events.extend(parser.feed(piece))
    return events


def test_whole_stream_at_once() -> None:
    assert feed_all([STREAM]) == EXPECTED


def test_byte_by_byte_including_split_crlf() -> None:
    assert feed_all([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=20))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    pieces = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert feed_all(pieces) == EXPECTED


def test_event_without_data_is_not_dispatched_and_type_defaults_to_message() -> None:
    events = feed_all([b"event: nothing\n\ndata: hi\n\n"])
    assert events == [ServerSentEvent("message", "hi")]


def test_bom_and_id_and_unknown_fields() -> None:
    events = feed_all([b"\xef\xbb\xbfid: 7\nretry: 10\nfoo: bar\ndata:x\n\n"])
    assert events == [ServerSentEvent("message", "x", id="7")]


def test_unfinished_event_is_pending() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: speech.audio.delta\ndata: {}") == []
    assert parser.pending()


def test_oversized_line_is_refused() -> None:
    parser = SSEParser()
    with pytest.raises(ValueError, match="longer than"):
        parser.feed(b"data: " + b"x" * (16 * 1024 * 1024 + 1))
