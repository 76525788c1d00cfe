"""The language of a saved voice, as the upstream lists it, for a session that follows its
voice's language (the segmenter's boundary tables; ``docs/segmentation.md``).

Presets carry their language in the catalogue; a saved or cloned voice carries it in the
upstream's voice list (``GET /voices/mine``, at most 20 voices an account). The list is read
when a session names a saved voice it has not seen, and kept for a few minutes: one upstream
call per voice and process now and then, never on the audio path. A list that cannot be read
(the upstream down, a slow answer) leaves the session on English, logged, as a voice the
list does not hold does.
"""

from __future__ import annotations

import asyncio
import logging
import time

from voxgate.errors import VoxgateError
from voxgate.upstream.client import Upstream

__all__ = ["VoiceLanguages"]

log = logging.getLogger(__name__)

KEPT_S = 300.0  # how long a read list answers
LOOKUP_TIMEOUT_S = 1.0  # a session.update waits no longer than this for the list


class VoiceLanguages:
    """Saved voices' languages, read from the upstream's list and kept ``KEPT_S``."""

    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream
        self._languages: dict[str, str] = {}
        self._read_at: float | None = None
        self._reading = asyncio.Lock()

    async def of(self, voice_id: str) -> str | None:
        """The language of saved voice ``voice_id``; None if the list does not say."""
        async with self._reading:  # one read for every session asking at once
            if self._stale(voice_id):
                await self._read()
        return self._languages.get(voice_id)

    def _stale(self, voice_id: str) -> bool:
        if self._read_at is None:
            return True
        age = time.monotonic() - self._read_at
        # A voice the list did not hold may have been saved since: read again, once a second
        # at most.
        return age >= KEPT_S or (voice_id not in self._languages and age >= 1.0)

    async def _read(self) -> None:
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                languages = {
                    voice.id: voice.language
                    async for voice in self._upstream.iter_voices()
                    if voice.language
                }
        except (VoxgateError, TimeoutError, OSError) as exc:
            log.info("saved voices' languages not read: %s", exc)
            self._read_at = time.monotonic()  # what was read before still answers
            return
        self._languages, self._read_at = languages, time.monotonic()
