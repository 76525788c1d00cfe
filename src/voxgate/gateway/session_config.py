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
        # Saved voices' languages, as the upstream lists them (see ``needs_voice_language``).
        self.voice_languages: dict[str, str] = {}

    @property
    def needs_voice_language(self) -> str | None:
        """A saved voice (not a preset) whose language the session would follow but does
        not know: look it up and put it in ``voice_languages``."""
        voice_id = self.values["voice_id"]
        if not voice_id or self.values["language"] or voice_id in self.voice_languages:
            return None
        return None if find_voice(voice_id) is not None else str(voice_id)

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
        _options(candidate, principal, self._max_contexts, self.voice_languages)
        _output_format(candidate)
        self.values = candidate

    def options(self, principal: Principal) -> SessionOptions:
        return _options(self.values, principal, self._max_contexts, self.voice_languages)

    def output_format(self) -> OutputFormat:
        return _output_format(self.values)

    def public(self) -> dict[str, Any]:
        """What the client is shown: the effective format, and no reference audio."""
        values = dict(self.values)
        values["language"] = _language(values, self.voice_languages)
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


def _options(
    values: dict[str, Any], principal: Principal, max_contexts: int, known: dict[str, str]
) -> SessionOptions:
    if principal.voice_id and values.get("voice_id") != principal.voice_id:
        raise AuthError(
            f"this token may only use voice {principal.voice_id}", code="voice_not_allowed"
        )
    voice = VoiceOptions(
        voice_id=values["voice_id"], ref_audio=values["ref_audio"], speed=values["speed"]
    )
    segmenter = dataclasses.replace(
        SegmenterOptions(), **values["segmenter"], language=_language(values, known)
    )
    return SessionOptions(voice=voice, segmenter=segmenter, max_contexts=max_contexts)


def _language(values: dict[str, Any], known: dict[str, str]) -> str:
    """The session's ``language``, else its voice's (a preset's, or a saved voice's as the
    upstream lists it), else English."""
    if values.get("language"):
        return str(values["language"])
    voice_id = values.get("voice_id")
    found = find_voice(voice_id) if voice_id else None
    if found is not None:
        return found[0].language
    return known.get(voice_id, "en") if voice_id else "en"


def _output_format(values: dict[str, Any]) -> OutputFormat:
    spec = values["output_format"]
    encoding = spec.get("encoding", "pcm_s16le")
    rate = spec.get("sample_rate") or DEFAULT_RATES[encoding]
    return OutputFormat(encoding, rate, spec.get("bitrate"), spec.get("complexity"))
