"""The call leg's pacing: a lead of 100 ms, then one 20 ms frame every 20 ms, never a pair."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from typing import Any

import numpy as np

from voxgate.gateway.telephony.leg import LEAD_MS, CallLeg
from voxgate.gateway.telephony.twilio import TwilioDialect


class RecordingSocket:
    """Stands in for the provider's socket: when each message went out."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, str]] = []

    async def send_str(self, data: str) -> None:
        self.sent.append((time.monotonic(), data))

    async def send_bytes(self, data: bytes) -> None:
        raise AssertionError("Twilio takes text messages only")

    async def close(self, **_: Any) -> None:
        pass


async def test_frames_leave_one_every_20_ms_after_a_100_ms_lead() -> None:
    dialect = TwilioDialect()
    dialect.parse('{"event": "start", "start": {"streamSid": "MZ1", "callSid": "CA1"}}')
    socket = RecordingSocket()
    leg = CallLeg(socket, dialect, input_rate=24000)  # type: ignore[arg-type]
    tone = (np.sin(np.arange(24000) * 2 * np.pi * 440 / 24000) * 8000).astype("<i2")
    started = time.monotonic()
    leg.push(tone.tobytes(), "default", 0.0)  # one second of speech at once
    leg.end_of_turn("default")
    async with asyncio.timeout(5):
        while sum('"media"' in m for _, m in socket.sent) < 50:
            await asyncio.sleep(0.01)
    await leg.aclose()
    media = [t - started for t, m in socket.sent if '"media"' in m]
    # The lead goes out at once: 100 ms of audio, no more.
    assert sum(t < 0.01 for t in media) == int(LEAD_MS / 20)
    steps = [b - a for a, b in itertools.pairwise(media[5:])]
    assert 0.018 < statistics.median(steps) < 0.022
    # Never two frames at once, but after a late wake-up on a busy machine (a catch-up).
    assert sum(step < 0.010 for step in steps) <= 2, [round(step * 1000) for step in steps]
    # The audio sent never runs more than the lead ahead of real time.
    for n, t in enumerate(media, start=1):
        assert n * 20 - t * 1000 <= LEAD_MS + 20 + 1
