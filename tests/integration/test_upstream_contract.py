"""The Voxtral API contract, through our client, over real HTTP.

Runs against the embedded engine on loopback; with VOXTRAL_API_KEY set, against the real
API unchanged (tests marked engine_only are then skipped). Audio is checked by decoders.
"""

from __future__ import annotations

import asyncio
import base64
import statistics
import time

import httpx
import pytest

from tests.audio_checks import assert_speech, decode, ffprobe
from tests.conftest import REAL_API_KEY, Target
from voxgate.codecs.ogg_demux import OggOpusDemuxer
from voxgate.codecs.opus_toc import packet_samples
from voxgate.errors import UpstreamError
from voxgate.upstream import SpeechRequest, Upstream, VoiceUpdate

JANE = "82c99ee6-f932-423f-a4a3-d403c8914b8d"
SENTENCES = (
    "The quick brown fox jumps over the lazy dog. "
    "Voice agents answer in well under a second. "
    "Every sentence is sent as soon as it is ready. "
    "Nobody likes to wait for the whole paragraph. "
    "That is why streaming matters so much."
)
FFPROBE_CODEC = {"mp3": "mp3", "wav": "pcm_s16le", "flac": "flac", "opus": "opus"}


@pytest.fixture(scope="module")
def reference_wav(target: Target) -> bytes:
    """Eight seconds or so of real speech, made by the upstream itself, to clone from."""

    async def make() -> bytes:
        async with Upstream(target.config()) as client:
            text = "This is my reference recording. " * 4 + "I speak slowly and clearly."
            result = await client.generate(
                SpeechRequest(text, voice_id=JANE, response_format="wav", speed=0.8)
            )
            return result.audio

    return asyncio.run(make())


@pytest.mark.parametrize("fmt", ["mp3", "wav", "flac", "opus", "pcm"])
async def test_generate_every_format(upstream: Upstream, target: Target, fmt: str) -> None:
    text = "Hello world! This is a format test."
    result = await upstream.generate(SpeechRequest(text, voice_id=JANE, response_format=fmt))
    assert result.format == fmt
    assert result.chunks == 1
    assert result.credits_used == len(text)
    assert result.generation_id
    decoded = decode(result.audio, fmt=fmt)
    assert_speech(decoded)
    if fmt != "pcm":
        probe = ffprobe(result.audio, "ogg" if fmt == "opus" else fmt)
        assert probe["codec"] == FFPROBE_CODEC[fmt]
        assert probe["channels"] == 1
        assert float(probe["duration"]) == pytest.approx(decoded.duration, abs=0.15)
        if target.engine is not None:
            assert probe["sample_rate"] == (48000 if fmt == "opus" else 24000)


async def test_generate_default_format_is_mp3(upstream: Upstream) -> None:
    result = await upstream.generate(SpeechRequest("Default format.", voice_id=JANE))
    assert result.format == "mp3"
    assert decode(result.audio).codec.startswith("mp3")


async def test_audio_url_serves_the_same_audio(upstream: Upstream) -> None:
    result = await upstream.generate(SpeechRequest("Fetch me again.", voice_id=JANE))
    assert result.audio_url
    async with httpx.AsyncClient(trust_env=False) as http:
        fetched = await http.get(result.audio_url)
    assert fetched.status_code == 200
    assert fetched.content == result.audio


async def test_long_text_is_chunked_at_sentences(upstream: Upstream) -> None:
    text = ("This sentence is about fifty characters long, ok. " * 44).strip()
    assert 2000 < len(text) <= 5000
    result = await upstream.generate(
        SpeechRequest(text, voice_id=JANE, response_format="wav", speed=4.0)
    )
    assert result.chunks == 3
    assert result.credits_used == len(text)
    assert_speech(decode(result.audio), min_seconds=5)


async def test_stream_yields_pcm_incrementally(upstream: Upstream, target: Target) -> None:
    chunks = [c async for c in upstream.stream(SpeechRequest(SENTENCES, voice_id=JANE))]
    assert len(chunks) >= 5
    assert all(c.channels == 1 and len(c.data) % 2 == 0 for c in chunks)
    if target.engine is not None:
        assert {c.sample_rate for c in chunks} == {24000}
    pcm = b"".join(c.data for c in chunks)
    decoded = decode(pcm, fmt="pcm")
    assert_speech(decoded, min_seconds=5)


async def test_stream_first_audio_comes_before_the_text_is_synthesised(
    upstream: Upstream,
) -> None:
    # The first delta is consumed, then the client waits; the rest keeps arriving.
    # A server that synthesised everything first would make both times nearly equal;
    # this is a smoke check, the ratio itself is printed by bench/sse_first_delta.py.
    start = time.perf_counter()
    first = None
    async for _ in upstream.stream(SpeechRequest(SENTENCES * 2, voice_id=JANE)):
        first = first or time.perf_counter() - start
    total = time.perf_counter() - start
    assert first is not None
    assert first < total


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "opus"])
async def test_stream_encoded_formats_decode_as_one_file(upstream: Upstream, fmt: str) -> None:
    request = SpeechRequest(
        "One. Two sentences here. And a third!", voice_id=JANE, response_format=fmt
    )
    data = b"".join([d async for d in upstream.stream_encoded(request)])
    decoded = decode(data)
    assert_speech(decoded, min_seconds=1)
    assert ffprobe(data, "ogg" if fmt == "opus" else fmt)["codec"] == FFPROBE_CODEC[fmt]


def _spread(values: list[int]) -> str:
    if not values:
        return "none"
    return f"min {min(values)}, median {statistics.median(values):g}, max {max(values)}"


@pytest.mark.real_api
@pytest.mark.skipif(not REAL_API_KEY, reason="records the real API's Opus stream")
async def test_stream_opus_is_an_ogg_opus_stream_passthrough_can_forward(
    upstream: Upstream,
) -> None:
    # What Opus passthrough relies on is asserted; the rest of the stream's shape is
    # printed (pytest -s), to notice when the upstream changes how it pages and cuts.
    request = SpeechRequest(SENTENCES, voice_id=JANE, response_format="opus")
    demuxer = OggOpusDemuxer()
    packets: list[bytes] = []
    pages_per_delta, packets_per_page, deltas_on_page_boundary = [], [], 0
    async for delta in upstream.stream_encoded(request):
        pages = demuxer.feed_pages(delta)
        pages_per_delta.append(len(pages))
        packets_per_page += [len(page.packets) for page in pages]
        packets += [packet for page in pages for packet in page.packets]
        deltas_on_page_boundary += demuxer.buffered == 0
    demuxer.finish()  # a valid Ogg Opus stream, ended on a page boundary
    head = demuxer.head
    assert head is not None
    samples = [packet_samples(packet) for packet in packets]
    print(
        f"\nOpusHead: {head}",
        f"channels: {'mono' if head.channels == 1 else 'stereo'}",
        f"packet durations (48 kHz samples): {sorted(set(samples))}",
        f"packets: {len(packets)}, bytes each: {_spread([len(p) for p in packets])}",
        f"packets per page (headers count 0): {_spread(packets_per_page)}",
        f"pages per delta: {_spread(pages_per_delta)} over {len(pages_per_delta)} deltas",
        f"deltas ending on a page boundary: {deltas_on_page_boundary}",
        f"last granule: {demuxer.last_granule}, pre-skip: {head.pre_skip}",
        sep="\n",
    )
    assert head.channels in (1, 2)
    assert packets
    assert all(120 <= n <= 5760 for n in samples)  # 2.5 to 120 ms each


async def test_speed_changes_duration(upstream: Upstream) -> None:
    text = "Speed changes how long this sentence takes to say."
    durations = {}
    for speed in (0.5, 1.0, 2.0):
        result = await upstream.generate(
            SpeechRequest(text, voice_id=JANE, response_format="wav", speed=speed)
        )
        durations[speed] = decode(result.audio).duration
    assert durations[0.5] > 1.5 * durations[1.0]
    assert durations[2.0] < 0.7 * durations[1.0]


@pytest.mark.engine_only
async def test_extreme_speeds_scale_duration(upstream: Upstream) -> None:
    text = "Extremes of speed."
    lengths = {}
    for speed in (0.25, 1.0, 4.0):
        result = await upstream.generate(
            SpeechRequest(text, voice_id=JANE, response_format="pcm", speed=speed)
        )
        lengths[speed] = decode(result.audio, fmt="pcm").duration
    assert 3.0 < lengths[0.25] / lengths[1.0] < 5.0
    assert 0.18 < lengths[4.0] / lengths[1.0] < 0.35


async def test_generate_with_ref_audio(upstream: Upstream, reference_wav: bytes) -> None:
    request = SpeechRequest(
        "Cloned on the fly.",
        ref_audio=base64.b64encode(reference_wav).decode(),
        response_format="wav",
    )
    result = await upstream.generate(request)
    assert_speech(decode(result.audio))


async def test_stream_with_ref_audio(upstream: Upstream, reference_wav: bytes) -> None:
    request = SpeechRequest(
        "Streamed with a reference voice.", ref_audio=base64.b64encode(reference_wav).decode()
    )
    pcm = b"".join([c.data async for c in upstream.stream(request)])
    assert_speech(decode(pcm, fmt="pcm"))


async def test_voice_lifecycle(upstream: Upstream, reference_wav: bytes) -> None:
    voice = await upstream.clone_voice(
        "Contract Voice", reference_wav, language="en", gender="female"
    )
    try:
        assert voice.name == "Contract Voice"
        assert voice.language == "en"
        assert voice.gender == "female"
        assert voice.mistral_voice_id
        assert voice.created_at
        mine = [v async for v in upstream.iter_voices(limit=2)]
        assert voice.id in [v.id for v in mine]

        updated = await upstream.update_voice(
            voice.id, VoiceUpdate(name="Renamed", language="fr", tags=("demo", "test"))
        )
        assert (updated.name, updated.language) == ("Renamed", "fr")
        assert updated.gender == "female"  # untouched fields stay

        result = await upstream.generate(
            SpeechRequest("Bonjour tout le monde.", voice_id=voice.id, response_format="wav")
        )
        assert_speech(decode(result.audio))
    finally:
        assert await upstream.delete_voice(voice.id) == voice.id
    with pytest.raises(UpstreamError) as caught:
        await upstream.delete_voice(voice.id)
    assert caught.value.status == 404
    assert not caught.value.retryable


@pytest.mark.engine_only
async def test_voice_paging(
    upstream: Upstream, engine: object, target: Target, reference_wav: bytes
) -> None:
    assert target.engine is not None
    key, _ = target.engine.add_key(10_000)
    async with Upstream(target.config(api_key=key)) as client:
        ids = [(await client.clone_voice(f"V{i}", reference_wav)).id for i in range(5)]
        page1 = await client.list_voices(page=1, limit=2)
        page3 = await client.list_voices(page=3, limit=2)
        assert page1.total == 5
        assert [v.id for v in page1.voices] == ids[::-1][:2]  # newest first
        assert [v.id for v in page3.voices] == ids[:1]
        assert sorted([v.id async for v in client.iter_voices(limit=2)]) == sorted(ids)


@pytest.mark.engine_only
async def test_presets_catalogue(upstream: Upstream) -> None:
    presets = await upstream.list_presets()
    assert len(presets) == 17
    by_name = {p["name"]: p for p in presets}
    assert by_name["Jane"]["id"] == JANE
    assert (by_name["Jane"]["gender"], len(by_name["Jane"]["variants"])) == ("female", 9)
    assert (by_name["Paul"]["gender"], len(by_name["Paul"]["variants"])) == ("male", 8)
    assert {p["language"] for p in presets} == {
        "en",
        "fr",
        "es",
        "pt",
        "it",
        "nl",
        "de",
        "hi",
        "ar",
    }
    variant = by_name["Paul"]["variants"][3]["id"]
    result = await upstream.generate(
        SpeechRequest("Variant voice.", voice_id=variant, response_format="wav")
    )
    assert_speech(decode(result.audio))


@pytest.mark.engine_only
async def test_every_language_speaks(upstream: Upstream) -> None:
    presets = await upstream.list_presets()
    samples = {
        "en": "Hello there.",
        "fr": "Bonjour à tous.",
        "es": "¿Hola, qué tal?",
        "pt": "Olá, tudo bem?",
        "it": "Ciao a tutti.",
        "nl": "Hallo allemaal.",
        "de": "Guten Tag, zusammen.",
        "hi": "नमस्ते, आप कैसे हैं।",
        "ar": "مرحبا بكم؟",
    }
    for language, text in samples.items():
        voice = next(p["id"] for p in presets if p["language"] == language)
        result = await upstream.generate(SpeechRequest(text, voice_id=voice, response_format="wav"))
        assert_speech(decode(result.audio))
