"""Word marks and the heard/unheard cut inside a chunk."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from voxgate.sessions.alignment import estimate_words, heard_cut

TEXT = "Hello there, how are you today? Fine."


def test_words_cover_the_duration_in_order() -> None:
    words = estimate_words(TEXT, 3000)
    assert [w.text for w in words] == TEXT.split()
    assert all(TEXT[w.char_start : w.char_end] == w.text for w in words)
    assert words[0].start_ms > 0  # leading silence
    assert words[-1].end_ms < 3000
    for a, b in itertools.pairwise(words):
        assert a.end_ms == b.start_ms


def test_punctuation_earns_a_pause_and_long_words_more_time() -> None:
    words = {w.text: w.end_ms - w.start_ms for w in estimate_words("a extraordinary, b", 2000)}
    assert words["extraordinary,"] > 5 * words["a"]


def test_cut_at_the_edges() -> None:
    assert heard_cut(TEXT, 3000, 0) == 0
    assert heard_cut(TEXT, 3000, -5) == 0
    assert heard_cut(TEXT, 3000, 3000) == len(TEXT)
    assert heard_cut(TEXT, 3000, 99999) == len(TEXT)


def test_a_word_is_heard_once_half_of_it_played() -> None:
    words = estimate_words(TEXT, 3000)
    there = words[1]
    just_before_mid = (there.start_ms + there.end_ms) / 2 - 1
    assert TEXT[: heard_cut(TEXT, 3000, just_before_mid)] == "Hello "
    assert TEXT[: heard_cut(TEXT, 3000, just_before_mid + 2)] == "Hello there, "


@given(st.text(min_size=1, max_size=200), st.floats(0, 10_000), st.floats(1, 10_000))
def test_cut_is_a_prefix_and_grows_with_time(text: str, played: float, duration: float) -> None:
    cut = heard_cut(text, duration, played)
    assert 0 <= cut <= len(text)
    assert heard_cut(text, duration, played + 100) >= cut
