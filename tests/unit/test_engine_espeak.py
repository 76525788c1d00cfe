"""Real espeak-ng speech: every language, word timings, speed, voices, concurrency."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest

from voxgate.upstream.engine.audio import estimate_pitch_hz
from voxgate.upstream.engine.espeak import Espeak, Synthesis, Synthesizer
from voxgate.upstream.engine.voices import (
    LANGUAGES,
    PRESETS,
    PresetVoice,
    Prosody,
    find_voice,
    prosody_for_clone,
)

SENTENCES = {
    "en": "The weather is lovely today, so we are going for a walk in the park.",
    "fr": "Il fait très beau aujourd'hui, alors nous allons nous promener au parc.",
    "es": "Hace muy buen tiempo hoy, así que vamos a dar un paseo por el parque.",
    "pt": "O tempo está ótimo hoje, por isso vamos dar um passeio no parque.",
    "it": "Oggi il tempo è bellissimo, quindi andiamo a fare una passeggiata nel parco.",
    "nl": "Het is vandaag prachtig weer, dus we gaan een wandeling maken in het park.",
    "de": "Das Wetter ist heute herrlich, also gehen wir im Park spazieren.",
    "hi": "आज मौसम बहुत अच्छा है, इसलिए हम पार्क में टहलने जा रहे हैं।",
    "ar": "الطقس جميل جدا اليوم، لذلك سنذهب في نزهة في الحديقة.",
}
JANE = "82c99ee6-f932-423f-a4a3-d403c8914b8d"


def neutral(name: str) -> Prosody:
    return next(p for p in PRESETS if p.name == name).variants[0].prosody


def emotion(name: str, wanted: str) -> Prosody:
    preset = next(p for p in PRESETS if p.name == name)
    return next(v.prosody for v in preset.variants if v.emotion == wanted)


def rms(result: Synthesis) -> float:
    return float(np.sqrt(np.mean(result.pcm.astype(np.float64) ** 2)))


def spoken(text: str, result: Synthesis) -> list[str]:
    return [text[w.char_start : w.char_end] for w in result.words]


@pytest.fixture
async def synthesizer() -> AsyncIterator[Synthesizer]:
    synth = Synthesizer()
    yield synth
    await synth.close()


@pytest.fixture(scope="module")
def espeak() -> Iterator[Espeak]:
    engine = Espeak()
    yield engine
    engine.close()


@pytest.mark.parametrize("language", LANGUAGES)
async def test_every_language_is_real_speech(synthesizer: Synthesizer, language: str) -> None:
    voice = next(p for p in PRESETS if p.language == language).variants[0].prosody
    result = await synthesizer.synthesize(SENTENCES[language], voice, 1.0)
    assert result.sample_rate == 24000
    assert 2.0 < result.seconds < 9.0  # about 12 words
    assert rms(result) > 1000
    assert estimate_pitch_hz(result.pcm, 24000) is not None  # voiced, not noise
    assert len(result.words) >= 8


def test_espeak_speaks_at_its_native_rate(espeak: Espeak) -> None:
    result = espeak.synthesize("Hello world.", neutral("Jane"), 175)
    assert result.sample_rate == 22050
    assert result.pcm.dtype == np.int16
    assert not result.pcm.flags.writeable
    with pytest.raises(ValueError, match="wpm"):
        espeak.synthesize("Hello world.", neutral("Jane"), 500)


@pytest.mark.parametrize(
    ("text", "language", "words"),
    [
        (
            "Ça va très bien, merci à vous.",
            "fr",
            ["Ça", "va", "très", "bien", "merci", "à", "vous"],
        ),
        ("नमस्ते, आप कैसे हैं?", "hi", ["नमस्ते", "आप", "कैसे", "हैं"]),
        ("🙂 Très bien, Zoë.", "fr", ["🙂", "Très", "bien", "Zoë"]),
    ],
)
def test_word_timings_index_the_python_string(
    espeak: Espeak, text: str, language: str, words: list[str]
) -> None:
    voice = next(p for p in PRESETS if p.language == language).variants[0].prosody
    assert spoken(text, espeak.synthesize(text, voice, 175)) == words


async def test_word_timings_are_ordered_and_inside_the_audio(synthesizer: Synthesizer) -> None:
    text = "In 1990, prices rose by $5.20 a week; 🙂 nobody\x00 minded, said Zoë."
    for speed in (0.5, 1.0, 3.0):
        result = await synthesizer.synthesize(text, neutral("Paul"), speed, sample_rate=48000)
        starts = [w.char_start for w in result.words]
        samples = [w.sample_start for w in result.words]
        assert starts == sorted(set(starts))
        assert all(a.char_end <= b.char_start for a, b in itertools.pairwise(result.words))
        assert samples == sorted(samples)
        assert samples[-1] < result.pcm.size
        assert spoken(text, result)[-2:] == ["said", "Zoë"]


async def test_word_offsets_follow_stretch_and_resampling(synthesizer: Synthesizer) -> None:
    # Both speeds are beyond espeak's 450 wpm: the same speech, stretched and resampled apart.
    text = SENTENCES["en"]
    base = await synthesizer.synthesize(text, neutral("Jane"), 3.0, sample_rate=24000)
    fast = await synthesizer.synthesize(text, neutral("Jane"), 4.0, sample_rate=48000)
    assert fast.seconds == pytest.approx(base.seconds * 3 / 4, rel=0.03)
    assert len(base.words) == len(fast.words)
    for slow_word, fast_word in zip(base.words, fast.words, strict=True):
        slow_at = slow_word.sample_start / base.pcm.size
        assert fast_word.sample_start / fast.pcm.size == pytest.approx(slow_at, abs=0.01)


@pytest.mark.parametrize(
    ("speed", "low", "high"), [(0.25, 3.0, 5.0), (2.0, 0.4, 0.6), (4.0, 0.2, 0.33)]
)
async def test_speed_divides_the_duration(
    synthesizer: Synthesizer, speed: float, low: float, high: float
) -> None:
    normal = await synthesizer.synthesize(SENTENCES["en"], neutral("Jane"), 1.0)
    changed = await synthesizer.synthesize(SENTENCES["en"], neutral("Jane"), speed)
    assert low < changed.seconds / normal.seconds < high
    # Tempo, not pitch: atempo keeps the voice where it was.
    normal_hz = estimate_pitch_hz(normal.pcm, 24000)
    assert estimate_pitch_hz(changed.pcm, 24000) == pytest.approx(normal_hz, rel=0.2)


async def test_two_presets_sound_different(synthesizer: Synthesizer) -> None:
    jane = await synthesizer.synthesize(SENTENCES["en"], neutral("Jane"), 1.0)
    paul = await synthesizer.synthesize(SENTENCES["en"], neutral("Paul"), 1.0)
    jane_hz, paul_hz = estimate_pitch_hz(jane.pcm, 24000), estimate_pitch_hz(paul.pcm, 24000)
    assert jane_hz is not None
    assert paul_hz is not None
    assert jane_hz > 1.5 * paul_hz


async def test_presets_of_one_language_differ_in_pitch(synthesizer: Synthesizer) -> None:
    for language in LANGUAGES:
        group: list[PresetVoice] = [p for p in PRESETS if p.language == language]
        pitches = []
        for preset in group:
            result = await synthesizer.synthesize(
                SENTENCES[language], preset.variants[0].prosody, 1.0
            )
            pitches.append(estimate_pitch_hz(result.pcm, 24000) or 0.0)
        pitches.sort()
        assert all(b > 1.08 * a for a, b in itertools.pairwise(pitches)), (language, pitches)


async def test_emotions_sound_different(synthesizer: Synthesizer) -> None:
    happy = await synthesizer.synthesize(SENTENCES["en"], emotion("Jane", "happy"), 1.0)
    sad = await synthesizer.synthesize(SENTENCES["en"], emotion("Jane", "sad"), 1.0)
    happy_hz, sad_hz = estimate_pitch_hz(happy.pcm, 24000), estimate_pitch_hz(sad.pcm, 24000)
    assert happy_hz is not None
    assert sad_hz is not None
    assert happy_hz > 1.15 * sad_hz
    assert sad.seconds > 1.15 * happy.seconds


async def test_no_preset_emotion_clips(synthesizer: Synthesizer) -> None:
    for preset in PRESETS:
        for variant in preset.variants:
            result = await synthesizer.synthesize(SENTENCES[preset.language], variant.prosody, 1.0)
            peak = int(np.max(np.abs(result.pcm.astype(np.int32))))
            assert 3000 < peak < 32700, (preset.name, variant.emotion, peak)


@pytest.mark.parametrize(
    ("gender", "hz"), [(None, 110.0), (None, 135.0), (None, 200.0), ("female", 245.0)]
)
async def test_clone_prosody_reaches_the_reference_pitch(
    synthesizer: Synthesizer, gender: str | None, hz: float
) -> None:
    result = await synthesizer.synthesize(SENTENCES["en"], prosody_for_clone("en", gender, hz), 1.0)
    assert estimate_pitch_hz(result.pcm, 24000) == pytest.approx(hz, rel=0.12)


async def test_concurrent_calls_are_serialised_and_do_not_mix(synthesizer: Synthesizer) -> None:
    jobs = [
        (SENTENCES[lang], next(p for p in PRESETS if p.language == lang)) for lang in LANGUAGES[:8]
    ]
    together = await asyncio.gather(
        *(synthesizer.synthesize(text, p.variants[0].prosody, 1.0) for text, p in jobs)
    )
    for (text, preset), result in zip(jobs, together, strict=True):
        alone = await synthesizer.synthesize(text, preset.variants[0].prosody, 1.0)
        # espeak's pitch flutter carries over between calls, so samples differ by a few ms.
        assert result.seconds == pytest.approx(alone.seconds, abs=0.03)
        assert spoken(text, result) == spoken(text, alone)


async def test_synthesis_is_much_faster_than_real_time(synthesizer: Synthesizer) -> None:
    voice = find_voice(JANE)
    assert voice is not None
    await synthesizer.synthesize("Warm up.", voice[1].prosody, 1.0)
    started = time.perf_counter()
    result = await synthesizer.synthesize(SENTENCES["en"], voice[1].prosody, 1.3)
    assert time.perf_counter() - started < 0.2 * result.seconds


async def test_cancelling_frees_the_engine(synthesizer: Synthesizer) -> None:
    long_text = SENTENCES["en"] * 60
    task = asyncio.create_task(synthesizer.synthesize(long_text, neutral("Jane"), 0.25))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    started = time.perf_counter()
    await synthesizer.synthesize("Still here.", neutral("Jane"), 1.0)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("text", ["", "  \n "])
async def test_blank_text_is_no_audio(synthesizer: Synthesizer, text: str) -> None:
    result = await synthesizer.synthesize(text, neutral("Jane"), 2.0)
    assert result.pcm.size == 0
    assert result.words == ()
