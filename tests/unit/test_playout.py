"""The playout buffer: one frame per slot on a simulated monotonic clock, whatever the upstream."""

from __future__ import annotations

import array
import itertools
import random
from collections import deque
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxgate.codecs.playout import Frame, PlayoutBuffer, PlayoutOptions
from voxgate.errors import InvalidInput

OPTIONS = PlayoutOptions()
FRAME = OPTIONS.frame_bytes  # 960 bytes: 20 ms of 24 kHz s16 mono
TICKS = 960  # 20 ms on the 48 kHz RTP clock
BYTES_PER_MS = 48


class Audio:
    """Distinct PCM on every call, so a reordered or repeated byte shows in a comparison."""

    def __init__(self) -> None:
        self._next = 1

    def ms(self, ms: float) -> bytes:
        return self.samples(round(ms * BYTES_PER_MS) // 2)

    def samples(self, count: int) -> bytes:
        first, self._next = self._next, self._next + count
        return b"".join(((first + i) % 65536).to_bytes(2, "little") for i in range(count))


def drain(buffer: PlayoutBuffer, frames: int) -> list[Frame]:
    """Pull ``frames`` frames, each exactly at its slot."""
    out = []
    for _ in range(frames):
        frame = buffer.pull(buffer.next_due())
        assert frame is not None
        out.append(frame)
    return out


def assert_audible(frames: list[Frame], expected: list[tuple[str, float]]) -> None:
    """The non-silent frames are, in order, these (context, media_ms)."""
    heard = [(f.context_id, f.media_ms) for f in frames if not f.silent]
    assert [c for c, _ in heard] == [c for c, _ in expected]
    assert [m for _, m in heard] == pytest.approx([m for _, m in expected])


# -- options ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"sample_rate": 0},
        {"frame_ms": 0},
        {"sample_rate": 22050, "frame_ms": 15},  # 330.75 samples a frame
        {"min_prebuffer_ms": 40, "max_prebuffer_ms": 20},
        {"min_prebuffer_ms": -1},
        {"max_buffer_ms": 60},  # below max_prebuffer_ms + frame_ms: a turn could never start
    ],
)
def test_options_reject_values_that_cannot_work(fields: dict[str, int]) -> None:
    with pytest.raises(InvalidInput):
        PlayoutOptions(**fields)


# -- the clock --------------------------------------------------------------------------


@dataclass(order=True)
class _Push:
    at: float
    context_id: str = field(compare=False)
    pcm: bytes = field(compare=False)
    media_ms: float = field(compare=False)
    last: bool = field(compare=False, default=False)


def bursty_upstream(seconds: float, seed: int) -> list[_Push]:
    """Turns of three kinds: 200 ms bursts, 5x real time deltas, real time with late arrivals."""
    rng, audio, pushes = random.Random(seed), Audio(), []
    at, turn = 0.0137, 0
    while at < seconds - 1.5:
        context, kind, media = f"turn{turn}", turn % 3, 0.0
        for i in range(rng.randint(3, 8)):
            size = [200, 40, 20][kind] * rng.randint(1, 2)
            when = at + [i * 0.15, i * 0.008, i * 0.02 + rng.uniform(0, 0.08)][kind]
            pushes.append(_Push(when + rng.uniform(0, 0.003), context, audio.ms(size), media))
            media += size
        pushes[-1].last = True
        at, turn = max(p.at for p in pushes) + rng.uniform(0.05, 0.6), turn + 1
    return sorted(pushes)


@pytest.mark.parametrize("seed", range(5))
def test_one_frame_per_slot_for_ten_seconds_of_bursty_upstream(seed: int) -> None:
    start = 5123.456  # any monotonic reading
    buffer = PlayoutBuffer(PlayoutOptions(max_buffer_ms=10_000), start)
    pushes, frames = deque(bursty_upstream(10.0, seed)), []
    rng = random.Random(seed)
    for k in range(500):
        due = start + k * 0.020
        while pushes and start + pushes[0].at <= due:
            push = pushes.popleft()
            buffer.push(
                push.pcm, start + push.at, context_id=push.context_id, media_ms=push.media_ms
            )
            if push.last:
                buffer.end_of_stream(push.context_id)
        assert buffer.next_due() == due  # the grid never drifts
        assert buffer.pull(due - rng.uniform(0.001, 0.019)) is None  # not due yet
        frame = buffer.pull(due)
        assert frame is not None
        assert buffer.pull(due) is None  # one per slot, however often the caller asks
        frames.append(frame)
    assert [f.seq for f in frames] == list(range(500))
    assert [f.timestamp for f in frames] == [k * TICKS for k in range(500)]
    assert all(len(f.pcm) == FRAME and f.skipped == 0 for f in frames)
    stats = buffer.stats
    assert stats.frames_sent == 500  # == 10 s / 20 ms
    assert (stats.late_pulls, stats.underruns_gateway, stats.skipped_slots) == (0, 0, 0)
    turns: dict[str, bytes] = {}
    for push in bursty_upstream(10.0, seed):
        turns[push.context_id] = turns.get(push.context_id, b"") + push.pcm
    sent = b"".join(pcm + bytes(-len(pcm) % FRAME) for pcm in turns.values())
    played = b"".join(f.pcm for f in frames if not f.silent)
    assert len(played) > 6 * 1000 * BYTES_PER_MS
    assert sent.startswith(played)  # whatever was played so far, in order, nothing lost


def test_a_stall_is_skipped_never_caught_up_and_loses_no_audio() -> None:
    buffer = PlayoutBuffer(OPTIONS, start=100.0)
    buffer.push(Audio().ms(1000), 100.0, context_id="a", media_ms=0.0)
    before = drain(buffer, 2)
    frame = buffer.pull(100.04 + 0.300)  # the event loop stalled for 300 ms
    assert isinstance(frame, Frame)
    assert buffer.pull(100.34) is None  # no burst: the missed slots are gone
    after = drain(buffer, 2)
    assert [f.seq for f in [*before, frame, *after]] == [0, 1, 2, 3, 4]
    assert frame.skipped == 15
    assert frame.timestamp == before[-1].timestamp + 16 * TICKS  # media clock = wall clock
    assert frame.due == pytest.approx(100.34)
    assert after[0].due == pytest.approx(100.36)
    assert [f.media_ms for f in [*before, frame, *after]] == pytest.approx([0, 20, 40, 60, 80])
    stats = buffer.stats
    assert (stats.late_pulls, stats.underruns_gateway, stats.skipped_slots) == (1, 1, 15)
    assert stats.underruns_upstream == 0
    assert stats.max_lateness_ms == pytest.approx(300)


def test_a_timer_a_hair_early_still_gets_its_frame() -> None:
    buffer = PlayoutBuffer(OPTIONS, start=0.0)
    assert buffer.pull(-0.001) is None
    frame = buffer.pull(-0.0003)
    assert frame is not None
    assert (frame.due, frame.seq, frame.skipped) == (0.0, 0, 0)
    assert buffer.pull(0.0197) is not None
    assert buffer.stats.late_pulls == 0


# -- underruns --------------------------------------------------------------------------


def test_upstream_gap_mid_turn_is_silence_blamed_on_the_upstream() -> None:
    # No prebuffer here: the late audio would raise it and hold the restart a slot.
    audio, buffer = Audio(), PlayoutBuffer(PlayoutOptions(max_prebuffer_ms=0), start=0.0)
    first, second = audio.ms(100), audio.ms(60)
    buffer.push(first, 0.0, context_id="a", media_ms=0.0)
    frames = drain(buffer, 8)  # 5 frames of audio, then the upstream is late
    buffer.push(second, buffer.next_due() - 0.005, context_id="a", media_ms=100.0)
    frames += drain(buffer, 4)
    assert [f.silent for f in frames] == [False] * 5 + [True] * 3 + [False] * 3 + [True]
    assert frames[8].media_ms == pytest.approx(100)  # it resumes where it stopped
    assert b"".join(f.pcm for f in frames if not f.silent) == first + second
    assert all(f.pcm == bytes(FRAME) for f in frames if f.silent)
    stats = buffer.stats
    assert (stats.underruns_upstream, stats.underruns_gateway) == (2, 0)  # the gap, the end
    assert stats.silent_frames == 4


def test_a_partial_frame_mid_turn_waits_for_more_audio() -> None:
    audio, buffer = Audio(), PlayoutBuffer(OPTIONS, start=0.0)
    pcm = audio.ms(50)
    buffer.push(pcm[:1440], 0.0, context_id="a", media_ms=0.0)  # 30 ms
    frames = drain(buffer, 2)
    buffer.push(pcm[1440:], 0.035, context_id="a", media_ms=30.0)
    frames += drain(buffer, 2)
    assert [f.silent for f in frames] == [False, True, False, True]
    assert frames[2].pcm == pcm[960:1920]  # never padded mid-turn, so no gap inside words
    assert buffer.stats.underruns_upstream == 2


def test_a_late_pull_with_audio_ready_is_blamed_on_the_gateway() -> None:
    buffer = PlayoutBuffer(OPTIONS, start=0.0)
    buffer.push(Audio().ms(200), 0.0, context_id="a", media_ms=0.0)
    drain(buffer, 2)
    frame = buffer.pull(0.040 + 0.012)  # 12 ms late: more than half a frame, less than one
    assert frame is not None
    assert (frame.silent, frame.skipped, frame.due, frame.media_ms) == (False, 0, 0.04, 40.0)
    stats = buffer.stats
    assert (stats.late_pulls, stats.underruns_gateway, stats.underruns_upstream) == (1, 1, 0)
    assert buffer.pull(0.060) is not None  # and the next slot is on time again
    assert buffer.stats.late_pulls == 1


def test_a_late_pull_while_idle_is_late_but_no_underrun() -> None:
    buffer = PlayoutBuffer(OPTIONS, start=0.0)
    frame = buffer.pull(0.2)
    assert frame is not None
    assert frame.silent
    stats = buffer.stats
    assert (stats.late_pulls, stats.underruns_gateway, stats.underruns_upstream) == (1, 0, 0)


def test_end_of_stream_pads_the_last_frame_then_idles_without_underrun() -> None:
    buffer = PlayoutBuffer(OPTIONS, start=0.0)
    pcm = Audio().ms(50)
    buffer.push(pcm, 0.0, context_id="a", media_ms=0.0)
    buffer.end_of_stream("a")
    frames = drain(buffer, 10)
    assert [f.silent for f in frames] == [False] * 3 + [True] * 7
    assert frames[2].pcm == pcm[1920:] + bytes(480)  # 10 ms of audio, 10 ms of padding
    assert (frames[2].context_id, frames[2].media_ms) == ("a", 40.0)
    stats = buffer.stats
    assert (stats.underruns_upstream, stats.underruns_gateway, stats.silent_frames) == (0, 0, 7)
    assert buffer.buffered_ms == 0


def test_pull_now_starts_a_turn_in_the_idle_slot_that_just_went_by() -> None:
    audio, buffer = Audio(), PlayoutBuffer(OPTIONS, start=0.0)
    drain(buffer, 3)  # idle silence in slots 0-2; slot 3 is due at 0.060
    pcm = audio.ms(60)
    buffer.push(pcm, 0.047, context_id="a", media_ms=0.0)
    first = buffer.pull_now(0.047)
    assert first is not None
    assert (first.silent, first.context_id, first.media_ms) == (False, "a", 0.0)
    assert (first.timestamp, first.due) == (2 * TICKS, 0.047)  # slot 2, due when asked
    assert first.pcm == pcm[:FRAME]
    assert buffer.pull_now(0.048) is None  # the turn is playing: once only
    assert buffer.pull(0.055) is None  # slot 3 is not due yet
    rest = drain(buffer, 3)
    assert [f.timestamp for f in rest] == [3 * TICKS, 4 * TICKS, 5 * TICKS]
    assert b"".join(f.pcm for f in rest[:2]) == pcm[FRAME:]
    assert len({f.seq for f in [first, *rest]}) == 4  # seq goes on, one per frame


def test_pull_now_only_when_idle_ready_and_within_the_slot() -> None:
    audio = Audio()
    fresh = PlayoutBuffer(OPTIONS, start=0.0)
    fresh.push(audio.ms(40), 0.0, context_id="a", media_ms=0.0)
    assert fresh.pull_now(0.0) is None  # nothing pulled yet: no slot went by

    late = PlayoutBuffer(OPTIONS, start=0.0)
    drain(late, 2)
    late.push(audio.ms(40), 0.045, context_id="a", media_ms=0.0)
    assert late.pull_now(0.045) is None  # slot 1 began 25 ms ago: the tick is late

    partial = PlayoutBuffer(OPTIONS, start=0.0)
    drain(partial, 2)
    partial.push(audio.ms(10), 0.021, context_id="a", media_ms=0.0)
    assert partial.pull_now(0.021) is None  # less than a frame: not ready
    partial.push(audio.ms(10), 0.025, context_id="a", media_ms=10.0)
    assert partial.pull_now(0.025) is not None  # now it is

    underrun = PlayoutBuffer(OPTIONS, start=0.0)
    underrun.push(audio.ms(20), 0.0, context_id="a", media_ms=0.0)
    frames = drain(underrun, 2)  # audio, then an underrun: the turn is still playing
    assert [f.silent for f in frames] == [False, True]
    assert underrun.playing
    underrun.push(audio.ms(40), 0.025, context_id="a", media_ms=20.0)
    assert underrun.pull_now(0.025) is None  # mid-turn: it waits for its slot


def test_playing_is_true_from_a_turns_first_frame_to_its_end() -> None:
    audio, buffer = Audio(), PlayoutBuffer(OPTIONS, start=0.0)
    buffer.push(audio.ms(30), 0.0, context_id="a", media_ms=0.0)
    assert not buffer.playing  # queued, not started
    drain(buffer, 1)
    assert buffer.playing
    buffer.end_of_stream("a")
    drain(buffer, 1)  # its padded last frame
    assert not buffer.playing
    buffer.push(audio.ms(30), 0.05, context_id="b", media_ms=0.0)
    drain(buffer, 1)
    buffer.clear("b")
    assert not buffer.playing


def test_audio_of_another_context_ends_the_turn_before_it() -> None:
    audio, buffer = Audio(), PlayoutBuffer(OPTIONS, start=0.0)
    buffer.push(audio.ms(30), 0.0, context_id="a", media_ms=0.0)
    buffer.push(audio.ms(40), 0.0, context_id="b", media_ms=500.0)
    frames = drain(buffer, 5)
    assert_audible(frames, [("a", 0.0), ("a", 20.0), ("b", 500.0), ("b", 520.0)])
    assert frames[1].pcm.endswith(bytes(480))  # a frame never mixes two turns
    assert buffer.stats.underruns_upstream == 1  # "b" was never ended: that is a starved turn


# -- prebuffer --------------------------------------------------------------------------


def real_time_turns(
    buffer: PlayoutBuffer, *, turns: int, lateness_s: float, delta_ms: int, seed: int = 1
) -> list[int]:
    """Turns of 1 s in ``delta_ms`` deltas at real time, each late by up to ``lateness_s``.

    Returns the upstream underruns of each turn.
    """
    rng, audio, events = random.Random(seed), Audio(), []
    for turn in range(turns):
        begin = buffer.next_due() + 0.0137 + 2.0 * turn
        for i in range(1000 // delta_ms):
            at = begin + i * delta_ms / 1000 + rng.uniform(0, lateness_s)
            events.append((at, i, f"t{turn}"))
        events.append((max(e[0] for e in events) + 1e-6, -1, f"t{turn}"))
    events.sort()
    underruns = [0] * turns
    for at, i, context in events:
        while buffer.next_due() <= at:
            before = buffer.stats.underruns_upstream
            buffer.pull(buffer.next_due())
            underruns[int(context[1:])] += buffer.stats.underruns_upstream - before
        if i < 0:
            buffer.end_of_stream(context)
        else:
            buffer.push(audio.ms(delta_ms), at, context_id=context, media_ms=i * delta_ms)
    return underruns


def test_prebuffer_stays_zero_for_an_upstream_faster_than_real_time() -> None:
    audio, buffer = Audio(), PlayoutBuffer(OPTIONS, start=0.0)
    for turn in range(5):
        begin = buffer.next_due() + 0.0137
        for i in range(10):  # 200 ms of audio every 40 ms: 5x real time
            buffer.push(audio.ms(200), begin + i * 0.04, context_id=f"t{turn}", media_ms=i * 200)
        buffer.end_of_stream(f"t{turn}")
        assert buffer.prebuffer_ms == 0
        assert buffer.stats.jitter_ms == 0
        drain(buffer, 100)
    # A turn starts in the first slot after its first audio: no added latency.
    buffer.push(audio.ms(200), buffer.next_due() - 0.019, context_id="x", media_ms=0.0)
    assert not drain(buffer, 1)[0].silent


@pytest.mark.parametrize("delta_ms", [20, 60])
def test_prebuffer_adapts_to_jittery_arrivals_and_cuts_underruns(delta_ms: int) -> None:
    fixed = PlayoutBuffer(PlayoutOptions(max_prebuffer_ms=0), start=0.0)
    adaptive = PlayoutBuffer(OPTIONS, start=0.0)
    without = real_time_turns(fixed, turns=8, lateness_s=0.05, delta_ms=delta_ms)
    with_prebuffer = real_time_turns(adaptive, turns=8, lateness_s=0.05, delta_ms=delta_ms)
    assert 30 <= adaptive.prebuffer_ms <= 60
    assert adaptive.stats.jitter_ms > 5
    # The first turn has nothing to learn from; the later ones starve far less often.
    assert sum(with_prebuffer[1:]) * 2 <= sum(without[1:])


def test_a_turn_is_held_for_the_prebuffer_then_plays() -> None:
    options = PlayoutOptions(min_prebuffer_ms=40)
    audio, buffer = Audio(), PlayoutBuffer(options, start=0.0)
    buffer.push(audio.ms(100), 0.001, context_id="a", media_ms=0.0)
    frames = drain(buffer, 4)
    assert [f.silent for f in frames] == [True, True, True, False]  # first slot >= 41 ms
    assert buffer.stats.underruns_upstream == 0  # holding is not starving


def test_prebuffer_settles_back_when_the_upstream_calms_down() -> None:
    buffer = PlayoutBuffer(OPTIONS, start=0.0)
    real_time_turns(buffer, turns=3, lateness_s=0.05, delta_ms=20)
    assert buffer.prebuffer_ms > 20
    real_time_turns(buffer, turns=3, lateness_s=0.0, delta_ms=20, seed=2)
    assert buffer.prebuffer_ms == 0


# -- memory bound, barge-in ---------------------------------------------------------------


def test_push_takes_what_fits_and_the_rest_waits_for_room() -> None:
    buffer = PlayoutBuffer(PlayoutOptions(max_buffer_ms=200), start=0.0)
    pcm = Audio().ms(1000)
    assert buffer.push(pcm, 0.0, context_id="a", media_ms=0.0) == 200 * BYTES_PER_MS
    assert (buffer.buffered_ms, buffer.room_bytes) == (200, 0)
    assert buffer.push(pcm[9600:], 0.0, context_id="a", media_ms=200.0) == 0
    frames = drain(buffer, 3)
    assert buffer.room_bytes == 3 * FRAME
    rest = memoryview(pcm)[9600:]
    assert buffer.push(rest, 0.06, context_id="a", media_ms=200.0) == 3 * FRAME
    frames += drain(buffer, 10)
    assert b"".join(f.pcm for f in frames) == pcm[: 13 * FRAME]
    assert frames[10].media_ms == pytest.approx(200)


def test_a_mutable_buffer_is_copied_not_referenced() -> None:
    buffer = PlayoutBuffer(OPTIONS, start=0.0)
    pcm = bytearray(Audio().ms(20))
    original = bytes(pcm)
    buffer.push(pcm, 0.0, context_id="a", media_ms=0.0)
    pcm[:] = bytes(len(pcm))
    assert drain(buffer, 1)[0].pcm == original


def test_a_view_of_samples_is_measured_in_bytes() -> None:
    buffer = PlayoutBuffer(OPTIONS, start=0.0)
    samples = array.array("h", range(480))  # 20 ms as 480 two-byte items
    assert buffer.push(memoryview(samples), 0.0, context_id="a", media_ms=0.0) == FRAME
    assert drain(buffer, 1)[0].pcm == samples.tobytes()


def test_odd_byte_counts_are_rejected() -> None:
    buffer = PlayoutBuffer(OPTIONS, start=0.0)
    with pytest.raises(InvalidInput) as caught:
        buffer.push(b"\x01\x02\x03", 0.0, context_id="a", media_ms=0.0)
    assert caught.value.code == "invalid_pcm"


def test_clear_drops_everything_at_once_and_keeps_the_stream_continuous() -> None:
    audio, buffer = Audio(), PlayoutBuffer(OPTIONS, start=0.0)
    buffer.push(audio.ms(1000), 0.0, context_id="a", media_ms=0.0)
    frames = drain(buffer, 10)
    buffer.clear()
    assert buffer.buffered_ms == 0
    frames += drain(buffer, 2)
    assert frames[10].silent
    assert frames[11].pcm is frames[10].pcm  # one silence constant, never rebuilt
    heard_ms = frames[9].media_ms + OPTIONS.frame_ms  # type: ignore[operator]
    assert heard_ms == pytest.approx(200)  # what an Interrupted event reports
    buffer.push(audio.ms(40), buffer.next_due(), context_id="a", media_ms=0.0)
    frames += drain(buffer, 1)
    assert not frames[12].silent
    assert [f.seq for f in frames] == list(range(13))
    assert [f.timestamp for f in frames] == [k * TICKS for k in range(13)]


def test_clear_of_one_context_keeps_the_others() -> None:
    audio, buffer = Audio(), PlayoutBuffer(OPTIONS, start=0.0)
    buffer.push(audio.ms(40), 0.0, context_id="a", media_ms=0.0)
    buffer.push(audio.ms(40), 0.0, context_id="b", media_ms=0.0)
    buffer.push(audio.ms(40), 0.0, context_id="c", media_ms=0.0)
    buffer.clear("b")
    assert buffer.buffered_ms == 80
    frames = drain(buffer, 5)
    assert_audible(frames, [("a", 0.0), ("a", 20.0), ("c", 0.0), ("c", 20.0)])


def test_frames_tell_exactly_what_was_played() -> None:
    audio, buffer = Audio(), PlayoutBuffer(OPTIONS, start=0.0)
    pieces = [("a", 0.0, 7), ("a", 7.0, 33), ("a", 40.0, 21), ("b", 0.0, 45), ("b", 45.0, 5)]
    for context, media_ms, ms in pieces:
        buffer.push(audio.ms(ms), 0.0, context_id=context, media_ms=media_ms)
    buffer.end_of_stream("b")
    frames = drain(buffer, 10)
    expected = [("a", 0.0), ("a", 20.0), ("a", 40.0), ("a", 60.0), ("b", 0.0), ("b", 20.0)]
    assert_audible(frames, [*expected, ("b", 40.0)])
    assert (frames[7].silent, frames[7].context_id, frames[7].media_ms) == (True, None, None)


def test_tiny_pushes_are_merged_into_whole_frames() -> None:
    audio, buffer = Audio(), PlayoutBuffer(OPTIONS, start=0.0)
    pcm = audio.ms(100)
    for offset in range(0, len(pcm), 2):  # one sample at a time
        buffer.push(pcm[offset : offset + 2], 0.0, context_id="a", media_ms=offset / 48)
    frames = drain(buffer, 5)
    assert b"".join(f.pcm for f in frames) == pcm
    assert [f.media_ms for f in frames] == pytest.approx([0, 20, 40, 60, 80])


# -- property: audio in == audio out, whatever the schedule -------------------------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.sampled_from("ab"), st.integers(1, 3000)),
        st.tuples(st.just("end"), st.sampled_from("ab"), st.just(0)),
        st.tuples(st.just("tick"), st.just(""), st.integers(1, 6)),
        st.tuples(st.just("stall"), st.just(""), st.integers(1, 400)),
    ),
    max_size=60,
)


class _Model:
    """What the listener must hear: each turn's accepted audio, padded to a frame."""

    def __init__(self) -> None:
        self.turns: list[tuple[str, float, bytearray, list[bool]]] = []

    def add(self, context: str, media_ms: float, pcm: bytes) -> None:
        if not self.turns or self.turns[-1][3][0] or self.turns[-1][0] != context:
            self.turns.append((context, media_ms, bytearray(), [False]))
        self.turns[-1][2].extend(pcm)

    def end(self, context: str) -> None:
        if self.turns and self.turns[-1][0] == context:
            self.turns[-1][3][0] = True

    def frames(self) -> list[tuple[str, float]]:
        return [
            (context, media + 20 * i)
            for context, media, pcm, _ in self.turns
            for i in range(-(-len(pcm) // FRAME))
        ]

    def pcm(self) -> bytes:
        return b"".join(bytes(pcm) + bytes(-len(pcm) % FRAME) for _, _, pcm, _ in self.turns)


@settings(max_examples=300, deadline=None)
@given(ops=_ops, max_buffer_ms=st.sampled_from([80, 300, 5000]))
def test_audio_out_is_audio_in_for_any_schedule(
    ops: list[tuple[str, str, int]], max_buffer_ms: int
) -> None:
    options = PlayoutOptions(max_buffer_ms=max_buffer_ms)
    buffer, audio, model = PlayoutBuffer(options, start=0.0), Audio(), _Model()
    upstream: deque[tuple[str, str, bytes]] = deque()
    media = {"a": 0.0, "b": 0.0}
    frames: list[Frame] = []
    now = 0.0

    def feed() -> None:
        # A transport: takes upstream events in order, and stops at the first that does not fit.
        while upstream:
            kind, context, pcm = upstream[0]
            if kind == "end":
                buffer.end_of_stream(context)
                model.end(context)
            else:
                taken = buffer.push(pcm, now, context_id=context, media_ms=media[context])
                if taken:
                    model.add(context, media[context], pcm[:taken])
                media[context] += taken / BYTES_PER_MS
                if taken < len(pcm):
                    upstream[0] = (kind, context, pcm[taken:])
                    return
            upstream.popleft()

    def pull(at: float) -> None:
        nonlocal now
        now = at
        frame = buffer.pull(now)
        if frame is not None:
            frames.append(frame)
        feed()

    for kind, context, amount in ops:
        if kind == "push":
            upstream.append((kind, context, audio.samples(amount)))
        elif kind == "end":
            upstream.append((kind, context, b""))
        for _ in range(amount if kind == "tick" else 0):
            pull(buffer.next_due())
        if kind == "stall":
            pull(now + amount / 1000)
        feed()
    upstream.extend([("end", "a", b""), ("end", "b", b"")])
    feed()
    for _ in range(100_000):
        if not upstream and buffer.buffered_ms == 0:
            break
        pull(buffer.next_due())

    assert b"".join(f.pcm for f in frames if not f.silent) == model.pcm()
    assert_audible(frames, model.frames())
    assert [f.seq for f in frames] == list(range(len(frames)))
    for before, frame in itertools.pairwise(frames):
        assert frame.timestamp - before.timestamp == TICKS * (1 + frame.skipped)
    assert all(len(f.pcm) == FRAME for f in frames)
