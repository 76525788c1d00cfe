"""Where speech breaks: voxgate's Segmenter beside Pipecat's and LiveKit's text aggregators.

The corpus is public and fetched at run time from PyPI, never kept in the repository:

* sentencex's sentence-segmentation test cases (``tests/<lang>.txt`` in its sdist; MIT
  licence, Santhosh Thottingal / Wikimedia), for the nine languages of the API;
* pySBD's English "golden rules" (``benchmarks/english_golden_rules.py`` in its wheel; MIT
  licence, Nipun Sadvilkar);
* and the cases of :data:`OWN_CASES` below, written for this bench (list markers, titles,
  months and abbreviations of the API's languages).

Each case is a text and the sentences it should be split into. The text is cut into LLM-like
tokens (a word with its leading space, long words in pieces of up to 6 characters,
punctuation alone) fed at 30 tokens a second on a simulated clock (nothing sleeps: the
Segmenter takes the time as an argument). For voxgate a listener is simulated too: each
chunk's audio starts once the upstream answers (300 ms) and lasts 65 ms a character; the
Segmenter is told when that audio runs out (``Segmenter.set_runway``), and hurried as a
session's context hurries it. Printed per system:

  precision  of the chunk boundaries with the default options: a cut counts as right at a
             sentence end of the case, or after a clause mark (, ; : and dashes); the
             first-chunk time bound (0.5 s, for latency) cuts where it must, and its cuts
             are counted apart
  recall     of sentence ends in a mode that allows every sentence end (no minimum length,
             no time bound); precision in that mode is shown beside it
  changed    cases whose chunks, joined, differ from the text (whitespace collapsed)
  first      mean characters of the first chunk, default options
  µs/token   time spent in the segmenter per token, default options

    python bench/segmentation.py [--cache DIR] [--show-errors] [--only voxgate] [--json PATH]

``--json PATH`` also writes the figures there as one JSON object: ``{"aggregators": {name:
{"precision", "precision_with_time_cuts", "recall", "changed", "changed_cases",
"first_chunk_chars", "us_per_token", "cases", ...}}, "corpus": {"description", "url",
"sources", "cases", ...}}``; the table is printed all the same.

Pipecat and LiveKit come from the ``bench`` extra (``pip install -e '.[bench]'``); a system
that is not installed is skipped.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import dataclasses
import hashlib
import io
import json
import math
import re
import tarfile
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from voxgate.sessions import languages
from voxgate.sessions import segmenter as segmenter_module
from voxgate.sessions.languages import LanguageRules
from voxgate.sessions.segmenter import Chunk, Segmenter, SegmenterOptions

LANGUAGES = ("en", "fr", "es", "pt", "it", "nl", "de", "hi", "ar")
TOKENS_PER_S = 30.0
UPSTREAM_FIRST_S = 0.3  # the upstream's time to first audio
MS_PER_CHAR = 65.0  # speech at about 15 characters a second
UPSTREAM_SPEED = 5.0  # the upstream makes audio this many times faster than real time

SOURCES = {
    # name: (PyPI project, file name, sha256 as PyPI lists it)
    "sentencex": (
        "sentencex",
        "sentencex-1.0.32.tar.gz",
        "",
    ),
    "pysbd": ("pysbd", "pysbd-0.3.4-py3-none-any.whl", ""),
}

# Cases of this bench's own: a language ("/lines": its sentences are lines), then one
# sentence a line ("+": no space before it); a blank line ends a case.
OWN_CASES = """
en
1. Preheat the oven.
2. Mix the flour.

en/lines
Steps:
1) Open the box.
2) Take it out.

en
We met on Jan. 5 at noon.
It rained.

en
He climbed Mt. Everest in May.
Then he rested.

en
I was thinking . . . maybe not.
Fine.

es
La Lic. Pérez llegó el Lun. 3 de Ago. a Madrid.
Después se fue.

es
El Ing. Gómez y la Dra. Ruiz vinieron.
Todo bien.

es
Vive en la Avda. Libertad, núm. 5.
Es lejos.

es
Llega el mar. 12 de Ene. por la tarde.
Gracias.

pt
O Sr. Costa e a Sra. Lima chegaram.
Boa tarde.

pt
A Profa. Santos mora na Av. Paulista, nº. 100.
Que bom.

pt
Veja o cap. 3 e a pág. 12.
Depois leia mais.

it
Il Dott. Bianchi e l'Avv. Neri, ad es. Rossi, sono qui.
Bene.

it
La Prof.ssa Verdi arriva gen. 14.
Ciao.

fr
M. Dupont et Mme Durand sont là.
Bonjour.

fr
Le Dr Martin, cf. Chap. 2, le confirme.
Merci.

fr
Rendez-vous le 3 janv. à midi, env.
Ensuite on part.

nl
Dhr. De Vries en Mevr. Bakker komen o.a. morgen.
Tot dan.

nl
Zie blz. 4 en nr. 7, bijv. Amsterdam.
Klaar.

de
Wir trafen Dr. med. Weber am 3. Okt. in Berlin.
Danach gingen wir.

de
Er ist z. Z. in der Stadt, ca. 5 km weit.
Gut so.

de
Das ist Nr. 5 in Abb. 3, vgl. Kap. 2.
Fertig.

hi
डॉ. शर्मा आज आए।
वे खुश थे।

ar
قال د. أحمد إن الحالة مستقرة.
شكرا لكم.

en
Read Vol. II and Chap. IV tonight.
Then sleep.

de
Siehe Bd. III und Kap. IV im Anhang.
Danach weiter.

es
Lea el vol. II con calma.
Luego hablamos.

en
At 9 p.m. Mr. Lee called.
She left at 9 p.m.
Mr. Lee stayed.

en
In 753 B.C. Rome was founded.
Augustus came centuries later.

it
Nel 44 a.C. Cesare fu ucciso.
Augusto regnò poi a lungo.

es
César murió en el 44 a.C.
Augusto reinó después.

en
a. Open the box
b. Take out the book
c. Close the box

es
a. Abra la caja
b. Saque el libro

fr
a. Ouvrez la boîte
b. Sortez le livre

en
The U. A. E. team won the cup.
Fans cheered.

pt
Falei com J. A. Silva ontem.
Ele vem amanhã.

it
Ho letto J. E. Hoover ieri.
Era lungo.

en
It rained.
Then it stopped.
+Everyone went out.

de
Es regnete.
+Dann schien die Sonne.
Alle gingen hinaus.

fr
Il pleuvait.
+Ensuite le soleil est revenu.

en
He said: 'Stop. Think first.'
Then he left.

it
Disse: 'Basta. Andiamo via.'
Poi uscì.

nl
Hij zei: 'Kom. We gaan.'
Daarna vertrok hij.

en
Rock 'n' roll is loud.
We love it.
"""


@dataclass
class Case:
    source: str
    language: str
    text: str
    sentences: list[str]


# -- the corpus ----------------------------------------------------------------------------


def _fetch(project: str, filename: str, cache: Path) -> bytes:
    """A file of a PyPI release, through the index's JSON API, kept in ``cache``."""
    path = cache / filename
    if path.exists():
        return path.read_bytes()
    request = urllib.request.Request(
        f"https://pypi.org/simple/{project}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        files = json.load(answer)["files"]
    entry = next(f for f in files if f["filename"] == filename)
    with urllib.request.urlopen(entry["url"], timeout=120) as answer:
        data: bytes = answer.read()
    if hashlib.sha256(data).hexdigest() != entry["hashes"]["sha256"]:
        raise RuntimeError(f"{filename}: sha256 does not match the index")
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def _sentencex_cases(data: bytes) -> Iterator[Case]:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for language in LANGUAGES:
            member = archive.extractfile(f"sentencex-1.0.32/tests/{language}.txt")
            assert member is not None
            yield from _parse_sentencex(language, member.read().decode())


def _parse_sentencex(language: str, text: str) -> Iterator[Case]:
    # Input lines, "---", expected lines, "==="; lines starting with "#" are disabled cases.
    for block in text.split("\n===\n"):
        lines = [line for line in block.splitlines() if not line.startswith("#")]
        if "---" not in lines:
            continue
        split = lines.index("---")
        source = "\n".join(lines[:split]).strip()
        expected = [line.strip() for line in lines[split + 1 :] if line.strip()]
        if source and expected:
            yield Case("sentencex", language, source, expected)


def _golden_rules(data: bytes) -> Iterator[Case]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        code = archive.read("benchmarks/english_golden_rules.py").decode()
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "GOLDEN_EN_RULES":
            for text, expected in ast.literal_eval(node.value):
                yield Case("pysbd", "en", text, list(expected))


def _own_cases() -> Iterator[Case]:
    for block in OWN_CASES.strip().split("\n\n"):
        language, *lines = block.split("\n")
        language, _, as_lines = language.partition("/")
        text, sentences = "", []
        for line in lines:  # "+" joins a sentence to the one before without a space
            glued = line.startswith("+")
            sentence = line[1:] if glued else line
            text += ("" if glued or not text else "\n" if as_lines else " ") + sentence
            sentences.append(sentence)
        yield Case("own", language, text, sentences)


def load_corpus(cache: Path) -> list[Case]:
    cases = list(_sentencex_cases(_fetch("sentencex", "sentencex-1.0.32.tar.gz", cache)))
    cases += _golden_rules(_fetch("pysbd", "pysbd-0.3.4-py3-none-any.whl", cache))
    cases += _own_cases()
    return [case for case in cases if _locate(case) is not None]


# Markdown marks nobody says, which the Segmenter may drop (docs/segmentation.md): they are
# left out on both sides before texts are compared.
_UNSAID = re.compile(r"[`*_~#|>•◦▪‣]")


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", _UNSAID.sub("", text)).strip()


def _locate(case: Case) -> list[int] | None:
    """The end offsets of the case's sentences in its collapsed text; None if they do not
    add up to it (a few cases expect text the splitter drops)."""
    text = _collapse(case.text)
    ends, pos = [], 0
    for sentence in case.sentences:
        found = text.find(_collapse(sentence), pos)
        if found < 0 or text[pos:found].strip():
            return None
        pos = found + len(_collapse(sentence))
        ends.append(pos)
    return ends if not text[pos:].strip() else None


# -- tokens --------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:[^\W\d_]{1,6}|\d{1,3}|[^\w\s]|_)|\s+")


def llm_tokens(text: str) -> list[str]:
    """Text cut as an LLM's tokenizer roughly would: a word piece takes its leading space."""
    return _TOKEN.findall(text)


# -- systems -------------------------------------------------------------------------------

# (tokens, every sentence end allowed) -> (chunks, whether the first-chunk time bound made
# the first cut, seconds spent)
Feed = Callable[[list[str], bool], tuple[list[str], bool, float]]


@dataclass
class _Listener:
    """A listener's audio queue: when each chunk's audio starts and ends."""

    audio_end: float = -math.inf
    busy_until: float = -math.inf  # the upstream is fetching until then

    def play(self, chunk: str, now: float) -> None:
        seconds = len(chunk.strip()) * MS_PER_CHAR / 1000
        start = max(now + UPSTREAM_FIRST_S, self.audio_end)
        self.audio_end = start + seconds
        self.busy_until = max(self.busy_until, now) + UPSTREAM_FIRST_S + seconds / UPSTREAM_SPEED

    def runway(self, now: float) -> float | None:
        """When a chunk sent now would start after the audio ran out (as the context says)."""
        if self.audio_end == -math.inf:
            return None
        if now < self.busy_until:
            return math.inf
        return self.audio_end - UPSTREAM_FIRST_S


def voxgate_feed(options: SegmenterOptions) -> Feed:
    def feed(tokens: list[str], every: bool) -> tuple[list[str], bool, float]:
        opts = options
        if every:
            opts = SegmenterOptions(
                language=options.language,
                first_min_chars=1,
                first_clause_boundaries=False,
                min_chars=1,
                first_time_bound=math.inf,
                time_bound=math.inf,
            )
        segmenter = Segmenter(opts)
        listener = _Listener()
        chunks: list[Chunk] = []
        spent = 0.0

        def take(released: list[Chunk], now: float) -> None:
            for chunk in released:
                listener.play(chunk.text, now)
            chunks.extend(released)

        def step(now: float, token: str | None) -> None:
            nonlocal spent
            started = time.perf_counter()
            segmenter.set_runway(listener.runway(now))
            released = segmenter.poll(now) if token is None else segmenter.push(token, now)
            out_at = listener.runway(now)
            if out_at is not None and not math.isinf(out_at) and segmenter.pending:
                left_ms = (out_at - now) * 1000
                if left_ms <= opts.runway_ms:
                    unplayed = listener.audio_end > now
                    released += segmenter.hurry(now, to_a_word=left_ms <= 0 and unplayed)
            spent += time.perf_counter() - started
            take(released, now)

        for k, token in enumerate(tokens):
            now = k / TOKENS_PER_S
            step(now, token)
            # Time passes until the next token: the deadline and the runway may fall there.
            after = (k + 1) / TOKENS_PER_S
            for _ in range(8):
                due = segmenter.deadline
                if due is None or due >= after:
                    break
                step(max(due, now), None)
        started = time.perf_counter()
        released = segmenter.flush()
        spent += time.perf_counter() - started
        take(released, len(tokens) / TOKENS_PER_S)
        latency = bool(chunks) and chunks[0].reason == "time"
        return _Slices(chunk.text for chunk in chunks), latency, spent

    return feed


def voxgate_with_tables(rules: LanguageRules) -> Feed:
    """voxgate's Segmenter with other boundary tables: to weigh a data source."""
    feed = voxgate_feed(SegmenterOptions(language=rules.language))

    def with_tables(tokens: list[str], every: bool) -> tuple[list[str], bool, float]:
        original = languages.rules_for
        segmenter_module.rules_for = lambda language: rules  # type: ignore[assignment]
        try:
            return feed(tokens, every)
        finally:
            segmenter_module.rules_for = original

    return with_tables


_PYSBD_MODULES = {"en": "common/standard", "fr": "french", "es": "spanish", "it": "italian",
                  "nl": "dutch", "de": "deutsch", "ar": "arabic"}  # fmt: skip


def pysbd_rules(data: bytes, language: str) -> LanguageRules:
    """pySBD's abbreviation lists (MIT licence) in voxgate's tables: its prepositive
    abbreviations as titles, its abbreviations, its number abbreviations; the rest ours."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        standard = _pysbd_lists(archive.read("pysbd/lang/common/standard.py").decode())
        module = _PYSBD_MODULES.get(language, "common/standard")
        lists = {**standard, **_pysbd_lists(archive.read(f"pysbd/lang/{module}.py").decode())}
    ours = languages.rules_for(language)

    def words(name: str) -> frozenset[str]:
        return frozenset(w.strip().lower().rstrip(".") for w in lists.get(name, []))

    return LanguageRules(
        language,
        titles=words("PREPOSITIVE_ABBREVIATIONS"),
        abbreviations=words("ABBREVIATIONS"),
        before_numbers=words("NUMBER_ABBREVIATIONS"),
        ordinal_words=ours.ordinal_words,
        may_end=ours.may_end,
        starters=ours.starters,
        openers=ours.openers,
    )


def _pysbd_lists(code: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name.endswith("ABBREVIATIONS") and isinstance(node.value, ast.List):
                found[name] = ast.literal_eval(node.value)
    return found


def icu_feed(language: str) -> Feed:
    """ICU's sentence break iterator with CLDR's suppressions (``@ss=standard``), run over
    the text so far after every token; a break counts once a whole word follows it."""
    import icu  # type: ignore[import-not-found]

    def feed(tokens: list[str], every: bool) -> tuple[list[str], bool, float]:
        breaks = icu.BreakIterator.createSentenceInstance(icu.Locale(f"{language}@ss=standard"))
        chunks: list[str] = []
        buf, spent = "", 0.0
        for token in tokens:
            started = time.perf_counter()
            buf += token
            breaks.setText(buf)
            sure = buf.rstrip().rfind(" ")  # text after it may still change the decision
            cut = 0
            for pos in breaks:
                if 0 < pos <= sure and buf[pos:sure].strip():
                    cut = pos
            if cut:
                chunks.append(buf[:cut])
                buf = buf[cut:]
            spent += time.perf_counter() - started
        if buf.strip():
            chunks.append(buf)
        return _Slices(chunks), False, spent

    return feed


def pipecat_feed(language: str) -> Feed:
    """Pipecat's SimpleTextAggregator, as its TTS services use it (sentence mode)."""
    from pipecat.utils.text.simple_text_aggregator import SimpleTextAggregator

    async def run(tokens: list[str]) -> tuple[list[str], float]:
        aggregator = SimpleTextAggregator(language=language)
        chunks: list[str] = []
        spent = 0.0
        for token in tokens:
            started = time.perf_counter()
            chunks += [a.text async for a in aggregator.aggregate(token)]
            spent += time.perf_counter() - started
        started = time.perf_counter()
        rest = await aggregator.flush()
        spent += time.perf_counter() - started
        if rest is not None and rest.text.strip():
            chunks.append(rest.text)
        return chunks, spent

    def feed(tokens: list[str], every: bool) -> tuple[list[str], bool, float]:
        chunks, spent = asyncio.run(run(tokens))  # it cuts at every sentence end anyway
        return chunks, False, spent

    return feed


def livekit_feed(language: str) -> Feed:
    """LiveKit's default for streamed TTS: the blingfire sentence tokenizer, as the
    StreamAdapter makes it (every sentence end allowed: no minimum length)."""
    from livekit.agents import tokenize

    async def run(tokens: list[str], every: bool) -> tuple[list[str], float]:
        if every:
            tokenizer = tokenize.blingfire.SentenceTokenizer(
                retain_format=True, min_sentence_len=1, stream_context_len=1
            )
        else:
            tokenizer = tokenize.blingfire.SentenceTokenizer(retain_format=True)
        stream = tokenizer.stream(language=language)
        spent = 0.0
        for token in tokens:
            started = time.perf_counter()
            stream.push_text(token)
            spent += time.perf_counter() - started
        started = time.perf_counter()
        stream.end_input()
        spent += time.perf_counter() - started
        return [data.token async for data in stream], spent

    def feed(tokens: list[str], every: bool) -> tuple[list[str], bool, float]:
        chunks, spent = asyncio.run(run(tokens, every))
        return chunks, False, spent

    return feed


# -- scoring -------------------------------------------------------------------------------


@dataclass
class Score:
    cuts: int = 0
    right: int = 0
    latency_cuts: int = 0  # first chunks the first-chunk time bound released
    latency_right: int = 0  # of them, those that fell at a sentence end or a clause mark
    every_cuts: int = 0
    every_right: int = 0
    ends: int = 0
    found: int = 0
    changed: list[tuple[Case, str]] = field(default_factory=list)
    wrong: list[tuple[Case, str]] = field(default_factory=list)
    missed: list[tuple[Case, str]] = field(default_factory=list)
    first_chars: list[int] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    cases: int = 0


_CLAUSE_END = re.compile(r"[,;:—–\-،؛、，；：][\"'”’»)\]]*$")


def _cut_offsets(chunks: list[str], text: str) -> list[int] | None:
    """Where each cut falls in the collapsed text, trailing whitespace left out."""
    if _exact(chunks):  # voxgate's chunks are slices of the text, whitespace included
        if _collapse("".join(chunks)) != text:
            return None
        offsets, pos = [], 0
        for chunk in chunks[:-1]:
            pos += len(chunk)
            offsets.append(len(_collapse("".join(chunks)[:pos])))
        return offsets
    # Stripped chunks (Pipecat, LiveKit) cannot say whether a space was at a cut: compare
    # without spaces, and place each cut after as many visible characters.
    pieces = [piece.replace(" ", "") for piece in (_collapse(chunk) for chunk in chunks)]
    if "".join(pieces) != text.replace(" ", ""):
        return None
    visible = [k + 1 for k, c in enumerate(text) if c != " "]  # offset after each one
    offsets, count = [], 0
    for piece in pieces[:-1]:
        count += len(piece)
        if count:
            offsets.append(visible[count - 1])
    return offsets


class _Slices(list[str]):
    """Chunks that are exact slices of the text: joined as they are."""


def _exact(chunks: list[str]) -> bool:
    return isinstance(chunks, _Slices)


def score(feed: Feed, cases: list[Case]) -> Score:
    result = Score()
    for case in cases:
        result.cases += 1
        text = _collapse(case.text)
        ends = _locate(case) or []
        tokens = llm_tokens(case.text)
        chunks, latency, spent = feed(tokens, False)
        result.tokens += len(tokens)
        result.seconds += spent
        offsets = _cut_offsets(chunks, text)
        if offsets is None:
            result.changed.append((case, " | ".join(chunks)))
            continue
        if chunks:
            result.first_chars.append(len(chunks[0]))
        for k, cut in enumerate(offsets):
            right = cut in ends or _CLAUSE_END.search(text[:cut]) is not None
            if k == 0 and latency:  # scored like any cut, counted apart
                result.latency_cuts += 1
                result.latency_right += right
                continue
            result.cuts += 1
            if right:
                result.right += 1
            else:
                result.wrong.append((case, text[:cut] + " ‖ " + text[cut:]))
        every, _, _ = feed(tokens, True)
        every_offsets = _cut_offsets(every, text) or []
        for cut in every_offsets:
            result.every_cuts += 1
            result.every_right += cut in ends
        for end in ends[:-1]:
            result.ends += 1
            if end in every_offsets:
                result.found += 1
            else:
                result.missed.append((case, text[:end] + " ‖ " + text[end:]))
    return result


def _ratio(a: int, b: int) -> float:
    return a / b if b else 1.0


def figures(result: Score) -> dict[str, object]:
    """The figures of one system, as ``--json`` writes them."""
    return {
        "precision": round(_ratio(result.right, result.cuts), 4),
        "precision_with_time_cuts": round(
            _ratio(result.right + result.latency_right, result.cuts + result.latency_cuts), 4
        ),
        "recall": round(_ratio(result.found, result.ends), 4),
        "precision_all_ends_allowed": round(_ratio(result.every_right, result.every_cuts), 4),
        "changed": len(result.changed),
        "changed_cases": [
            {"language": case.language, "source": case.source, "text": case.text, "chunks": got}
            for case, got in result.changed
        ],
        "first_chunk_chars": round(sum(result.first_chars) / max(1, len(result.first_chars)), 1),
        "us_per_token": round(result.seconds / max(1, result.tokens) * 1e6, 2),
        "cases": result.cases,
        "cuts": result.cuts,
        "wrong_cuts": len(result.wrong),
        "time_cuts": result.latency_cuts,
        "time_cuts_right": result.latency_right,
        "sentence_ends": result.ends,
        "sentence_ends_found": result.found,
    }


def report(name: str, result: Score, show_errors: bool) -> None:
    f = figures(result)
    print(
        f"{name:<10} precision {f['precision']:.3f} ({result.cuts} cuts, {len(result.wrong)} "
        f"wrong; {result.latency_cuts} more by the first-chunk time bound, "
        f"{result.latency_right} of them right: {f['precision_with_time_cuts']:.3f} with them)  "
        f"recall {f['recall']:.3f} ({result.found}/{result.ends}; "
        f"precision {f['precision_all_ends_allowed']:.3f})  "
        f"changed {f['changed']}  first {f['first_chunk_chars']:.1f} chars  "
        f"{f['us_per_token']:.1f} µs/token"
    )
    if show_errors:
        for label, items in (("changed", result.changed), ("wrong cut", result.wrong),
                             ("missed end", result.missed)):  # fmt: skip
            for case, detail in items:
                print(f"  {label} [{case.language} {case.source}] {detail}")


def corpus_description(cases: list[Case]) -> dict[str, object]:
    """What ``--json`` says of the corpus."""
    return {
        "description": "sentence-boundary cases in the nine languages of the API, fed as LLM "
        f"tokens at {TOKENS_PER_S:g} tokens/s on a simulated clock",
        "url": "https://pypi.org/project/sentencex/",
        "sources": [
            {
                "name": "sentencex 1.0.32 tests/<lang>.txt",
                "licence": "MIT",
                "url": "https://pypi.org/project/sentencex/1.0.32/",
            },
            {
                "name": "pySBD 0.3.4 benchmarks/english_golden_rules.py",
                "licence": "MIT",
                "url": "https://pypi.org/project/pysbd/0.3.4/",
            },
            {"name": "bench/segmentation.py OWN_CASES", "licence": "the project's", "url": None},
        ],
        "cases": len(cases),
        "by_language": {lang: sum(c.language == lang for c in cases) for lang in LANGUAGES},
        "by_source": {
            name: sum(c.source == name for c in cases) for name in ("sentencex", "pysbd", "own")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "voxgate-bench")
    parser.add_argument("--show-errors", action="store_true")
    parser.add_argument("--only", default="")
    parser.add_argument(
        "--sources", action="store_true", help="also weigh the boundary data sources"
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the figures there, as JSON"
    )
    args = parser.parse_args()
    cases = load_corpus(args.cache)
    counts = {lang: sum(c.language == lang for c in cases) for lang in LANGUAGES}
    print(f"{len(cases)} cases: " + " ".join(f"{k} {v}" for k, v in counts.items()))
    pysbd = _fetch("pysbd", "pysbd-0.3.4-py3-none-any.whl", args.cache)
    systems: dict[str, Callable[[str], Feed]] = {
        "voxgate": lambda lang: voxgate_feed(SegmenterOptions(language=lang)),
        "pipecat": pipecat_feed,
        "livekit": livekit_feed,
    }
    if args.sources:  # the data sources weighed for voxgate's tables
        systems["vg+common"] = lambda lang: voxgate_with_tables(_common_only(lang))
        systems["vg+pysbd"] = lambda lang: voxgate_with_tables(pysbd_rules(pysbd, lang))
        systems["icu-cldr"] = icu_feed
    results: dict[str, dict[str, object]] = {}
    for name, make in systems.items():
        if args.only and name != args.only:
            continue
        try:
            make("en")
        except ImportError:
            print(f"{name:<10} not installed (pip install -e '.[bench]')")
            continue
        total = Score()
        for language in LANGUAGES:
            part = score(make(language), [c for c in cases if c.language == language])
            _add(total, part)
        report(name, total, args.show_errors)
        results[name] = figures(total)
    if args.json is not None:
        document = {"aggregators": results, "corpus": corpus_description(cases)}
        args.json.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def _common_only(language: str) -> LanguageRules:
    """The tables every language shares, none of the language's own."""
    return dataclasses.replace(languages.rules_for("(none)"), language=language)


def _add(total: Score, part: Score) -> None:
    for name in (
        "cuts",
        "right",
        "latency_cuts",
        "latency_right",
        "every_cuts",
        "every_right",
        "ends",
        "found",
        "tokens",
        "cases",
    ):
        setattr(total, name, getattr(total, name) + getattr(part, name))
    total.seconds += part.seconds
    total.changed += part.changed
    total.wrong += part.wrong
    total.missed += part.missed
    total.first_chars += part.first_chars


if __name__ == "__main__":
    main()
