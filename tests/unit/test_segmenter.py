"""The Segmenter, as a client sees it: raw tokens in, chunks (and their text) out."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from voxgate.errors import InvalidInput
from voxgate.sessions.segmenter import (
    UPSTREAM_MAX_CHARS,
    Chunk,
    Segmenter,
    SegmenterOptions,
    normalise,
)
from voxgate.sessions.text_normalise import TextNormaliser

# Every sentence boundary cuts, so a table can list sentences.
SENTENCES = SegmenterOptions(first_min_chars=1, first_clause_boundaries=False, min_chars=1)
# The first chunk ends at the first boundary of any kind.
EARLIEST = SegmenterOptions(first_min_chars=1)


def segment(
    text: str, options: SegmenterOptions = SENTENCES, tokens: list[str] | None = None
) -> list[Chunk]:
    """One turn pushed at a frozen clock (no time bound fires), then flushed."""
    segmenter = Segmenter(options)
    chunks: list[Chunk] = []
    for token in tokens if tokens is not None else [text]:
        chunks += segmenter.push(token, 0.0)
    return chunks + segmenter.flush()


def texts(chunks: list[Chunk]) -> list[str]:
    return [chunk.text for chunk in chunks]


def deadline(segmenter: Segmenter) -> float | None:
    return segmenter.deadline  # read through a call: mypy would narrow the property


def char_by_char(text: str) -> list[str]:
    return list(text)


def stream(normaliser: TextNormaliser, tokens: list[str]) -> str:
    return "".join(normaliser.feed(token) for token in tokens) + normaliser.finish()


# -- normalisation ---------------------------------------------------------------------

NORMALISE_CASES = [
    ("bold and em", "Say **hello** to *her* and _him_.", "Say hello to her and him."),
    ("bold italic", "***Very*** __strong__ ~~gone~~", "Very strong gone"),
    ("markers in a sentence", "A **bold claim**, right?", "A bold claim, right?"),
    ("loose star kept", "5 * 3 = 15", "5 * 3 = 15"),
    ("lone double star dropped", "**\nText **", "Text"),
    ("star between digits kept", "2*3 is six", "2*3 is six"),
    ("snake_case kept", "set my_var_name now", "set my_var_name now"),
    ("single tilde kept", "about ~5 minutes", "about ~5 minutes"),
    (
        "inline code keeps content",
        "Run `pip install *voxgate*` now.",
        "Run pip install *voxgate* now.",
    ),
    ("double-tick code", "Use ``a ` b`` here", "Use a ` b here"),
    ("link to text", "See [the docs](https://x.io/a_(b)) now.", "See the docs now."),
    ("image dropped", "Look ![a cat](cat.png) here.", "Look here."),
    ("citation brackets kept", "As shown [1], it works.", "As shown [1], it works."),
    ("omission kept", "Bohr [...] used it.", "Bohr [...] used it."),
    ("bracket in a link", "See [a [b] c](u) now", "See a [b] c now"),
    ("long link text", "[" + "x" * 70 + "](u) ok", "[" + "x" * 70 + " ok"),
    ("heading", "## Summary\nAll good.", "Summary\nAll good."),
    ("not a heading", "#hashtag and ####### seven", "#hashtag and ####### seven"),
    ("bullets", "- one\n* two\n+ three\n• four", "one\ntwo\nthree\nfour"),
    ("numbering kept", "1. first\n2) second\n10. tenth", "1. first\n2) second\n10. tenth"),
    ("bullet then number", "• 9. Sport\n- 10. Rest", "9. Sport\n10. Rest"),
    ("numbered task box", "1. [ ] todo", "1. todo"),
    ("year is not numbering", "2024. What a year.", "2024. What a year."),
    ("decimal at line start", "3.14 is pi", "3.14 is pi"),
    ("nested bullets", "- top\n  - nested\n    1. deep", "top\nnested\n1. deep"),
    ("task boxes", "- [ ] todo\n- [x] done", "todo\ndone"),
    ("block quote", "> quoted\n> > deeper", "quoted\ndeeper"),
    ("rule dropped", "Above\n---\nBelow\n***\n* * *\n___\nEnd", "Above\nBelow\nEnd"),
    ("setext underline", "Title\n=====\nBody", "Title\nBody"),
    ("negative number", "-5 degrees", "-5 degrees"),
    ("table", "| Name | Age |\n|------|:---:|\n| Ann | 30 |", "Name Age\nAnn 30"),
    ("pipe in prose kept", "a | b", "a | b"),
    ("fence dropped", "Code:\n```python\nprint(1)\n```\nDone.", "Code:\nDone."),
    ("tilde fence", "A\n~~~\nx = 1\n~~~\nB", "A\nB"),
    ("unclosed fence", "Intro\n```\nsecret()\nmore()", "Intro"),
    ("longer closing fence", "A\n````\n```\nstill code\n`````\nB", "A\nB"),
    ("fence in quote", "> ```\n> code\n> ```\nAfter", "After"),
    ("one-line triple ticks", "```x = 1``` is code", "x = 1 is code"),
    ("escapes", "\\*not em\\* and \\_x\\_ and C:\\dir", "*not em* and _x_ and C:\\dir"),
    ("url kept whole", "Go to https://a.io/_x_/*y* now", "Go to https://a.io/_x_/*y* now"),
    ("www url kept", "Go to www.a.io/__init__ now", "Go to www.a.io/__init__ now"),
    ("whitespace collapsed", "  a \t b  \n\n\n c  ", "a b\nc"),
    ("crlf", "a\r\nb\r\n", "a\nb"),
    ("nbsp", "Quoi\u00a0?\u202fOui", "Quoi ? Oui"),
    ("only markdown", "```\ncode\n```\n---\n", ""),
    ("empty", "", ""),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [case[1:] for case in NORMALISE_CASES], ids=[c[0] for c in NORMALISE_CASES]
)
def test_normalise(raw: str, expected: str) -> None:
    assert normalise(raw) == expected


@pytest.mark.parametrize(
    "raw", [case[1] for case in NORMALISE_CASES], ids=[c[0] for c in NORMALISE_CASES]
)
def test_normalise_is_the_same_fed_char_by_char(raw: str) -> None:
    assert stream(TextNormaliser(), char_by_char(raw)) == normalise(raw)


SPLIT_MARKUP_CASES = [
    ("fence split in ticks", ["Hi.\n``", "`py", "\nx = 1\n`", "``\nBye."], "Hi.\nBye."),
    ("fence closing split", ["A\n```\nx\n``", "`", "\nB"], "A\nB"),
    ("bold split", ["**bo", "ld*", "* text"], "bold text"),
    ("star alone at end", ["Hello *"], "Hello *"),
    ("star then word", ["Hello *", "world*"], "Hello world"),
    ("backtick at end", ["Use `", "code` now"], "Use code now"),
    ("link split", ["[te", "xt](ht", "tp://a.b", ") ok"], "text ok"),
    ("image split", ["!", "[alt", "](x.png", ") ok"], "ok"),
    ("bang is not image", ["Wow!", " Yes"], "Wow! Yes"),
    ("heading split", ["#", "# Title\nBody"], "Title\nBody"),
    ("rule split", ["Up\n-", "-", "-\nDown"], "Up\nDown"),
    ("escape split", ["\\", "*x"], "*x"),
]


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [case[1:] for case in SPLIT_MARKUP_CASES],
    ids=[c[0] for c in SPLIT_MARKUP_CASES],
)
def test_markup_split_across_tokens(tokens: list[str], expected: str) -> None:
    assert stream(TextNormaliser(), tokens) == expected
    assert "".join(texts(segment("", tokens=tokens))) == expected


def test_marker_at_buffer_end_is_held_until_known() -> None:
    normaliser = TextNormaliser()
    assert normaliser.feed("Say *") == "Say"
    assert normaliser.at_word_end
    assert normaliser.feed("hi*") == " hi"
    assert normaliser.feed(" and\n``") == " and"  # maybe a fence: held
    assert normaliser.feed("`py\ncode\n```\n") == ""
    assert normaliser.feed("Done") == "\nDone"
    assert normaliser.finish() == ""


def test_exclamation_after_a_word_is_not_held() -> None:
    normaliser = TextNormaliser()
    assert normaliser.feed("Wow!") == "Wow!"  # only " ![" can open an image
    assert not normaliser.holding
    assert normaliser.feed(" !") == ""
    assert normaliser.holding


def test_chunks_never_contain_fenced_code() -> None:
    tokens = ["Here is the fix:\n", "``", "`python\n", "def f():\n", "    return 1\n", "`", "``\n"]
    tokens += ["It returns one."]
    assert texts(segment("", tokens=tokens)) == ["Here is the fix:\n", "It returns one."]


# -- sentence boundaries -----------------------------------------------------------------

SENTENCE_CASES = [
    ("plain", "One. Two! Three? Four", ["One. ", "Two! ", "Three? ", "Four"]),
    ("interrobang", "Really?! Yes.", ["Really?! ", "Yes."]),
    (
        "title abbreviations",
        "Dr. Who and Mr. Smith met Mrs. Jones. Fine.",
        ["Dr. Who and Mr. Smith met Mrs. Jones. ", "Fine."],
    ),
    (
        "latin abbreviations",
        "Fruit, e.g. Apples, i.e. Red ones, vs. Pears. Ok.",
        ["Fruit, e.g. Apples, i.e. Red ones, vs. Pears. ", "Ok."],
    ),
    (
        "etc may end a sentence",
        "Apples, pears, etc. Then more.",
        ["Apples, pears, etc. ", "Then more."],
    ),
    ("saint", "We went to St. Louis. Nice.", ["We went to St. Louis. ", "Nice."]),
    (
        "spanish titles",
        "La Sra. García y el Sr. Pérez. Bien.",
        ["La Sra. García y el Sr. Pérez. ", "Bien."],
    ),
    ("portuguese", "O Dr. Silva chegou. Olá.", ["O Dr. Silva chegou. ", "Olá."]),
    (
        "german abbreviations",
        "Obst, z.B. Äpfel, usw. Dann mehr.",
        ["Obst, z.B. Äpfel, usw. ", "Dann mehr."],
    ),
    ("german ordinal date", "Am 3. Mai ist Feier. Gut.", ["Am 3. Mai ist Feier. ", "Gut."]),
    ("number then sentence", "I counted 3. Then 4.", ["I counted 3. ", "Then 4."]),
    (
        "french abbreviation",
        "Des fruits, p.ex. Pommes. Voilà.",
        ["Des fruits, p.ex. Pommes. ", "Voilà."],
    ),
    ("italian", "Il Sig. Rossi arriva. Ciao.", ["Il Sig. Rossi arriva. ", "Ciao."]),
    ("dutch", "Dhr. Jansen komt. Dag.", ["Dhr. Jansen komt. ", "Dag."]),
    ("initials", "By J. R. R. Tolkien. Read it.", ["By J. R. R. Tolkien. ", "Read it."]),
    ("middle initial", "John F. Kennedy spoke. Then.", ["John F. Kennedy spoke. ", "Then."]),
    ("dotted acronym", "The U.S. Army left. Ok.", ["The U.S. Army left. ", "Ok."]),
    ("units are not titles", "It takes 5 ms. That is fast.", ["It takes 5 ms. ", "That is fast."]),
    ("p.m. ends a sentence", "Come at 7 p.m. We eat.", ["Come at 7 p.m. ", "We eat."]),
    ("number abbreviation", "See No. 5 and Fig. 2 now. Ok.", ["See No. 5 and Fig. 2 now. ", "Ok."]),
    ("no as a word", "No. I disagree.", ["No. ", "I disagree."]),
    ("decimal", "Pi is 3.14 exactly. Yes.", ["Pi is 3.14 exactly. ", "Yes."]),
    ("decimal comma", "Es 1,5 litros. Sí.", ["Es 1,5 litros. ", "Sí."]),
    ("thousands", "It costs 1,000 dollars. Ok.", ["It costs 1,000 dollars. ", "Ok."]),
    ("time", "Meet at 10:30. Ok.", ["Meet at 10:30. ", "Ok."]),
    ("version", "Install v1.2.3 today. Done.", ["Install v1.2.3 today. ", "Done."]),
    ("url", "Visit https://x.io/a.b?c=1. Then.", ["Visit https://x.io/a.b?c=1. ", "Then."]),
    ("domain", "Visit example.com. Then.", ["Visit example.com. ", "Then."]),
    ("email", "Mail a.b@c.co.uk. Thanks.", ["Mail a.b@c.co.uk. ", "Thanks."]),
    ("lower case after period", "It is approx. five. Ok.", ["It is approx. five. ", "Ok."]),
    ("lower case after etc", "apples etc. and pears. Ok.", ["apples etc. and pears. ", "Ok."]),
    ("ellipsis before capital", "Well... I think so. Ok.", ["Well... ", "I think so. ", "Ok."]),
    ("ellipsis before lower", "I was... thinking. Ok.", ["I was... thinking. ", "Ok."]),
    ("unicode ellipsis", "Wait… Now go.", ["Wait… ", "Now go."]),
    ("ellipsis inside word", "wait...what. Ok.", ["wait...what. ", "Ok."]),
    (
        "question before lower",
        'He asked "why?" and left. Ok.',
        ['He asked "why?" and left. ', "Ok."],
    ),
    ("closing quote", 'He said "Stop." Then left.', ['He said "Stop." ', "Then left."]),
    ("inside quotes", 'He said "Stop. Now." Then left.', ['He said "Stop. Now." ', "Then left."]),
    ("inside brackets", "Yes (see above. It works). Ok.", ["Yes (see above. It works). ", "Ok."]),
    ("curly quotes", "She said “No. Never.” Then.", ["She said “No. Never.” ", "Then."]),
    (
        "single curly quotes",
        "A ‘quote. Here’ and don’t. Ok.",
        ["A ‘quote. Here’ and don’t. ", "Ok."],
    ),
    ("apostrophe end", "'Tis done. Ok.", ["'Tis done. ", "Ok."]),
    ("inches are not quotes", 'A 12" pipe. Ok.', ['A 12" pipe. ', "Ok."]),
    (
        "quotes reset at line break",
        'He said "oops\nNext line. Ok.',
        ['He said "oops\n', "Next line. ", "Ok."],
    ),
    ("line breaks", "Title\nFirst item\nSecond item", ["Title\n", "First item\n", "Second item"]),
    (
        "markdown list keeps its numbers",
        "Steps:\n1. Open it\n2. Close it",
        ["Steps:\n", "1. Open it\n", "2. Close it"],
    ),
    ("spanish marks", "¿Cómo estás? ¡Muy bien! Vale.", ["¿Cómo estás? ", "¡Muy bien! ", "Vale."]),
    ("french spacing", "Vraiment ? Oui ! Bien : non.", ["Vraiment ? ", "Oui ! ", "Bien : non."]),
    (
        "guillemets",
        "Il dit « Non. Jamais. » Puis « Oui. » Fin.",
        ["Il dit « Non. Jamais. » ", "Puis « Oui. » ", "Fin."],
    ),
    (
        "german quotes",
        "Er sagt „Nein. Nie.“ Dann geht er.",
        ["Er sagt „Nein. Nie.“ ", "Dann geht er."],
    ),
    (
        "german reversed guillemets",
        "Er sagt »Nein. Nie.« Dann.",
        ["Er sagt »Nein. Nie.« ", "Dann."],
    ),
    ("hindi danda", "नमस्ते। आप कैसे हैं? ठीक॥ अच्छा", ["नमस्ते। ", "आप कैसे हैं? ", "ठीक॥ ", "अच्छा"]),
    ("arabic", "مرحبا، كيف حالك؟ أنا بخير. شكرا", ["مرحبا، كيف حالك؟ ", "أنا بخير. ", "شكرا"]),
    ("urdu full stop", "یہ ٹھیک ہے۔ شکریہ", ["یہ ٹھیک ہے۔ ", "شکریہ"]),
    ("chinese", "你好。今天天气很好！你呢？好", ["你好。", "今天天气很好！", "你呢？", "好"]),
    ("japanese quote", "「こんにちは。」と言った。はい", ["「こんにちは。」と言った。", "はい"]),
    ("emoticon joins the sentence", "Hi! :) Next one.", ["Hi! :) ", "Next one."]),
    ("emoji at the end", "Great job! 🎉", ["Great job! 🎉"]),
    ("dash word joins", "Done. — Next.", ["Done. — ", "Next."]),
    ("opener stays with its words", "Oui. « Il part. » Fin.", ["Oui. ", "« Il part. » ", "Fin."]),
    ("bracket after stop", "Ok. (Really.) Yes.", ["Ok. ", "(Really.) ", "Yes."]),
]


# The language of the cases that are not English (SegmenterOptions.language).
CASE_LANGUAGES = {
    "spanish titles": "es", "portuguese": "pt", "german abbreviations": "de",
    "german ordinal date": "de", "french abbreviation": "fr", "italian": "it", "dutch": "nl",
    "spanish marks": "es", "french spacing": "fr", "guillemets": "fr", "german quotes": "de",
    "german reversed guillemets": "de", "hindi danda": "hi", "arabic": "ar",
    "opener stays with its words": "fr",
}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "text", "expected"), SENTENCE_CASES, ids=[c[0] for c in SENTENCE_CASES]
)
def test_sentence_boundaries(name: str, text: str, expected: list[str]) -> None:
    options = replace(SENTENCES, language=CASE_LANGUAGES.get(name, "en"))
    assert texts(segment(text, options)) == expected


@pytest.mark.parametrize(
    ("name", "text", "expected"), SENTENCE_CASES, ids=[c[0] for c in SENTENCE_CASES]
)
def test_sentence_boundaries_do_not_depend_on_tokens(
    name: str, text: str, expected: list[str]
) -> None:
    options = replace(SENTENCES, language=CASE_LANGUAGES.get(name, "en"))
    assert texts(segment(text, options, char_by_char(text))) == expected


# -- clause boundaries: where the first chunk may end --------------------------------------

CLAUSE_CASES = [
    ("comma", "Well, this is it", "Well, "),
    ("semicolon", "Yes; and then", "Yes; "),
    ("colon", "Note: this", "Note: "),
    ("spaced em dash", "I think — no", "I think — "),
    ("attached em dash", "this—and that", "this—"),
    ("spaced hyphen", "Wait - no", "Wait - "),
    ("spaced en dash", "Wait – no", "Wait – "),
    ("french colon", "Attention : ici", "Attention : "),
    ("arabic comma", "مرحبا، صديقي", "مرحبا، "),
    ("arabic semicolon", "نعم؛ لا", "نعم؛ "),
    ("cjk comma", "你好，世界", "你好，"),
    ("cjk enumeration comma", "りんご、みかん", "りんご、"),
    ("quote then comma", '"Hi," she said', '"Hi," '),
    ("thousands are not a clause", "It is 1,000 or 2, more", "It is 1,000 or 2, "),
    ("time is not a clause", "At 10:30 we go: now", "At 10:30 we go: "),
    ("decimal comma is not a clause", "Es 1,5 o 2, bien", "Es 1,5 o 2, "),
    ("hyphen in a word", "well-known, yes", "well-known, "),
    ("range dash", "2010–2020, then", "2010–2020, "),
    ("dash between digits", "1990—2000, then", "1990—2000, "),
    ("comma inside quotes", 'He said "a, b" and, then', 'He said "a, b" and, '),
    ("comma inside brackets", "Yes (a, b), then", "Yes (a, b), "),
    ("dotted abbreviation then comma", "Fruit e.g., apples", "Fruit e.g., "),
]


@pytest.mark.parametrize(
    ("text", "first"), [case[1:] for case in CLAUSE_CASES], ids=[c[0] for c in CLAUSE_CASES]
)
def test_first_chunk_ends_at_a_clause(text: str, first: str) -> None:
    chunks = segment(text, EARLIEST)
    assert chunks[0].text == first
    assert chunks[0].reason == "clause"
    assert texts(segment(text, EARLIEST, char_by_char(text))) == texts(chunks)


def test_first_chunk_waits_for_its_minimum_length() -> None:
    text = "Sure, I can help with that, let me check the weather for you."
    assert texts(segment(text, SegmenterOptions())) == [
        "Sure, I can help with that, ",  # "Sure, " alone is shorter than 24 characters
        "let me check the weather for you.",
    ]


def test_first_chunk_without_clause_boundaries_waits_for_a_sentence() -> None:
    options = SegmenterOptions(first_min_chars=5, first_clause_boundaries=False)
    chunks = segment("Well, this is it. And more, later.", options)
    assert [(c.text, c.reason) for c in chunks] == [
        ("Well, this is it. ", "sentence"),
        ("And more, later.", "flush"),
    ]


def test_later_chunks_combine_sentences_up_to_the_minimum() -> None:
    options = SegmenterOptions(first_min_chars=5, min_chars=40)
    text = "Hello there, friend. One two. Three four. Five six seven. Eight. Nine ten eleven."
    chunks = segment(text, options)
    assert [(c.text, c.reason) for c in chunks] == [
        ("Hello there, ", "clause"),
        ("friend. One two. Three four. Five six seven. ", "sentence"),
        ("Eight. Nine ten eleven.", "flush"),
    ]
    assert all(c.reason != "clause" for c in chunks[1:])


def test_later_chunks_end_at_sentences_not_clauses() -> None:
    options = SegmenterOptions(first_min_chars=1, min_chars=1)
    assert texts(segment("Yes, one, two, three. Four, five.", options)) == [
        "Yes, ",
        "one, two, three. ",
        "Four, five.",
    ]


# -- look-ahead: a boundary is only confirmed by the next word -----------------------------


def test_sentence_end_waits_for_the_next_word() -> None:
    segmenter = Segmenter(SENTENCES)
    assert segmenter.push("Hello world.", 0.0) == []
    assert segmenter.push(" ", 0.0) == []
    chunks = segmenter.push("T", 0.0)
    assert [(c.text, c.reason, c.index, c.start, c.end) for c in chunks] == [
        ("Hello world. ", "sentence", 0, 0, 13)
    ]


def test_abbreviation_at_the_buffer_end_is_not_a_boundary() -> None:
    segmenter = Segmenter(SENTENCES)
    assert segmenter.push("I saw Dr.", 0.0) == []
    assert segmenter.push(" S", 0.0) == []  # "Dr." + capital: still no boundary
    assert texts(segmenter.push("mith. The", 0.0)) == ["I saw Dr. Smith. "]
    assert texts(segmenter.flush()) == ["The"]


def test_punctuation_split_across_tokens() -> None:
    tokens = ["Wait", ".", ".", ". ", "Now", "?", "!", " ", "Yes"]
    assert texts(segment("", tokens=tokens)) == ["Wait... ", "Now?! ", "Yes"]


def test_word_split_across_tokens() -> None:
    tokens = ["He", "llo", " wor", "ld", ". Ne", "xt"]
    assert texts(segment("", tokens=tokens)) == ["Hello world. ", "Next"]


# -- the time bound ----------------------------------------------------------------------


def test_time_bound_releases_complete_words_only() -> None:
    segmenter = Segmenter(SegmenterOptions())
    assert segmenter.push("Let me check that for yo", 10.0) == []
    assert deadline(segmenter) == 10.5
    assert segmenter.poll(10.49) == []
    chunks = segmenter.poll(10.5)
    assert [(c.text, c.reason) for c in chunks] == [("Let me check that for ", "time")]
    assert deadline(segmenter) is None  # "yo" may still grow
    assert segmenter.push("u", 11.0) == []
    assert deadline(segmenter) is None


def test_time_bound_releases_a_word_once_a_space_follows() -> None:
    segmenter = Segmenter(SegmenterOptions())
    assert segmenter.push("Let me check that for you ", 0.0) == []
    chunks = segmenter.poll(0.6)
    assert [(c.text, c.reason) for c in chunks] == [("Let me check that for you", "time")]
    # The space after "you" was not known yet: it opens the next chunk.
    segmenter.push("now.", 0.7)
    assert texts(segmenter.flush()) == [" now."]


STALL_CASES = [
    ("Let me look that up for you.", "Let me look that up for you."),
    ("Sure thing!", "Sure thing!"),
    ("Un momento, por favor…", "Un momento, por favor…"),
    ("Let me check **your account**", "Let me check your account"),
    ('He said "wait"', 'He said "wait"'),
    ("एक क्षण।", "एक क्षण।"),
    ("Checking your orde", "Checking your "),
]


@pytest.mark.parametrize(("pushed", "released"), STALL_CASES)
def test_a_stall_before_a_tool_call_releases_the_whole_sentence(pushed: str, released: str) -> None:
    segmenter = Segmenter(SegmenterOptions())
    segmenter.push(pushed, 0.0)
    assert [(c.text, c.reason) for c in segmenter.poll(0.5)] == [(released, "time")]


def test_time_bound_counts_from_the_oldest_pending_character() -> None:
    segmenter = Segmenter(SegmenterOptions())
    segmenter.push("Hello ", 0.0)
    segmenter.push("there ", 0.3)
    segmenter.push("my ", 0.45)
    assert texts(segmenter.poll(0.5)) == ["Hello there my"]


def test_time_bound_for_later_chunks_is_longer() -> None:
    options = SegmenterOptions(first_min_chars=5, first_time_bound=0.5, time_bound=2.0)
    segmenter = Segmenter(options)
    assert texts(segmenter.push("Hi there, the next part is slow ", 0.0)) == ["Hi there, "]
    assert deadline(segmenter) == 2.0
    assert segmenter.poll(1.9) == []
    assert texts(segmenter.poll(2.0)) == ["the next part is slow"]


def test_time_bound_prefers_a_boundary_to_the_last_word() -> None:
    segmenter = Segmenter(SegmenterOptions(first_min_chars=5))
    assert texts(segmenter.push("Okay, so the weather is sunny today. Tomorrow it wi", 0.0)) == [
        "Okay, "
    ]
    chunks = segmenter.poll(2.0)
    assert [(c.text, c.reason) for c in chunks] == [("so the weather is sunny today. ", "time")]


def test_time_bound_restarts_after_each_release() -> None:
    segmenter = Segmenter(SegmenterOptions())
    segmenter.push("Let me check that for yo", 0.0)
    assert texts(segmenter.poll(0.5)) == ["Let me check that for "]
    # "you" arrived long ago, but must not go out alone the moment it is complete.
    assert segmenter.push("u and", 0.6) == []
    assert deadline(segmenter) == 2.5  # the later time bound, counted from the release
    assert texts(segmenter.poll(2.5)) == ["you "]


def test_flush_resets_to_the_first_time_bound() -> None:
    segmenter = Segmenter(SegmenterOptions(first_min_chars=5))
    segmenter.push("Hi there, friend", 0.0)
    segmenter.flush()
    segmenter.push("A new turn starts ", 5.0)
    assert deadline(segmenter) == 5.5


def test_time_bound_never_releases_nothing_speakable() -> None:
    segmenter = Segmenter(SegmenterOptions())
    segmenter.push("... — ", 0.0)
    assert segmenter.poll(9.0) == []
    assert deadline(segmenter) is None


def test_time_bound_does_not_cut_before_french_punctuation() -> None:
    segmenter = Segmenter(SegmenterOptions(first_min_chars=24))  # too short for a boundary
    segmenter.push("Tu viens vraiment ?", 0.0)  # "?" is held until the next character
    segmenter.push(" Oui", 0.1)
    assert texts(segmenter.poll(1.0)) == ["Tu viens vraiment ? "]


def test_disabled_time_bound() -> None:
    segmenter = Segmenter(SegmenterOptions(first_time_bound=math.inf))
    segmenter.push("Waiting for ever ", 0.0)
    assert deadline(segmenter) is None
    assert segmenter.poll(1e9) == []


def test_cjk_time_bound_cuts_between_characters() -> None:
    segmenter = Segmenter(SegmenterOptions())
    segmenter.push("今日はいい天気", 0.0)
    assert texts(segmenter.poll(1.0)) == ["今日はいい天気"]


def test_time_bound_fires_on_push_too() -> None:
    segmenter = Segmenter(SegmenterOptions())
    segmenter.push("Let me look ", 0.0)
    assert texts(segmenter.push("that up ", 0.7)) == ["Let me look that up"]


# -- the runway ------------------------------------------------------------------------


def later(text: str, options: SegmenterOptions | None = None) -> Segmenter:
    """A Segmenter past a turn's first chunk ("Sure thing okay. "), with ``text`` pending."""
    segmenter = Segmenter(options or SegmenterOptions())
    assert texts(segmenter.push("Sure thing okay. " + text, 0.0)) == ["Sure thing okay. "]
    return segmenter


def test_hurry_ends_a_later_chunk_at_its_latest_clause() -> None:
    segmenter = later("Your order, which left on Monday, is with the courie")
    assert segmenter.pending
    chunks = segmenter.hurry(0.1)
    assert [(c.text, c.reason) for c in chunks] == [
        ("Your order, which left on Monday, ", "runway")
    ]
    assert segmenter.hurry(0.2) == []  # "is with the courie": no boundary yet
    # Back to the later chunks' own rules: a sentence of min_chars, or the time bound.
    assert segmenter.push("r now, and", 0.3) == []
    assert texts(segmenter.hurry(0.4)) == ["is with the courier now, "]


def test_hurry_takes_a_sentence_end_as_well() -> None:
    segmenter = later("It shipped today. It should arri")
    assert texts(segmenter.hurry(0.1)) == ["It shipped today. "]


def test_hurry_takes_a_short_sentence_end() -> None:
    # The time bound cut the sentence; its rest is short, but ends it.
    segmenter = later("Let me look into ")
    assert texts(segmenter.poll(2.0)) == ["Let me look into"]
    segmenter.push("that. Your or", 2.1)
    assert texts(segmenter.hurry(2.2)) == [" that. "]


def test_hurry_needs_a_boundary_of_first_min_chars() -> None:
    segmenter = later("Yes, the parcel is on its way to you")
    assert segmenter.hurry(0.1) == []  # "Yes, " is too short to go alone; no cut mid-clause
    # The time bound still ends the wait, at the last word...
    assert texts(segmenter.poll(2.0)) == ["Yes, the parcel is on its way to "]
    segmenter = later("Yes, the parcel is on its way", SegmenterOptions(first_min_chars=4))
    assert texts(segmenter.hurry(0.1)) == ["Yes, "]  # ...and a shorter minimum lets it go


def test_hurry_to_a_word_when_a_pause_is_certain() -> None:
    segmenter = later("Your order which left our wareho")
    assert segmenter.hurry(0.1) == []
    chunks = segmenter.hurry(0.2, to_a_word=True)
    assert [(c.text, c.reason) for c in chunks] == [("Your order which left our ", "runway")]
    # Never a trickle of tiny chunks: "warehouse " alone is below first_min_chars.
    segmenter.push("use on", 0.3)
    assert segmenter.hurry(0.4, to_a_word=True) == []


def test_hurry_to_a_word_still_prefers_a_boundary() -> None:
    segmenter = later("Your order, which left our warehouse, is on the wa")
    assert texts(segmenter.hurry(0.1, to_a_word=True)) == ["Your order, which left our warehouse, "]


def test_hurry_ignores_boundaries_inside_quotes_and_brackets() -> None:
    segmenter = later('The note says "left at the door, by the porch" and a photo was ta')
    assert segmenter.hurry(0.1) == []
    segmenter = later("They wrote (quote, unquote: delivered) and then")
    assert segmenter.hurry(0.1) == []


def test_hurry_leaves_a_boundary_that_is_not_final_yet() -> None:
    segmenter = later("It shipped on Monday, and it arrives Thursday.")
    # "Thursday." may be an abbreviation until the next character says otherwise.
    assert texts(segmenter.hurry(0.1)) == ["It shipped on Monday, "]


def test_hurry_does_nothing_for_a_first_chunk() -> None:
    segmenter = Segmenter(SegmenterOptions(first_min_chars=40))
    segmenter.push("Well, let me think about that one", 0.0)
    assert not segmenter.pending
    assert segmenter.hurry(0.1) == []


def test_hurry_returns_what_the_time_bound_releases_too() -> None:
    segmenter = later("And so on and so fo")
    assert [(c.text, c.reason) for c in segmenter.hurry(2.0)] == [("And so on and so ", "time")]
    assert segmenter.pending  # "fo"


def test_hurry_then_flush_loses_nothing() -> None:
    segmenter = later("First, second, third, and the rest")
    released = segmenter.hurry(0.1) + segmenter.flush()
    assert texts(released) == ["First, second, third, ", "and the rest"]
    assert not segmenter.pending


# -- the cap ---------------------------------------------------------------------------

CAP = SegmenterOptions(first_min_chars=10, min_chars=20, max_chars=30)


def test_cap_splits_at_whitespace_without_punctuation() -> None:
    text = "one two three four five six seven eight nine ten eleven twelve"
    chunks = segment(text, CAP)
    assert all(len(c.text) <= 30 for c in chunks)
    assert [c.reason for c in chunks] == ["length", "length", "flush"]
    assert texts(chunks) == [
        "one two three four five six ",
        "seven eight nine ten eleven ",
        "twelve",
    ]


def test_cap_prefers_a_clause_to_whitespace() -> None:
    chunks = segment("alpha beta, gamma delta epsilon zeta eta theta", CAP)
    assert texts(chunks)[0] == "alpha beta, "


def test_cap_prefers_a_sentence_to_a_clause() -> None:
    options = SegmenterOptions(first_min_chars=25, min_chars=25, max_chars=30)
    chunks = segment("Yes. I mean, well, it was the one we liked", options)
    assert (chunks[0].text, chunks[0].reason) == ("Yes. ", "length")


def test_cap_splits_inside_quotes_when_forced() -> None:
    options = SegmenterOptions(first_min_chars=5, min_chars=20, max_chars=30)
    chunks = segment('He said "we go, then we stop, and then we rest" ok', options)
    assert texts(chunks)[0] == 'He said "we go, then we stop, '
    assert chunks[0].reason == "length"


def test_cap_cuts_a_word_longer_than_the_cap() -> None:
    word = "x" * 70
    chunks = segment(f"Look {word} here", CAP)
    assert texts(chunks) == ["Look ", "x" * 30, "x" * 30, "x" * 10 + " here"]


def test_cap_never_splits_a_letter_from_its_marks() -> None:
    word = "नमस्ते" * 10  # combining vowel signs and viramas
    chunks = segment(word, SegmenterOptions(first_min_chars=5, min_chars=5, max_chars=8))
    assert "".join(texts(chunks)) == word
    assert all(len(c.text) <= 8 for c in chunks)
    assert all(c.text[0] not in "\u094d\u0947\u093e" for c in chunks)


def test_default_cap_is_far_below_the_upstream_limit() -> None:
    text = ("word " * 3000).strip()
    chunks = segment(text, SegmenterOptions())
    assert max(len(c.text) for c in chunks) <= 500
    assert "".join(texts(chunks)) == text


# -- flush -------------------------------------------------------------------------------


def test_flush_releases_the_rest_and_starts_a_new_turn() -> None:
    segmenter = Segmenter(SegmenterOptions(first_min_chars=5))
    first = segmenter.push("Hello there, how are you", 0.0)
    rest = segmenter.flush()
    assert [(c.text, c.reason) for c in first + rest] == [
        ("Hello there, ", "clause"),
        ("how are you", "flush"),
    ]
    second = segmenter.push("Fine thanks, and you", 1.0) + segmenter.flush()
    assert [(c.text, c.reason, c.index, c.start) for c in second] == [
        ("Fine thanks, ", "clause", 2, 24),  # first-chunk mode again; offsets go on
        ("and you", "flush", 3, 37),
    ]


def test_flush_with_nothing_buffered() -> None:
    segmenter = Segmenter()
    assert segmenter.flush() == []
    assert segmenter.push("   \n ", 0.0) == []
    assert segmenter.flush() == []


def test_flush_drops_trailing_whitespace_and_open_markup() -> None:
    assert texts(segment("Done. \n\n```\nleft open")) == ["Done."]


def test_flush_releases_short_sentences_as_one_chunk() -> None:
    segmenter = Segmenter(SegmenterOptions(first_min_chars=5))
    assert texts(segmenter.push("Hello there, friend. Yes. No. Maybe.", 0.0)) == ["Hello there, "]
    assert [(c.text, c.reason) for c in segmenter.flush()] == [
        ("friend. Yes. No. Maybe.", "flush")  # below min_chars: no cut inside
    ]


def test_whole_turn_in_one_push() -> None:
    text = "First, a clause. Then a long sentence follows here. And the end."
    chunks = segment(text, SegmenterOptions(first_min_chars=5, min_chars=20))
    assert [(c.text, c.reason) for c in chunks] == [
        ("First, ", "clause"),
        ("a clause. Then a long sentence follows here. ", "sentence"),
        ("And the end.", "flush"),
    ]


# -- nothing speakable on its own ------------------------------------------------------


def test_punctuation_only_turn_is_one_chunk() -> None:
    assert texts(segment("... !!! ???")) == ["... !!! ???"]


def test_markdown_only_turn_is_nothing() -> None:
    assert segment("**\n---\n```\nx\n```") == []


def test_unspeakable_rest_joins_the_last_chunk_of_the_flush() -> None:
    chunks = segment("Thanks for waiting. ...", SENTENCES)
    assert texts(chunks) == ["Thanks for waiting. ..."]


def test_leading_punctuation_joins_the_first_chunk() -> None:
    assert texts(segment("— Hola. ¿Qué tal?")) == ["— Hola. ", "¿Qué tal?"]


# -- options -----------------------------------------------------------------------------


def test_default_options() -> None:
    options = SegmenterOptions()
    assert (options.first_min_chars, options.first_clause_boundaries) == (16, True)
    assert (options.first_time_bound, options.time_bound) == (0.5, 2.0)
    assert (options.min_chars, options.max_chars) == (100, 500)
    assert UPSTREAM_MAX_CHARS == 5000


BAD_OPTIONS = [
    ({"max_chars": 0}, "max_chars"),
    ({"max_chars": 5001}, "max_chars"),
    ({"max_chars": 100.0}, "max_chars"),
    ({"max_chars": True}, "max_chars"),
    ({"max_chars": "500"}, "max_chars"),
    ({"first_min_chars": 0}, "first_min_chars"),
    ({"first_min_chars": 600}, "first_min_chars"),
    ({"min_chars": -1}, "min_chars"),
    ({"min_chars": 501}, "min_chars"),
    ({"min_chars": 50, "max_chars": 40}, "min_chars"),
    ({"first_clause_boundaries": 1}, "first_clause_boundaries"),
    ({"first_clause_boundaries": "yes"}, "first_clause_boundaries"),
    ({"first_time_bound": 0}, "first_time_bound"),
    ({"first_time_bound": -0.5}, "first_time_bound"),
    ({"first_time_bound": math.nan}, "first_time_bound"),
    ({"first_time_bound": "0.5"}, "first_time_bound"),
    ({"time_bound": 0.0}, "time_bound"),
    ({"time_bound": None}, "time_bound"),
    ({"time_bound": False}, "time_bound"),
    ({"runway_ms": -1}, "runway_ms"),
    ({"runway_ms": 10_001}, "runway_ms"),
    ({"runway_ms": math.nan}, "runway_ms"),
    ({"runway_ms": True}, "runway_ms"),
    ({"runway_ms": "300"}, "runway_ms"),
]


@pytest.mark.parametrize(("kwargs", "field"), BAD_OPTIONS)
def test_bad_options_are_rejected(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput, match=rf"SegmenterOptions\.{field} must be") as caught:
        SegmenterOptions(**kwargs)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_input"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_chars": 5000, "min_chars": 5000, "first_min_chars": 5000},
        {"max_chars": 1, "min_chars": 1, "first_min_chars": 1},
        {"first_time_bound": math.inf, "time_bound": 1},
        {"runway_ms": 0},
        {"runway_ms": 10_000},
    ],
)
def test_edge_options_are_accepted(kwargs: dict[str, object]) -> None:
    SegmenterOptions(**kwargs)  # type: ignore[arg-type]


def test_bad_push_arguments() -> None:
    segmenter = Segmenter()
    with pytest.raises(InvalidInput, match="text must be a string"):
        segmenter.push(b"bytes", 0.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="now must be"):
        segmenter.push("ok", math.nan)


# -- properties --------------------------------------------------------------------------

PIECES = [
    "Hello", "world", "Dr.", "e.g.", "etc.", "J. R. ", "3.14", "1,000", "10:30", "v1.2.3",
    "https://x.io/a_b.c?d=1", "a.b@c.de", "...", "…", ". ", "! ", "? ", ", ", "; ", ": ",
    " — ", "—", " - ", "«", "»", "“", "”", "„", '"', "'", "(", ")", "[", "]", "¿", "¡",
    "**", "*", "_", "__", "~~", "`", "```", "```py\n", "\n```\n", "~~~\n", "# ", "\n## ",
    "\n- ", "\n* ", "\n1. ", "\n> ", "\n---\n", "| a | b |\n|---|---|\n| 1 | 2 |\n",
    "[link](http://u.v/(w))", "![alt](i.png)", "\\*", "\n\n", "  ", "\t", "\r\n", "ça",
    "Straße", "नमस्ते", "। ", "॥", "مرحبا", "، ", "؟ ", "۔", "你好", "。", "，", "！", "🎉",
    ":)", "x" * 40, "Mai", "3. ", "I ", "a ", "The ", "\u00a0", "\u202f", "1.) ", " 2) ",
    "[1]", "[2–11] ", "[...]", ". . . ", "Dr. med. ", "z. Z. ", " • 9. ", "⁃10. ", "Yahoo! ",
]  # fmt: skip
ALPHABET = "aZé 5.,;:!?¿¡…-—–'\"«»“”„()[]*_`~#>|\n\t\\।؟،。，!🎉•⁃"
raw_texts = st.lists(
    st.one_of(st.sampled_from(PIECES), st.text(alphabet=ALPHABET, max_size=6)), max_size=30
).map("".join)


@st.composite
def splits(draw: st.DrawFn, text: str) -> list[str]:
    """``text`` cut at arbitrary points, possibly with empty tokens."""
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def options(draw: st.DrawFn) -> SegmenterOptions:
    max_chars = draw(st.integers(8, 160))
    return SegmenterOptions(
        first_min_chars=draw(st.integers(1, max_chars)),
        first_clause_boundaries=draw(st.booleans()),
        first_time_bound=draw(st.sampled_from([0.1, 0.5, math.inf])),
        min_chars=draw(st.integers(1, max_chars)),
        max_chars=max_chars,
        time_bound=draw(st.sampled_from([0.3, 2.0, math.inf])),
    )


def joined_turns(turns: list[str]) -> str:
    """The turns' normalised texts, each flushed, joined as the raw stream had them: with one
    space where there was whitespace at the flush, with none where there was none."""
    joined, owed, raw_space = "", False, False
    for turn in turns:
        text = normalise(turn)
        owed = owed or raw_space or turn[:1].isspace()
        if text:
            joined += (" " if joined and owed else "") + text
            owed = False
        raw_space = turn[-1:].isspace() if turn else raw_space
    return joined


def check_chunks(chunks: list[Chunk], turns: list[str], opts: SegmenterOptions) -> None:
    """Chunks are non-empty, capped, numbered, contiguous, and add up to the turns."""
    stream_text = joined_turns(turns)
    assert "".join(texts(chunks)) == stream_text
    offset = 0
    for index, chunk in enumerate(chunks):
        assert (chunk.index, chunk.start) == (index, offset)
        assert chunk.text == stream_text[chunk.start : chunk.end]
        assert 0 < len(chunk.text) <= opts.max_chars
        offset = chunk.end


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), opts=options(), turns=st.lists(raw_texts, min_size=1, max_size=3))
def test_nothing_is_lost_or_duplicated(
    data: st.DataObject, opts: SegmenterOptions, turns: list[str]
) -> None:
    segmenter = Segmenter(opts)
    chunks: list[Chunk] = []
    now = 0.0
    for turn in turns:
        for token in data.draw(splits(turn)):
            now += data.draw(st.sampled_from([0.0, 0.01, 0.2, 0.6, 3.0]))
            chunks += segmenter.push(token, now)
            if data.draw(st.booleans()):
                now += data.draw(st.sampled_from([0.05, 0.5, 2.5]))
                chunks += segmenter.poll(now)
            if data.draw(st.booleans()):  # the listener's audio is about to run out
                chunks += segmenter.hurry(now, to_a_word=data.draw(st.booleans()))
        chunks += segmenter.flush()
    check_chunks(chunks, turns, opts)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), opts=options(), text=raw_texts)
def test_cuts_do_not_depend_on_tokens_without_the_time_bound(
    data: st.DataObject, opts: SegmenterOptions, text: str
) -> None:
    whole = segment(text, opts)
    tokens = data.draw(splits(text))
    assert segment(text, opts, tokens) == whole
    assert segment(text, opts, char_by_char(text)) == whole


@pytest.mark.parametrize(
    "text",
    [
        "Hello\n\n............[...]::::::::::::::::Hello",  # speech after marks, past the cap
        "Hello\n\n............[...]::::::::::::::::",  # none: the turn ends in marks
    ],
)
def test_a_boundary_followed_by_marks_is_cut_the_same_whatever_the_tokens(text: str) -> None:
    """Found by the property test above: the cut after "Hello" waited to see whether speech
    followed the marks; once the cap allowed no more waiting it fell elsewhere, or for
    another reason, than when the whole text came at once."""
    opts = SegmenterOptions(first_min_chars=1, min_chars=1, max_chars=8)
    whole = segment(text, opts)
    assert whole[0] == Chunk("Hello\n", 0, 0, 6, "sentence")
    for cut in range(1, len(text)):
        assert segment(text, opts, [text[:cut], text[cut:]]) == whole, cut
    assert segment(text, opts, char_by_char(text)) == whole


@settings(max_examples=300, deadline=None)
@given(data=st.data(), text=raw_texts)
def test_normaliser_does_not_depend_on_tokens(data: st.DataObject, text: str) -> None:
    tokens = data.draw(splits(text))
    expected = normalise(text)
    assert stream(TextNormaliser(), tokens) == expected
    assert not expected.startswith((" ", "\n"))
    assert not expected.endswith((" ", "\n"))
    for run in ("  ", "\n ", " \n", "\n\n"):
        assert run not in expected


@settings(max_examples=300, deadline=None)
@given(text=raw_texts)
def test_boundary_chunks_always_have_something_to_say(text: str) -> None:
    for chunk in segment(text, SegmenterOptions(first_min_chars=1, min_chars=1)):
        if chunk.reason in ("clause", "sentence"):
            assert any(c.isalnum() for c in chunk.text)
            assert not chunk.text[0].isspace()


@settings(max_examples=200, deadline=None)
@given(text=raw_texts)
# A boundary followed by nothing but marks: cut there, the marks would be a chunk alone.
@example(text="Hello| a | b |\n|---|---|\n| 1 | 2 |\n...........................::::::")
def test_only_an_unspeakable_turn_makes_an_unspeakable_chunk(text: str) -> None:
    chunks = segment(text, SegmenterOptions())  # inputs are far below the default cap
    if any(c.isalnum() for c in normalise(text)):
        assert all(any(c.isalnum() for c in chunk.text) for chunk in chunks)
    else:
        assert len(chunks) <= 1


# Prose with no Markdown syntax in it: list numbers, brackets, ellipses, quotes, line breaks.
PROSE_PIECES = [
    "Hello", "world", "Dr.", "Lic.", "z. Z.", "e.g.", "3.14", "1,000", "[...]", "[1]", "(a)",
    "...", ". . .", "…", ". ", "! ", "? ", ", ", "; ", ": ", " — ", "«", "»", "“", "”", '"',
    "'", "\n1. ", "\n2) ", "1.) ", "\n• ", "⁃9. ", "Yahoo! ", "Mai", "3. ", "I ", "The ",
    "ça", "नमस्ते", "। ", "مرحبا", "، ", "你好", "。", "  ", "\n",
]  # fmt: skip
prose = st.lists(st.sampled_from(PROSE_PIECES), max_size=30).map(" ".join)


def spoken(text: str) -> str:
    """The text as said: whitespace collapsed, and the only Markdown in prose (a bullet at a
    line start, docs/segmentation.md) left out."""
    lines = [line.strip() for line in text.split("\n")]
    lines = [line[1:].strip() if line.startswith("•") else line for line in lines]
    joined = "\n".join(" ".join(line.split()) for line in lines if line.strip())
    return joined.strip()


@settings(max_examples=300, deadline=None)
@given(data=st.data(), text=prose, opts=options())
def test_chunks_are_the_text_less_documented_markdown(
    data: st.DataObject, text: str, opts: SegmenterOptions
) -> None:
    chunks = segment(text, opts, data.draw(splits(text)))
    assert "".join(texts(chunks)) == spoken(text)


# -- cost ------------------------------------------------------------------------------


def test_fifty_thousand_characters_token_by_token() -> None:
    paragraph = (
        "## Result\nDr. Smith measured 3.14 units at 10:30, i.e. on time. "
        "See [the report](https://example.com/r_1) for **details**; it's `v1.2.3`. "
        "¿Qué tal? Très bien ! नमस्ते। مرحبا، كيف حالك؟ 你好，世界。\n"
        "- first item\n- second item\n```\ncode()\n```\n"
    )
    text = (paragraph * (50_000 // len(paragraph) + 1))[:50_000]
    rng = random.Random(7)
    segmenter = Segmenter(SegmenterOptions())
    chunks: list[Chunk] = []
    pos, now = 0, 0.0
    while pos < len(text):
        size = rng.randint(1, 6)
        chunks += segmenter.push(text[pos : pos + size], now)
        pos, now = pos + size, now + 0.02
    chunks += segmenter.flush()
    check_chunks(chunks, [text], SegmenterOptions())
    assert len(chunks) > 100
    assert {c.reason for c in chunks} <= {"clause", "sentence", "time", "flush"}


@pytest.mark.parametrize(
    "tokens", [["Hello, 1.) Hello"], ["Hello, 1", ".) Hello"], ["HelloHelloHello 2", ") Hi"]]
)
def test_a_boundary_that_a_list_item_upgrades_is_decided_once_the_item_is_read(
    tokens: list[str],
) -> None:
    options = SegmenterOptions(
        first_min_chars=1, first_clause_boundaries=False, min_chars=1, max_chars=8
    )
    whole = segment("".join(tokens), options)
    assert segment("".join(tokens), options, tokens) == whole


@pytest.mark.parametrize(
    ("parts", "joined"),
    [
        (["Good morning. ", None, " It is sunny."], "Good morning. It is sunny."),
        (["Good morning.", None, " It is sunny."], "Good morning. It is sunny."),
        (
            ["And more words follow", None, " after the flush."],
            "And more words follow after the flush.",
        ),
        (["Hello", None, "world."], "Helloworld."),  # the raw stream had no space there
        (["你好。", None, "今天很好。"], "你好。今天很好。"),
        (["One ", None, None, "two."], "One two."),
        (["One", None, " ", None, "two."], "One two."),
        # A number is held back until the normaliser knows where it ends: here, the flush.
        (["Total. ", None, "5"], "Total. 5"),
        ([". ", None, "5", None, " 6"], ". 5 6"),
    ],
)
def test_text_after_a_flush_is_joined_as_it_was_written(
    parts: list[str | None], joined: str
) -> None:
    segmenter = Segmenter()
    chunks: list[Chunk] = []
    for now, part in enumerate(parts):
        chunks += segmenter.flush() if part is None else segmenter.push(part, now * 0.01)
    chunks += segmenter.flush()
    assert "".join(c.text for c in chunks) == joined
    assert all(c.text.strip() for c in chunks)
