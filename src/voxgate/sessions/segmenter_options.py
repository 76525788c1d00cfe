"""A Segmenter's thresholds and what it releases: :class:`SegmenterOptions` and :class:`Chunk`.

The rules they parametrise are in :mod:`voxgate.sessions.segmenter`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from voxgate.errors import InvalidInput
from voxgate.sessions.languages import SUPPORTED_LANGUAGES, is_supported

__all__ = ["UPSTREAM_MAX_CHARS", "Chunk", "ChunkReason", "SegmenterOptions"]

UPSTREAM_MAX_CHARS = 5000
"""The upstream's per-request limit: the ceiling for ``SegmenterOptions.max_chars``."""

ChunkReason = Literal["clause", "sentence", "time", "runway", "length", "flush"]


@dataclass(frozen=True, slots=True)
class SegmenterOptions:
    """How a session's text is cut into chunks; every threshold is per session.

    Lengths count characters of normalised text, trailing whitespace included.

    * ``first_min_chars`` (16): the shortest first chunk of a turn, about three words; a
      boundary before it is skipped, so "Sure, " alone is never sent.
    * ``first_clause_boundaries`` (True): the first chunk may end at a clause boundary
      (``, ; : —``), not only at a sentence end: audio starts sooner.
    * ``first_time_bound`` (0.5 s): with no boundary yet, the first chunk is released this
      long after its oldest character arrived, at a word boundary.
    * ``min_chars`` (100): the shortest later chunk; later chunks end at sentence ends and
      combine short sentences up to this, for better prosody.
    * ``max_chars`` (500): the longest chunk, far below the upstream's 5,000 characters
      (``UPSTREAM_MAX_CHARS``, the ceiling): a forced cut keeps requests short and cheap to
      retry.
    * ``time_bound`` (2.0 s): the time bound for later chunks while the listener's runway
      is not known (:meth:`Segmenter.set_runway`). Once it is, a later chunk is cut
      mid-sentence only when the listener is about to run out of audio, or this long after
      its text began to wait if the listener already had. ``math.inf`` disables a time
      bound.
    * ``runway_ms`` (300): with nothing being synthesised, a later chunk may end early
      (:meth:`Segmenter.hurry`) once the listener's audio would run out within this margin
      plus the upstream's measured time to first audio. 0 disables it, and the runway-tied
      time bound with it (a session's context then gives no runway: ``time_bound`` alone).
    * ``language`` ("en"): the language whose abbreviations, titles, months and list
      markers decide sentence ends (:mod:`voxgate.sessions.languages`; a session takes its
      voice's language unless ``session.update`` names one).

    Raises :class:`~voxgate.errors.InvalidInput` naming the field on a bad value.
    """

    first_min_chars: int = 16
    first_clause_boundaries: bool = True
    first_time_bound: float = 0.5
    min_chars: int = 100
    max_chars: int = 500
    time_bound: float = 2.0
    runway_ms: float = 300.0
    language: str = "en"

    def __post_init__(self) -> None:
        if not isinstance(self.language, str) or not is_supported(self.language):
            raise InvalidInput(
                "SegmenterOptions.language must be one of "
                f"{', '.join(SUPPORTED_LANGUAGES)}, got {self.language!r}"
            )
        _check_count("max_chars", self.max_chars, UPSTREAM_MAX_CHARS, "the upstream's limit")
        _check_count("first_min_chars", self.first_min_chars, self.max_chars, "max_chars")
        _check_count("min_chars", self.min_chars, self.max_chars, "max_chars")
        if not isinstance(self.first_clause_boundaries, bool):
            raise InvalidInput(
                "SegmenterOptions.first_clause_boundaries must be true or false, "
                f"got {self.first_clause_boundaries!r}"
            )
        _check_seconds("first_time_bound", self.first_time_bound)
        _check_seconds("time_bound", self.time_bound)
        runway = self.runway_ms
        number = isinstance(runway, int | float) and not isinstance(runway, bool)
        if not number or not 0 <= runway <= 10_000:
            raise InvalidInput(
                "SegmenterOptions.runway_ms must be a number of milliseconds from 0 to 10000 "
                f"(0 disables it), got {runway!r}"
            )


def _check_count(name: str, value: object, ceiling: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= ceiling:
        raise InvalidInput(
            f"SegmenterOptions.{name} must be an integer from 1 to {ceiling} ({what}), "
            f"got {value!r}"
        )


def _check_seconds(name: str, value: object) -> None:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or math.isnan(value) or value <= 0:  # type: ignore[arg-type,operator]
        raise InvalidInput(
            f"SegmenterOptions.{name} must be a positive number of seconds "
            f"(math.inf disables it), got {value!r}"
        )


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of text ready for TTS.

    ``text`` is ``normalised_stream[start:end]``; ``index`` counts chunks from 0 over the
    Segmenter's life; ``reason`` says what released it: a ``"clause"`` or ``"sentence"``
    boundary, the ``"time"`` bound, a short ``"runway"``, the ``"length"`` cap, or
    ``"flush"``.
    """

    text: str
    index: int
    start: int
    end: int
    reason: ChunkReason
