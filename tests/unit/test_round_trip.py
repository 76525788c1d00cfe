"""Timing the round trip to a provider from pings and their pongs."""

from __future__ import annotations

import pytest

from voxgate.gateway.telephony.round_trip import KEPT, MAX_OUTSTANDING, RoundTrip


def test_a_pong_answering_a_ping_is_a_sample_and_the_estimate_is_the_least_of_the_last() -> None:
    timing = RoundTrip()
    assert timing.ms == 0.0  # nothing known yet
    first = timing.ping(10.0)
    assert timing.pong(first, 10.120)
    assert timing.ms == pytest.approx(120, abs=1e-6)
    slow = timing.ping(12.0)
    assert timing.pong(slow, 12.300)  # queued behind something: the estimate keeps 120
    assert timing.ms == pytest.approx(120, abs=1e-6)
    assert timing.last_s == pytest.approx(0.3)
    for k in range(KEPT):  # the 120 ms sample ages out of the window
        assert timing.pong(timing.ping(20.0 + k), 20.0 + k + 0.150)
    assert timing.ms == pytest.approx(150, abs=1e-6)


def test_pongs_that_answer_nothing_of_ours_are_not_samples() -> None:
    timing = RoundTrip()
    ours = timing.ping(1.0)
    assert not timing.pong(b"", 1.05)  # a heartbeat's, or unsolicited
    assert not timing.pong(b"\x00" * 8, 1.05)
    assert timing.pong(ours, 1.08)
    assert not timing.pong(ours, 1.09)  # answered once only
    assert timing.ms == pytest.approx(80, abs=1e-6)


def test_a_provider_that_never_answers_leaves_a_bounded_trail() -> None:
    timing = RoundTrip()
    payloads = [timing.ping(float(k)) for k in range(MAX_OUTSTANDING * 4)]
    assert not timing.pong(payloads[0], 1000.0)  # given up on
    assert timing.pong(payloads[-1], float(len(payloads) - 1) + 0.05)
    assert timing.ms == pytest.approx(50, abs=1e-6)
