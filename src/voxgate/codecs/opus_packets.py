"""Opus packets passed through as the upstream coded them: a run of them, and its duration.

When every sink of a session takes Opus, the upstream's Ogg Opus is demuxed into packets and
nothing decodes or re-encodes them (see ``docs/webrtc.md``, "Opus passthrough"). The session
still keeps one timeline per context, counted in bytes of its PCM (mono s16le at the session
rate), so a run of packets measures itself the same way: ``timeline_bytes`` is what the same
audio would take as PCM. Credits, heard text, lookahead and word marks then work on both
paths from the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from voxgate.codecs.output_format import OPUS_CLOCK_RATE


@dataclass(frozen=True, slots=True)
class OpusRun:
    """Consecutive Opus packets of one stream, each with the 48 kHz samples it spans."""

    packets: tuple[bytes, ...]
    samples: tuple[int, ...]

    @classmethod
    def join(cls, runs: Iterable[OpusRun]) -> OpusRun:
        packets: list[bytes] = []
        samples: list[int] = []
        for run in runs:
            packets += run.packets
            samples += run.samples
        return cls(tuple(packets), tuple(samples))

    def __bool__(self) -> bool:
        return bool(self.packets)

    @property
    def total_samples(self) -> int:
        return sum(self.samples)

    @property
    def duration_ms(self) -> float:
        return self.total_samples * 1000 / OPUS_CLOCK_RATE

    def timeline_bytes(self, sample_rate: int) -> int:
        """What the same audio takes as mono s16le PCM at ``sample_rate``."""
        return timeline_bytes(self.total_samples, sample_rate)

    def pieces(self, max_samples: int) -> list[OpusRun]:
        """The run cut between packets into runs of at most ``max_samples`` (a packet
        longer than that makes a run of its own)."""
        runs: list[OpusRun] = []
        start = total = 0
        for i, samples in enumerate(self.samples):
            if total and total + samples > max_samples:
                runs.append(OpusRun(self.packets[start:i], self.samples[start:i]))
                start, total = i, 0
            total += samples
        if start < len(self.packets):
            runs.append(OpusRun(self.packets[start:], self.samples[start:]))
        return runs


def timeline_bytes(samples_48k: int, sample_rate: int) -> int:
    """Bytes of mono s16le PCM at ``sample_rate`` that ``samples_48k`` samples at 48 kHz
    last; exact for every rate libopus runs at (8, 12, 16, 24, 48 kHz) and 2.5 ms steps."""
    return samples_48k * sample_rate // OPUS_CLOCK_RATE * 2
