"""Preset voices of the embedded engine, their emotions, and the prosody of cloned voices.

A voice is an espeak-ng language voice, a variant (the timbre: ``f3``, ``m1``...) and prosody
settings. Ids never change: clients store them. Preset ids are written down here; an
emotion's id is derived from its preset's id and the emotion's name.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Final, Literal, NamedTuple

import espeakng_loader
import numpy as np

LANGUAGES: tuple[str, ...] = ("en", "fr", "es", "pt", "it", "nl", "de", "hi", "ar")

# Names are espeak-ng's, checked against its data directory by Prosody.
ESPEAK_VOICES: Final[dict[str, str]] = {
    "en": "en-us",
    "fr": "fr",
    "es": "es",
    "pt": "pt",
    "it": "it",
    "nl": "nl",
    "de": "de",
    "hi": "hi",
    "ar": "ar",
}

_VARIANT_NAME: Final = re.compile(r"[A-Za-z0-9_]*")

Gender = Literal["male", "female"]


def espeak_voice_for(language: str) -> str:
    """The espeak-ng voice that speaks ``language`` (one of ``LANGUAGES``)."""
    try:
        return ESPEAK_VOICES[language]
    except KeyError:
        raise ValueError(f"unsupported language {language!r}") from None


@dataclass(frozen=True)
class Prosody:
    """How espeak-ng speaks: voice, variant (timbre), pitch and range 0–100, rate, volume."""

    espeak_voice: str
    variant: str  # an espeak variant such as "f3" or "m1"; "" for the voice's own
    pitch: int  # 0–100, espeak's base pitch setting (50 is the variant's normal)
    pitch_range: int  # 0–100: 0 is a monotone, 50 normal
    rate: float  # multiplier of 175 words a minute
    volume: int = 100  # 0–200

    def __post_init__(self) -> None:
        if self.espeak_voice.lower() not in _espeak_languages():
            raise ValueError(f"espeak-ng has no voice {self.espeak_voice!r}")
        if not _VARIANT_NAME.fullmatch(self.variant) or (
            self.variant and self.variant not in _espeak_variants()
        ):
            raise ValueError(f"espeak-ng has no variant {self.variant!r}")
        for name, value, high in (
            ("pitch", self.pitch, 100),
            ("pitch_range", self.pitch_range, 100),
            ("volume", self.volume, 200),
        ):
            if not 0 <= value <= high:
                raise ValueError(f"{name} must be 0–{high}, got {value}")
        if not 0.25 <= self.rate <= 2.5:
            raise ValueError(f"rate must be 0.25–2.5, got {self.rate}")


@cache
def _espeak_languages() -> frozenset[str]:
    root = Path(espeakng_loader.get_data_path(), "lang")
    return frozenset(path.name.lower() for path in root.rglob("*") if path.is_file())


@cache
def _espeak_variants() -> frozenset[str]:
    root = Path(espeakng_loader.get_data_path(), "voices", "!v")
    return frozenset(path.name for path in root.iterdir() if path.is_file())


@dataclass(frozen=True)
class VoiceVariant:
    """One emotion of a preset, with its own stable id."""

    id: str
    emotion: str
    prosody: Prosody


@dataclass(frozen=True)
class PresetVoice:
    """A built-in voice; ``variants[0]`` is neutral and shares the preset's id."""

    id: str
    name: str
    language: str
    gender: Gender
    variants: tuple[VoiceVariant, ...]

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES:
            raise ValueError(f"unsupported language {self.language!r}")
        if not self.variants or self.variants[0].emotion != "neutral":
            raise ValueError(f"{self.name}: the first variant must be neutral")


@dataclass(frozen=True)
class _Emotion:
    """How an emotion moves a voice's prosody away from its neutral one."""

    pitch: int
    pitch_range: int
    rate: float
    volume: int
    variant: dict[Gender, str] | None = None  # a timbre of its own, e.g. whispering


_EMOTIONS: Final[dict[str, _Emotion]] = {
    "neutral": _Emotion(0, 0, 1.0, 0),
    "happy": _Emotion(+10, +20, 1.10, +5),
    "sad": _Emotion(-10, -25, 0.82, -15),
    "angry": _Emotion(+4, +30, 1.12, +5),
    "calm": _Emotion(-5, -15, 0.90, -8),
    "excited": _Emotion(+16, +35, 1.20, +5),
    "serious": _Emotion(-8, -22, 0.95, 0),
    "warm": _Emotion(-3, +8, 0.92, -3),
    "whisper": _Emotion(0, -10, 0.90, -10, {"female": "whisperf", "male": "whisper"}),
}


# Clients store these ids: never change one, even when renaming or retuning a voice.
_IDS: Final = {
    "Jane": "82c99ee6-f932-423f-a4a3-d403c8914b8d",  # the id the public API reference uses
    "Paul": "c56da398-a7b5-4a2d-862b-47f252d16d16",
    "Emma": "c03032df-a466-44e1-9831-2029deb12a1c",
    "Marie": "5c8b282f-939d-40af-9b2d-18a1d4eff821",
    "Louis": "d079b0fb-6f34-4302-a56e-480a51171a34",
    "Lucia": "350aa223-f233-4b5d-b1e2-1e1495a802a7",
    "Mateo": "a521f516-9110-4f0c-8de1-c55490601541",
    "Beatriz": "73b57956-ffe9-4154-b896-e42339070a19",
    "Tiago": "88ef9b93-1bb0-4007-bda6-a213622c531a",
    "Giulia": "4337cdbb-e1af-45e7-9b11-2475ebd9daf6",
    "Marco": "2773db25-ca9d-4f74-9d2c-72b81a85b24a",
    "Sanne": "17ef958f-ef05-47fb-b5cc-b82587bcde10",
    "Daan": "827b8d8f-8a4f-462d-bc46-64731e826b5d",
    "Lena": "e922cfb3-e63f-49e4-9167-39a60ea0d456",
    "Jonas": "cea08830-c854-422a-9adc-a82e35401db4",
    "Priya": "a5dc8fab-cc20-4341-bb9c-d6e09d89dfc5",
    "Omar": "5e54a764-108d-4195-a392-9964c387bff3",
}


class _Spec(NamedTuple):
    name: str
    language: str
    gender: Gender
    variant: str
    pitch: int
    pitch_range: int
    rate: float
    emotions: int  # how many of _EMOTIONS, in their order
    volume: int = 100  # some variants are louder than others: keep emotions from clipping


_PRESETS: Final = (
    _Spec("Jane", "en", "female", "f3", 52, 60, 1.00, 9),
    _Spec("Paul", "en", "male", "m3", 58, 55, 0.98, 8),
    _Spec("Emma", "en", "female", "f5", 44, 48, 1.06, 5),
    _Spec("Marie", "fr", "female", "f2", 50, 62, 1.00, 5),
    _Spec("Louis", "fr", "male", "m2", 55, 50, 1.00, 5),
    _Spec("Lucia", "es", "female", "f4", 56, 65, 1.05, 5),
    _Spec("Mateo", "es", "male", "m6", 60, 58, 1.04, 5),
    _Spec("Beatriz", "pt", "female", "f1", 58, 55, 1.00, 5, volume=90),
    _Spec("Tiago", "pt", "male", "m7", 52, 52, 0.98, 5),
    _Spec("Giulia", "it", "female", "linda", 44, 66, 1.03, 5, volume=85),
    _Spec("Marco", "it", "male", "michel", 50, 60, 1.02, 5),
    _Spec("Sanne", "nl", "female", "steph", 54, 52, 1.00, 5),
    _Spec("Daan", "nl", "male", "m1", 62, 48, 1.00, 5),
    _Spec("Lena", "de", "female", "f2", 60, 45, 0.97, 5),
    _Spec("Jonas", "de", "male", "m5", 56, 45, 0.96, 5),
    _Spec("Priya", "hi", "female", "Alicia", 38, 58, 0.98, 5),
    _Spec("Omar", "ar", "male", "m4", 60, 55, 0.95, 5),
)


def _clamp(value: int, low: int, high: int) -> int:
    return min(max(value, low), high)


def _variant(preset_id: str, gender: Gender, emotion: str, neutral: Prosody) -> VoiceVariant:
    delta = _EMOTIONS[emotion]
    prosody = replace(
        neutral,
        variant=delta.variant[gender] if delta.variant else neutral.variant,
        pitch=_clamp(neutral.pitch + delta.pitch, 0, 100),
        pitch_range=_clamp(neutral.pitch_range + delta.pitch_range, 0, 100),
        rate=round(neutral.rate * delta.rate, 3),
        volume=_clamp(neutral.volume + delta.volume, 0, 200),
    )
    # Derived, not stored: the same preset id and emotion always give the same variant id.
    if emotion == "neutral":
        return VoiceVariant(preset_id, emotion, prosody)
    return VoiceVariant(str(uuid.uuid5(uuid.UUID(preset_id), emotion)), emotion, prosody)


def _build_presets() -> tuple[PresetVoice, ...]:
    presets = []
    for spec in _PRESETS:
        neutral = Prosody(
            espeak_voice_for(spec.language),
            spec.variant,
            spec.pitch,
            spec.pitch_range,
            spec.rate,
            spec.volume,
        )
        emotions = list(_EMOTIONS)[: spec.emotions]
        preset_id = _IDS[spec.name]
        variants = tuple(_variant(preset_id, spec.gender, e, neutral) for e in emotions)
        presets.append(PresetVoice(preset_id, spec.name, spec.language, spec.gender, variants))
    return tuple(presets)


PRESETS: Final[tuple[PresetVoice, ...]] = _build_presets()
_BY_ID: Final = {v.id: (p, v) for p in PRESETS for v in p.variants}


def find_voice(voice_id: str) -> tuple[PresetVoice, VoiceVariant] | None:
    """The preset and emotion a preset id (its neutral variant) or variant id names."""
    return _BY_ID.get(voice_id.strip().lower())


def preset_catalogue() -> list[dict[str, object]]:
    """The presets as JSON-ready dicts: id, name, language, gender, variants [{id, emotion}]."""
    return [
        {
            "id": preset.id,
            "name": preset.name,
            "language": preset.language,
            "gender": preset.gender,
            "variants": [{"id": v.id, "emotion": v.emotion} for v in preset.variants],
        }
        for preset in PRESETS
    ]


# Median F0 (Hz) each clone variant produces at espeak pitch 0, 25, 50, 75, 100 (range 50),
# measured with audio.estimate_pitch_hz on an English sentence. Other languages differ a little.
_PITCH_SETTINGS: Final = (0, 25, 50, 75, 100)
_MEASURED_HZ: Final[dict[Gender, dict[str, tuple[float, ...]]]] = {
    "female": {
        "f1": (115.6, 142.2, 178.1, 230.9, 303.5),
        "f2": (128.7, 154.2, 192.2, 246.2, 320.3),
        "f3": (148.1, 172.3, 208.1, 261.3, 332.4),
        "f4": (113.7, 139.9, 177.5, 231.8, 305.5),
        "f5": (130.2, 159.9, 202.0, 264.4, 347.1),
    },
    "male": {
        "m1": (59.5, 72.6, 91.3, 120.5, 156.0),
        "m2": (61.1, 76.8, 99.8, 132.0, 175.5),
        "m3": (67.3, 82.3, 104.6, 132.6, 171.1),
        "m6": (63.6, 79.0, 99.4, 130.0, 169.6),
        "m7": (73.7, 86.6, 104.0, 131.3, 167.7),
    },
}
_FEMALE_FROM_HZ: Final = 160.0  # between typical male (85–155) and female (165–255) F0
_TYPICAL_HZ: Final[dict[Gender, float]] = {"female": 200.0, "male": 115.0}


def prosody_for_clone(language: str, gender: str | None, median_pitch_hz: float | None) -> Prosody:
    """The espeak voice closest to a reference speaker.

    An explicit ``gender`` picks the variant family; otherwise the measured pitch does, and
    with neither the voice is female. The pitch setting then matches the measured pitch.
    """
    if median_pitch_hz is not None and not (math.isfinite(median_pitch_hz) and median_pitch_hz > 0):
        median_pitch_hz = None
    family = _family(gender, median_pitch_hz)
    target = median_pitch_hz or _TYPICAL_HZ[family]
    variant, pitch = min(
        (_setting_for(name, measured, target) for name, measured in _MEASURED_HZ[family].items()),
        # Among variants that reach the pitch (within 3 %), the least pushed one sounds best.
        key=lambda choice: (max(0.0, abs(choice[2] - target) - 0.03 * target), abs(choice[1] - 50)),
    )[:2]
    return Prosody(espeak_voice_for(language), variant, pitch, 50, 1.0)


def _family(gender: str | None, median_pitch_hz: float | None) -> Gender:
    if gender in ("male", "female"):
        return "male" if gender == "male" else "female"
    if gender is not None:
        raise ValueError(f"gender must be 'male' or 'female', got {gender!r}")
    if median_pitch_hz is not None and median_pitch_hz < _FEMALE_FROM_HZ:
        return "male"
    return "female"


def _setting_for(
    variant: str, measured: tuple[float, ...], target: float
) -> tuple[str, int, float]:
    """(variant, pitch setting, Hz it reaches): the setting nearest ``target`` in log-pitch."""
    logs = np.log(measured)
    setting = round(float(np.interp(math.log(target), logs, _PITCH_SETTINGS)))
    reached = math.exp(float(np.interp(setting, _PITCH_SETTINGS, logs)))
    return variant, setting, reached
