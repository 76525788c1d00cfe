"""Sentence splitting for the embedded engine.

The engine speaks sentence by sentence (so ``/stream`` can send the first sentence while the
rest is still being synthesised) and, like the API it imitates, chunks long texts for
``/generate`` at sentence boundaries. This is deliberately simpler than the gateway's
Segmenter: it sees whole texts, never tokens.
"""

from __future__ import annotations

import re

# A sentence ends at . ! ? … (and the CJK, Devanagari and Arabic stops) followed by space,
# or at a line break; "3.14" stays whole because no space follows its dot.
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[。！？।॥؟])\s*|\n+")
# A dot after one of these (or after a single capital, an initial) does not end a sentence.
_ABBREVIATION = re.compile(
    r"(?:\b(?:Dr|Mr|Mrs|Ms|St|Sr|Sra|Jr|Prof|vs|etc|e\.g|i\.e|z\.B|usw|p\.ex)|\b[A-Z])\.$"
)
_CLAUSE_END = re.compile(r"(?<=[,;:،؛、，])\s+")
_SPACE = re.compile(r"\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, stripped, without empty pieces."""
    sentences: list[str] = []
    for part in _SENTENCE_END.split(text):
        part = part.strip()
        if not part:
            continue
        if sentences and _ABBREVIATION.search(sentences[-1]):
            sentences[-1] = f"{sentences[-1]} {part}"
        else:
            sentences.append(part)
    return sentences


def split_for_streaming(text: str, min_clause_chars: int = 12) -> list[str]:
    """Sentences, with the first cut at its first clause boundary when both halves are long
    enough to sound natural: the listener hears something one clause sooner."""
    sentences = split_sentences(text) or [text]
    head, *rest = sentences
    clauses = _CLAUSE_END.split(head, maxsplit=1)
    if len(clauses) == 2 and min(len(c) for c in clauses) >= min_clause_chars:
        return [*clauses, *rest]
    return sentences


def chunk_text(text: str, max_chars: int) -> list[str]:
    """Whole sentences packed into chunks of at most ``max_chars`` characters.

    A sentence longer than ``max_chars`` is cut at clause boundaries, then at spaces,
    then (only for a single enormous word) anywhere.
    """
    chunks: list[str] = []
    current = ""
    for sentence in split_sentences(text):
        for piece in _fit(sentence, max_chars):
            joined = f"{current} {piece}" if current else piece
            if len(joined) <= max_chars:
                current = joined
            else:
                chunks.append(current)
                current = piece
    if current:
        chunks.append(current)
    return chunks


def _fit(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    pieces: list[str] = []
    for separator in (_CLAUSE_END, _SPACE):
        pieces = _greedy(separator.split(sentence), max_chars)
        if all(len(p) <= max_chars for p in pieces):
            return pieces
    return [s[i : i + max_chars] for s in pieces for i in range(0, len(s), max_chars)]


def _greedy(parts: list[str], max_chars: int) -> list[str]:
    out: list[str] = []
    current = ""
    for part in parts:
        joined = f"{current} {part}" if current else part
        if len(joined) <= max_chars or not current:
            current = joined
        else:
            out.append(current)
            current = part
    if current:
        out.append(current)
    return out
