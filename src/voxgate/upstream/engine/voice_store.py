"""Saved (cloned) voices of the embedded engine, per API key, at most 20 each."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from voxgate.errors import LimitExceeded
from voxgate.upstream.engine.voices import Prosody
from voxgate.upstream.models import MAX_SAVED_VOICES


@dataclass(frozen=True, slots=True)
class SavedVoice:
    id: str
    owner: str
    name: str
    language: str
    gender: str | None
    prosody: Prosody
    pitch_hz: float | None
    ref_audio: bytes = field(repr=False)
    ref_audio_type: str = "application/octet-stream"
    tags: tuple[str, ...] = ()
    created_at: str = ""
    mistral_voice_id: str = ""

    def to_json(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "mistral_voice_id": self.mistral_voice_id,
            "ref_audio_url": f"{base_url}/voices/{self.id}/ref_audio",
            "language": self.language,
            "gender": self.gender,
            "tags": list(self.tags),
            "created_at": self.created_at,
        }


class VoiceStore:
    """In-memory store; the engine is a local stand-in, its voices live as long as it does."""

    def __init__(self, limit: int = MAX_SAVED_VOICES) -> None:
        self._limit = limit
        self._voices: dict[str, SavedVoice] = {}

    def ensure_room(self, owner: str) -> None:
        if self.count(owner) >= self._limit:
            raise LimitExceeded(
                f"you already have {self._limit} saved voices, the maximum; delete one first",
                code="voice_limit_reached",
            )

    def add(self, owner: str, **fields: Any) -> SavedVoice:
        self.ensure_room(owner)
        voice = SavedVoice(
            id=str(uuid.uuid4()),
            owner=owner,
            created_at=_now_iso(),
            mistral_voice_id="vx_" + secrets.token_hex(6),
            **fields,
        )
        self._voices[voice.id] = voice
        return voice

    def get(self, owner: str, voice_id: str) -> SavedVoice | None:
        voice = self._voices.get(voice_id)
        return voice if voice is not None and voice.owner == owner else None

    def count(self, owner: str) -> int:
        return sum(1 for v in self._voices.values() if v.owner == owner)

    def page(self, owner: str, page: int, limit: int) -> tuple[list[SavedVoice], int]:
        """Newest first, as a dashboard lists them."""
        # Dicts keep insertion order, and an update keeps its key's place.
        mine = [v for v in reversed(self._voices.values()) if v.owner == owner]
        start = (page - 1) * limit
        return mine[start : start + limit], len(mine)

    def update(self, voice: SavedVoice, **changes: Any) -> SavedVoice:
        updated = replace(voice, **changes)
        self._voices[voice.id] = updated
        return updated

    def delete(self, voice: SavedVoice) -> None:
        self._voices.pop(voice.id, None)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
