"""What a Session tells its transport: audio, marks, and the life of each context.

Offsets are milliseconds on the context's own audio timeline, which starts at 0 with the
context's first sample and runs without gaps from one chunk to the next.
"""

from __future__ import annotations

from dataclasses import dataclass

from voxgate.codecs.opus_packets import OpusRun
from voxgate.sessions.alignment import WordMark


@dataclass(frozen=True, slots=True)
class Usage:
    characters: int  # credits committed: characters whose audio was delivered
    audio_ms: float  # audio delivered
    chunks: int


@dataclass(frozen=True, slots=True)
class AudioOut:
    """The next piece of the context's timeline: mono s16le PCM at ``sample_rate``, or,
    when the context passes Opus through, the upstream's Opus packets (``pcm`` is empty)."""

    context_id: str
    chunk_index: int
    pcm: bytes
    sample_rate: int
    start_ms: float
    opus: OpusRun | None = None

    @property
    def size(self) -> int:
        """Its length on the context's timeline: bytes of PCM at ``sample_rate``."""
        return len(self.pcm) if self.opus is None else self.opus.timeline_bytes(self.sample_rate)

    @property
    def duration_ms(self) -> float:
        return self.size * 500 / self.sample_rate


@dataclass(frozen=True, slots=True)
class ChunkStarted:
    context_id: str
    chunk_index: int
    text: str
    start_ms: float
    retries: int  # upstream attempts before the one that succeeded


@dataclass(frozen=True, slots=True)
class ChunkEnded:
    context_id: str
    chunk_index: int
    text: str
    start_ms: float
    end_ms: float
    words: tuple[WordMark, ...]


@dataclass(frozen=True, slots=True)
class ChunkFailed:
    """A chunk that produced no audio, or stopped part way; the context goes on without it."""

    context_id: str
    chunk_index: int
    text: str
    code: str
    message: str
    partial: bool  # some of its audio had already been delivered


@dataclass(frozen=True, slots=True)
class ContextDone:
    context_id: str
    usage: Usage


@dataclass(frozen=True, slots=True)
class Interrupted:
    context_id: str
    heard: str
    unheard: str
    played_ms: float
    usage: Usage


@dataclass(frozen=True, slots=True)
class SessionError:
    code: str
    message: str
    fatal: bool
    context_id: str | None = None


Event = (
    AudioOut | ChunkStarted | ChunkEnded | ChunkFailed | ContextDone | Interrupted | SessionError
)
