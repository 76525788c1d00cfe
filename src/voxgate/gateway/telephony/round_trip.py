"""The network round trip to a provider's media server, timed with WebSocket pings.

What a call leg counts as heard from an echoed mark is the mark's position plus the time
since its echo arrived. But the phone was at the mark when the echo *left* it, and the
``clear`` that a barge-in sends reaches it later still: while audio plays, the caller
hears the mark's position plus the time since the echo plus the whole round trip. Pings
time that round trip on the same connection (RFC 6455 has every endpoint answer a ping
with a pong). The estimate is the shortest of the last few, as queueing only ever adds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable

from aiohttp import web

log = logging.getLogger(__name__)

PING_EVERY_S = 2.0
KEPT = 5  # samples the estimate is the least of
MAX_OUTSTANDING = 8  # pings not answered (a provider that never pongs): the oldest go


class RoundTrip:
    """Round-trip samples from pings and their pongs, matched by payload; pure."""

    def __init__(self) -> None:
        self._numbers = itertools.count(1)
        self._waiting: dict[bytes, float] = {}  # payload -> when it was sent
        self._samples: deque[float] = deque(maxlen=KEPT)

    def ping(self, now: float) -> bytes:
        """The payload of the next ping, sent at ``now``."""
        payload = next(self._numbers).to_bytes(8, "big")
        self._waiting[payload] = now
        while len(self._waiting) > MAX_OUTSTANDING:
            del self._waiting[next(iter(self._waiting))]
        return payload

    def pong(self, payload: bytes, now: float) -> bool:
        """A pong came; True when it answered one of our pings (a new sample)."""
        sent = self._waiting.pop(bytes(payload), None)
        if sent is None:
            return False  # unsolicited, or answering a ping we gave up on
        self._samples.append(now - sent)
        return True

    @property
    def last_s(self) -> float:
        """The newest sample, in seconds; 0 until a pong came."""
        return self._samples[-1] if self._samples else 0.0

    @property
    def ms(self) -> float:
        """The round trip, in ms; 0 until a pong came."""
        return min(self._samples, default=0.0) * 1000


async def keep_timing(
    ws: web.WebSocketResponse,
    round_trip: RoundTrip,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Ping ``ws`` every ``PING_EVERY_S`` until it closes (its pongs go to ``round_trip``
    where the socket's messages are read)."""
    with contextlib.suppress(ConnectionError, RuntimeError):
        while not ws.closed:
            await ws.ping(round_trip.ping(clock()))
            await asyncio.sleep(PING_EVERY_S)
