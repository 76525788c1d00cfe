"""Which text is where in the audio, so "what was heard" is known at any instant.

The Voxtral API gives no word timings, so inside a chunk they are estimated from the
chunk's measured audio duration: each word gets time in proportion to its spoken weight
(letters, plus a pause after punctuation). Between chunks the boundaries are exact: each
chunk's audio is measured as it is delivered.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass

_WORD = re.compile(r"\S+")
_PAUSE_AFTER = {
    ",": 2.0,
    ";": 3.0,
    ":": 3.0,
    ".": 4.0,
    "!": 4.0,
    "?": 4.0,
    "…": 4.0,
    "،": 2.0,
    "؛": 3.0,
    "؟": 4.0,
    "।": 4.0,
    "。": 4.0,
    "！": 4.0,
    "？": 4.0,
    "，": 2.0,
}
# Leading and trailing silence espeak-like engines put around an utterance, as a share of it.
_EDGE_SHARE = 0.04


@dataclass(frozen=True, slots=True)
class WordMark:
    text: str
    char_start: int  # offsets into the chunk's text
    char_end: int
    start_ms: float  # offsets into the chunk's audio
    end_ms: float


def estimate_words(text: str, duration_ms: float) -> tuple[WordMark, ...]:
    """Word marks spread over ``duration_ms`` by spoken weight."""
    matches = list(_WORD.finditer(text))
    if not matches or duration_ms <= 0:
        return ()
    weights = [_weight(m.group()) for m in matches]
    edge = duration_ms * _EDGE_SHARE
    scale = (duration_ms - 2 * edge) / sum(weights)
    marks: list[WordMark] = []
    t = edge
    for match, weight in zip(matches, weights, strict=True):
        end = t + weight * scale
        marks.append(WordMark(match.group(), match.start(), match.end(), t, end))
        t = end
    return tuple(marks)


def _weight(word: str) -> float:
    letters = sum(1 for c in word if c.isalnum())
    return max(letters, 1) + _PAUSE_AFTER.get(word[-1], 0.0)


def heard_cut(text: str, duration_ms: float, played_ms: float) -> int:
    """Offset in ``text`` separating heard from unheard, ``played_ms`` into its audio.

    A word counts as heard once half of it has played: the listener can tell what it was.
    The cut falls just before the first unheard word, so spaces go with the heard side.
    """
    if played_ms <= 0:
        return 0
    if played_ms >= duration_ms:
        return len(text)
    words = estimate_words(text, duration_ms)
    mids = [(w.start_ms + w.end_ms) / 2 for w in words]
    heard = bisect_right(mids, played_ms)
    if heard == 0:
        return 0
    if heard == len(words):
        return len(text)
    return words[heard].char_start
