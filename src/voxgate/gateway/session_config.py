"""A realtime session's configuration, as ``session.update`` builds it up.

Held as the client sees it (``public``); turned into the Session's options and the output
format only when the session starts. Every update is validated whole before it is taken,
so a bad field leaves the previous configuration in force.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec

from voxgate.codecs.output_format import OutputFormat
from voxgate.errors import AuthError
from voxgate.gateway import protocol as p
from voxgate.gateway.access.principal import Principal
from voxgate.sessions.options import SessionOptions, VoiceOptions
from voxgate.sessions.segmenter import SegmenterOptions
from voxgate.upstream.engine.validation import decode_audio_field
from voxgate.upstream.engine.voices import find_voice

# Opus and Ogg Opus run on the 48 kHz RTP/Ogg clock (libopus is fed 24 kHz underneath).
DEFAULT_RATES = {"pcm_s16le": 24000, "mulaw": 8000, "opus": 48000, "ogg_opus": 48000, "mp3": 24000}


class SessionConfig:
    def __init__(self, max_contexts: int) -> None:
        self._max_contexts = max_contexts
        self.values: dict[str, Any] = {
            "voice_id": VoiceOptions().voice_id,
            "ref_audio": None,
            "speed": 1.0,
            "output_format": {"encoding": "pcm_s16le", "sample_rate": 24000},
            "audio_transport": "binary",
            "pacing": "fast",
            "segmenter": {},
            "language": None,  # None: the voice's language
            "caller_audio": False,
        }

    @property
    def binary(self) -> bool:
        return bool(self.values["audio_transport"] == "binary")

    @property
    def caller_audio(self) -> bool:
        return bool(self.values["caller_audio"])

    @property
    def opus_as_is(self) -> bool:
        """An Opus format with no bitrate or complexity of the client's own: the upstream's
        packets may go out as they are (Opus passthrough)."""
        spec = self.values["output_format"]
        return spec.get("encoding") in ("opus", "ogg_opus") and not (
            spec.keys() & {"bitrate", "complexity"}
        )

    @property
    def realtime(self) -> bool:
        return bool(self.values["pacing"] == "realtime")

    def use_voice(self, voice_id: str) -> None:
        self.values["voice_id"], self.values["ref_audio"] = voice_id, None

    def update(self, message: p.SessionUpdate, principal: Principal) -> None:
        """Apply ``session.update``; the whole result is checked before it is kept."""
        fields = msgspec.structs.asdict(message)
        fields.pop("event_id")
        changes = {k: v for k, v in fields.items() if v is not None}
        if "ref_audio" in changes:
            decode_audio_field(changes["ref_audio"])  # bad base64 is refused here, not upstream
            changes["voice_id"] = None
        elif "voice_id" in changes:
            changes["ref_audio"] = None
        for nested in ("output_format", "segmenter"):
            if nested in changes:
                spec = msgspec.structs.asdict(changes[nested])
                changes[nested] = {k: v for k, v in spec.items() if v is not None}
        candidate = {**self.values, **changes}
        _options(candidate, principal, self._max_contexts)
        _output_format(candidate)
        self.values = candidate

    def options(self, principal: Principal) -> SessionOptions:
        return _options(self.values, principal, self._max_contexts)

    def output_format(self) -> OutputFormat:
        return _output_format(self.values)

    def public(self) -> dict[str, Any]:
        """What the client is shown: the effective format, and no reference audio."""
        values = dict(self.values)
        values["language"] = _language(values)
        if values.get("ref_audio"):
            values["ref_audio"] = f"<{len(values['ref_audio'])} base64 characters>"
        fmt = self.output_format()
        values["output_format"] = {
            "encoding": fmt.encoding,
            "sample_rate": fmt.sample_rate,
            "bitrate": fmt.bitrate,
            "complexity": fmt.complexity,
        }
        return values


def _options(values: dict[str, Any], principal: Principal, max_contexts: int) -> SessionOptions:
    if principal.voice_id and values.get("voice_id") != principal.voice_id:
        raise AuthError(
            f"this token may only use voice {principal.voice_id}", code="voice_not_allowed"
        )
    voice = VoiceOptions(
        voice_id=values["voice_id"], ref_audio=values["ref_audio"], speed=values["speed"]
    )
    segmenter = dataclasses.replace(
        SegmenterOptions(), **values["segmenter"], language=_language(values)
    )
    return SessionOptions(voice=voice, segmenter=segmenter, max_contexts=max_contexts)


def _language(values: dict[str, Any]) -> str:
    """The session's ``language``, else its preset voice's, else English."""
    if values.get("language"):
        return str(values["language"])
    found = find_voice(values["voice_id"]) if values.get("voice_id") else None
    return found[0].language if found is not None else "en"


def _output_format(values: dict[str, Any]) -> OutputFormat:
    spec = values["output_format"]
    encoding = spec.get("encoding", "pcm_s16le")
    rate = spec.get("sample_rate") or DEFAULT_RATES[encoding]
    return OutputFormat(encoding, rate, spec.get("bitrate"), spec.get("complexity"))
