"""A session's options: the voice, and the limits of its synthesis pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field

from voxgate.errors import InvalidInput
from voxgate.sessions.chunk_job import RetryPolicy
from voxgate.sessions.segmenter import SegmenterOptions
from voxgate.upstream.models import MAX_SPEED, MIN_SPEED, SpeechRequest


@dataclass(frozen=True, slots=True)
class VoiceOptions:
    """Exactly one of ``voice_id`` (preset or saved) and ``ref_audio`` (base64)."""

    voice_id: str | None = "82c99ee6-f932-423f-a4a3-d403c8914b8d"
    ref_audio: str | None = None
    speed: float = 1.0

    def __post_init__(self) -> None:
        if (self.voice_id is None) == (self.ref_audio is None):
            raise InvalidInput("give exactly one of voice_id and ref_audio", code="voice_selection")
        if not MIN_SPEED <= self.speed <= MAX_SPEED:
            raise InvalidInput(
                f"speed must be between {MIN_SPEED} and {MAX_SPEED}", code="invalid_speed"
            )

    def request(self, text: str) -> SpeechRequest:
        return SpeechRequest(
            input=text,
            voice_id=self.voice_id,
            ref_audio=self.ref_audio,
            response_format="pcm",
            speed=self.speed,
        )


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    """How far synthesis may run ahead of the listener, per session.

    A new chunk goes upstream only while all three hold: fewer than ``max_inflight`` chunks
    are held (reserved, and their audio not yet all taken by the transport), less than
    ``max_buffered_ms`` of audio is in the gateway untaken, and the held credits stay within
    ``max_credits_at_risk`` with the new chunk's. When nothing is held the next chunk may
    always go, so a limit can slow a turn, never stall it. A chunk being fetched stops
    reading the upstream while its context holds ``max_buffered_ms`` of audio, so memory
    stays bounded whatever the length of the turn or of its chunks.
    """

    max_inflight: int = 3
    max_buffered_ms: float = 8000.0
    max_credits_at_risk: int = 1500
    reservation_ttl_s: float = 120.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if self.max_inflight < 1:
            raise InvalidInput("max_inflight must be at least 1")
        if self.max_buffered_ms < 100:
            raise InvalidInput("max_buffered_ms must be at least 100")
        if self.max_credits_at_risk < 1:
            raise InvalidInput("max_credits_at_risk must be at least 1")


@dataclass(frozen=True, slots=True)
class SessionOptions:
    voice: VoiceOptions = field(default_factory=VoiceOptions)
    segmenter: SegmenterOptions = field(default_factory=SegmenterOptions)
    pipeline: PipelineOptions = field(default_factory=PipelineOptions)
    sample_rate: int = 24000
    max_contexts: int = 4
    poll_interval_s: float = 0.05  # how often a chunk held back by a pipeline limit is retried

    def __post_init__(self) -> None:
        if self.sample_rate not in (8000, 16000, 24000, 48000):
            raise InvalidInput("sample_rate must be 8000, 16000, 24000 or 48000")
        if not 1 <= self.max_contexts <= 64:
            raise InvalidInput("max_contexts must be between 1 and 64")
