"""Everything about the Voxtral API: the async client and the embedded engine."""

from voxgate.upstream.client import DEFAULT_BASE_URL, Upstream, UpstreamConfig
from voxgate.upstream.models import (
    AUDIO_FORMATS,
    LANGUAGES,
    MAX_INPUT_CHARS,
    MAX_SAVED_VOICES,
    GeneratedSpeech,
    SpeechRequest,
    Voice,
    VoicePage,
    VoiceUpdate,
)
from voxgate.upstream.pcm import PcmChunk, PcmStreamDecoder
from voxgate.upstream.sse import ServerSentEvent, SSEParser

__all__ = [
    "AUDIO_FORMATS",
    "DEFAULT_BASE_URL",
    "LANGUAGES",
    "MAX_INPUT_CHARS",
    "MAX_SAVED_VOICES",
    "GeneratedSpeech",
    "PcmChunk",
    "PcmStreamDecoder",
    "SSEParser",
    "ServerSentEvent",
    "SpeechRequest",
    "Upstream",
    "UpstreamConfig",
    "Voice",
    "VoicePage",
    "VoiceUpdate",
]
