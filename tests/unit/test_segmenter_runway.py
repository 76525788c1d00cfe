"""The later-chunk time bound, tied to the listener's runway (Segmenter.set_runway)."""

from __future__ import annotations

import math

import pytest

from voxgate.errors import InvalidInput
from voxgate.sessions.segmenter import Chunk, Segmenter, SegmenterOptions

RATE = 30.0  # tokens a second
# One long sentence (about 330 characters, 70 tokens: over 2 s at 30 tokens/s), then more.
LONG = (
    "The parcel that you ordered on Monday left our warehouse this morning and is now with "
    "the courier who covers your area, which means that it should reach your door by "
    "Thursday afternoon unless the weather gets in the way or the address on the label "
    "turns out to be missing a flat number or a postcode that the driver needs to find you. "
)


def tokens(text: str) -> list[str]:
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + ([words[-1]] if words[-1] else [])


def stream(segmenter: Segmenter, text: str, runway: float | None, start: float = 0.0) -> float:
    """Push ``text`` at RATE from ``start``, polling at each deadline before the next token;
    ``runway`` is given before every call once the first chunk is out. Returns the end."""
    now = start
    for token in tokens(text):
        if segmenter.pending:
            segmenter.set_runway(runway)
        RELEASED.extend(segmenter.push(token, now))
        after = now + 1 / RATE
        due = segmenter.deadline
        if due is not None and due < after:
            RELEASED.extend(segmenter.poll(max(due, now)))
        now = after
    return now


RELEASED: list[Chunk] = []


@pytest.fixture(autouse=True)
def _clear() -> None:
    RELEASED.clear()


def test_a_steady_stream_with_a_long_runway_is_cut_only_at_sentence_ends() -> None:
    segmenter = Segmenter(SegmenterOptions())
    stream(segmenter, "Sure, let me check on that for you. " + LONG * 3, runway=1e6)
    RELEASED.extend(segmenter.flush())
    later = RELEASED[1:]
    assert len(later) >= 3
    assert all(c.reason in ("sentence", "flush") for c in later)
    assert all(c.text.endswith(". ") or c.reason == "flush" for c in later)


def test_without_a_runway_the_time_bound_cuts_a_long_sentence() -> None:
    segmenter = Segmenter(SegmenterOptions())
    stream(segmenter, "Sure, let me check on that for you. " + LONG, runway=None)
    assert "time" in [c.reason for c in RELEASED[1:]]


def test_a_stall_gets_its_chunk_out_when_the_runway_runs_out() -> None:
    segmenter = Segmenter(SegmenterOptions())
    end = stream(segmenter, "Sure, let me check on that for you. The parcel left our", 1e6)
    assert [c.text for c in RELEASED] == ["Sure, let me check on that for you. "]
    out_at = end + 1.2  # the listener's audio runs out then, less the upstream's latency
    segmenter.set_runway(out_at)
    assert segmenter.deadline == out_at  # long after the 2 s time bound, before a pause
    assert segmenter.poll(out_at - 0.01) == []
    chunks = segmenter.poll(out_at)
    assert [(c.text, c.reason) for c in chunks] == [
        ("The parcel left ", "time")
    ]  # "our" may still grow


def test_a_stall_with_a_short_runway_does_not_wait_for_the_time_bound() -> None:
    segmenter = Segmenter(SegmenterOptions(first_min_chars=5))
    assert [c.text for c in segmenter.push("Okay, so the parcel left our ", 0.0)] == ["Okay, "]
    segmenter.set_runway(0.4)  # well before the 2 s time bound
    assert segmenter.deadline == 0.4
    assert [(c.text, c.reason) for c in segmenter.poll(0.4)] == [("so the parcel left our", "time")]


def test_nothing_is_cut_while_audio_is_on_its_way() -> None:
    segmenter = Segmenter(SegmenterOptions(first_min_chars=5))
    segmenter.push("Okay, so the parcel left our ", 0.0)
    segmenter.set_runway(math.inf)  # a chunk is being synthesised
    assert segmenter.deadline is None
    assert segmenter.poll(100.0) == []
    segmenter.set_runway(101.0)  # it is done: the listener has audio until 101 s
    assert segmenter.deadline == 101.0


def test_a_listener_already_out_of_audio_gets_the_time_bound() -> None:
    segmenter = Segmenter(SegmenterOptions(first_min_chars=5, time_bound=2.0))
    segmenter.push("Okay, so the parcel left our ", 0.0)
    segmenter.set_runway(-1.0)  # ran out before the text began to wait
    assert segmenter.deadline == 2.0
    segmenter.set_runway(None)  # not known: the time bound alone
    assert segmenter.deadline == 2.0


def test_the_first_chunk_keeps_its_own_bound() -> None:
    segmenter = Segmenter(SegmenterOptions())
    segmenter.set_runway(1e6)
    segmenter.push("Let me look that up for ", 0.0)
    assert segmenter.deadline == 0.5


def test_a_disabled_time_bound_stays_disabled() -> None:
    segmenter = Segmenter(SegmenterOptions(first_min_chars=5, time_bound=math.inf))
    segmenter.push("Okay, so the parcel left our ", 0.0)
    segmenter.set_runway(1.0)
    assert segmenter.deadline is None


@pytest.mark.parametrize("bad", [math.nan, "1.0", True])
def test_bad_runway(bad: object) -> None:
    with pytest.raises(InvalidInput, match="out_at must be"):
        Segmenter().set_runway(bad)  # type: ignore[arg-type]
