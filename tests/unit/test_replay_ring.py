"""The replay ring: what was sent after the client's last frame, bounded by bytes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from voxgate.errors import VoxgateError
from voxgate.gateway.replay import ReplayRing


@dataclass
class Item:
    payload: bytes | str
    seq: int | None = None


def frame(seq: int, size: int = 100) -> Item:
    return Item(b"a" * size, seq)


def event(name: str) -> Item:
    return Item(name)


def codes(ring: ReplayRing[Item], last_seq: int | None) -> str:
    with pytest.raises(VoxgateError) as raised:
        ring.take_after(last_seq)
    return raised.value.code


def test_what_follows_the_last_frame_received_comes_back_in_order() -> None:
    ring: ReplayRing[Item] = ReplayRing(10_000)
    items = [event("started"), frame(0), frame(1), event("ended"), frame(2), event("done")]
    for item in items:
        ring.append(item)
    assert ring.take_after(1) == items[3:]
    assert len(ring) == 3
    assert ring.bytes == len("started") + 200
    assert ring.take_after(1) == []  # taken: they are the sender's again


def test_none_received_is_everything_since_the_first_message() -> None:
    ring: ReplayRing[Item] = ReplayRing(10_000)
    items = [event("started"), frame(0)]
    for item in items:
        ring.append(item)
    assert ring.take_after(None) == items


def test_the_oldest_go_first_and_a_frame_older_than_the_ring_is_a_gap() -> None:
    ring: ReplayRing[Item] = ReplayRing(250)
    for seq in range(5):
        ring.append(frame(seq))
    assert len(ring) == 2  # frames 3 and 4
    assert codes(ring, 1) == "resume_gap"
    assert codes(ring, None) == "resume_gap"
    # The newest frame dropped still anchors what follows it: 3 and 4 are all there.
    assert [i.seq for i in ring.take_after(2)] == [3, 4]


def test_an_event_dropped_after_the_anchor_frame_is_a_gap() -> None:
    ring: ReplayRing[Item] = ReplayRing(150)
    ring.append(frame(0))
    ring.append(event("x" * 60))
    ring.append(frame(1))  # drops frame 0, then the event
    assert codes(ring, 0) == "resume_gap"
    assert ring.take_after(1) == []


def test_a_seq_that_was_never_sent_is_refused() -> None:
    ring: ReplayRing[Item] = ReplayRing(10_000)
    assert codes(ring, 0) == "invalid_input"  # nothing sent yet
    ring.append(frame(0))
    ring.append(frame(2))  # 1 was purged by a barge-in before it went
    assert codes(ring, 1) == "invalid_input"
    assert codes(ring, 7) == "invalid_input"


def test_seqs_wrap_as_on_the_wire() -> None:
    ring: ReplayRing[Item] = ReplayRing(10_000)
    first = 2**32 - 2
    for seq in range(first, first + 4):
        ring.append(frame(seq))
    assert [i.seq for i in ring.take_after(2**32 - 1)] == [2**32, 2**32 + 1]
    assert [i.seq for i in ring.take_after(2**32 - 2)] == [2**32 - 1]
