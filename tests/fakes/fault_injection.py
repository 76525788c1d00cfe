"""A fault-injecting wrapper around a real upstream client.

Audio still comes from the real (embedded) engine; the wrapper only fails, delays or
counts requests, as a plan for each chunk text says.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from voxgate.errors import UpstreamError
from voxgate.upstream import SpeechRequest, Upstream
from voxgate.upstream.pcm import PcmChunk


@dataclass
class Fault:
    """Fail ``times`` attempts after ``after_chunks`` PCM chunks, with this error."""

    times: int = 1
    after_chunks: int = 0
    status: int = 503
    retry_after: float | None = None
    stall_s: float = 0.0  # silence before the failure, as a dying connection gives


@dataclass
class FaultyUpstream:
    upstream: Upstream
    faults: dict[str, Fault] = field(default_factory=dict)  # keyed by a word in the chunk
    delay_s: float = 0.0  # before each request's first audio
    requests: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    async def stream(self, request: SpeechRequest) -> AsyncIterator[PcmChunk]:
        self.requests.append(request.input)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        fault = next((f for k, f in self.faults.items() if k in request.input), None)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            sent = 0
            async for chunk in self.upstream.stream(request):
                if fault and fault.times > 0 and sent >= fault.after_chunks:
                    fault.times -= 1
                    await asyncio.sleep(fault.stall_s)
                    raise UpstreamError(
                        "injected fault", status=fault.status, retry_after=fault.retry_after
                    )
                yield chunk
                sent += 1
        except asyncio.CancelledError:
            self.cancelled.append(request.input)
            raise
        finally:
            self.in_flight -= 1
