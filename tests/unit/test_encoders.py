"""Per-sink encoders, checked with real decoders (PyAV, libopus, ffprobe).

Input is what a Session emits: mono s16le at 24 kHz in pieces of any size (single samples,
odd sizes, bursts). Output is judged as a listener's decoder sees it: sample rate, length,
pitch, framing, and the seq/timestamp clock a transport puts on the wire.
"""

from __future__ import annotations

import io
import itertools
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.audio_checks import decode, ffprobe
from voxgate.codecs.encoded_audio import PacketClock
from voxgate.codecs.encoders import (
    FORMAT_NAMES,
    EncodedAudio,
    Encoder,
    Mp3Encoder,
    MulawEncoder,
    OggOpusEncoder,
    OpusEncoder,
    OutputFormat,
    PcmEncoder,
    make_encoder,
)
from voxgate.codecs.mulaw import mulaw_encode
from voxgate.codecs.ogg import ogg_crc
from voxgate.errors import AudioError, InvalidInput

RATE = 24000
Samples = npt.NDArray[np.int16]
Floats = npt.NDArray[np.float32]


# -- signals ----------------------------------------------------------------------------


def tone(seconds: float, freq: float = 440.0, amplitude: float = 0.4) -> Samples:
    t = np.arange(round(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype(np.int16)


def speech_like(seconds: float, seed: int = 7) -> Samples:
    """Voiced syllables: a gliding pitch, two moving formants, 4 Hz syllables, some hiss."""
    t = np.arange(round(seconds * RATE)) / RATE
    f0 = 125 + 30 * np.sin(2 * np.pi * 0.7 * t) + 12 * np.sin(2 * np.pi * 2.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    f1 = 550 + 200 * np.sin(2 * np.pi * 3.1 * t)
    f2 = 1600 + 400 * np.sin(2 * np.pi * 1.7 * t + 1)
    k = np.arange(1, 31)[:, None]
    weights = np.exp(-(((k * f0 - f1) / 180) ** 2)) + 0.5 * np.exp(-(((k * f0 - f2) / 260) ** 2))
    voiced = np.sum((weights + 0.03) * np.sin(k * phase), axis=0)
    hiss = np.random.default_rng(seed).normal(0, 0.05, len(t))
    syllables = (0.5 - 0.5 * np.cos(2 * np.pi * 4 * t)) ** 0.7
    signal = (voiced / np.max(np.abs(voiced)) + hiss) * syllables
    speech: Samples = (signal / np.max(np.abs(signal)) * 0.5 * 32767).astype(np.int16)
    return speech


TONE_SECONDS, SPEECH_SECONDS = 1.2, 0.8
SIGNAL = np.concatenate([tone(TONE_SECONDS), speech_like(SPEECH_SECONDS)])  # 2.0 s
SIGNAL_BYTES = SIGNAL.tobytes()
TONE_RMS = 0.4 / np.sqrt(2)


def pieces(data: bytes, seed: int = 0) -> Iterator[bytes]:
    """Slices of whole samples: single samples, odd sizes, around 20 ms, and bursts."""
    rng = np.random.default_rng(seed)
    fixed = [1, 1, 2, 3, 7, 479, 481, 1, 159, 161, 960, 2401, 5]
    position = 0
    for size in [*fixed, *rng.integers(1, 3000, size=10_000)]:
        if position >= len(data):
            return
        yield data[position : position + 2 * int(size)]
        position += 2 * int(size)


def encode_in_pieces(encoder: Encoder, data: bytes = SIGNAL_BYTES, seed: int = 0) -> list[Any]:
    out: list[EncodedAudio] = []
    for piece in pieces(data, seed):
        out += encoder.encode(piece)
    return out + encoder.flush()


def joined(payloads: list[EncodedAudio]) -> bytes:
    return b"".join(p.data for p in payloads)


# -- what a listener measures -----------------------------------------------------------


def dominant_hz(samples: npt.NDArray[Any], rate: int) -> float:
    values = samples.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(values * np.hanning(len(values))))
    return float(np.argmax(spectrum) * rate / len(values))


def rms(samples: npt.NDArray[Any]) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def assert_clock(payloads: list[EncodedAudio], rate: int) -> None:
    """seq +1 each, every timestamp the previous plus its ticks, durations in step."""
    for before, after in itertools.pairwise(payloads):
        assert after.seq == (before.seq + 1) % 2**32
        assert after.timestamp == (before.timestamp + before.ticks) % 2**32
    for payload in payloads:
        assert payload.duration_ms == pytest.approx(payload.ticks * 1000 / rate)
        assert payload.ticks > 0
        assert payload.data


def assert_tone_then_speech(decoded: Floats, rate: int, offset_s: float = 0.0) -> None:
    """440 Hz (+-2 %) in the tone part, speech-level energy in the speech part."""
    tone_part = decoded[int((0.1 + offset_s) * rate) : int((1.1 + offset_s) * rate)]
    assert dominant_hz(tone_part, rate) == pytest.approx(440, rel=0.02)
    assert rms(tone_part) == pytest.approx(TONE_RMS, rel=0.15)
    speech_part = decoded[int((1.3 + offset_s) * rate) : int((1.9 + offset_s) * rate)]
    expected = rms(speech_like(SPEECH_SECONDS)[int(0.1 * RATE) : int(0.7 * RATE)] / 32768)
    assert rms(speech_part) == pytest.approx(expected, rel=0.3)


def pyav_decode(codec: str, payloads: list[bytes], rate: int) -> list[Floats]:
    """Each payload through one decoder context, as a receiver feeds them."""
    decoder = av.CodecContext.create(codec, "r")
    assert isinstance(decoder, av.AudioCodecContext)
    decoder.sample_rate = rate
    decoder.layout = "mono"
    decoded = []
    for data in payloads:
        frames = decoder.decode(av.Packet(data))
        parts = [f.to_ndarray().reshape(-1) for f in frames]
        samples: npt.NDArray[Any] = np.concatenate(parts) if parts else np.zeros(0)
        scale = 32768 if samples.dtype == np.int16 else 1
        decoded.append((samples / scale).astype(np.float32))
    return decoded


def opus_decode(payloads: list[EncodedAudio]) -> list[Floats]:
    return pyav_decode("libopus", [p.data for p in payloads], 48000)


# -- formats ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pcm_8000", OutputFormat("pcm_s16le", 8000)),
        ("pcm_16000", OutputFormat("pcm_s16le", 16000)),
        ("pcm_24000", OutputFormat("pcm_s16le", 24000)),
        ("pcm_48000", OutputFormat("pcm_s16le", 48000)),
        ("mulaw_8000", OutputFormat("mulaw", 8000)),
        ("ulaw_8000", OutputFormat("mulaw", 8000)),
        ("opus", OutputFormat("opus", 48000, 32000, 5)),
        ("ogg_opus", OutputFormat("ogg_opus", 48000, 32000, 5)),
        ("mp3", OutputFormat("mp3", 24000, 64000)),
        ("mp3_16000", OutputFormat("mp3", 16000, 64000)),
        ("mp3_48000", OutputFormat("mp3", 48000, 64000)),
    ],
)
def test_format_names_parse_with_defaults(name: str, expected: OutputFormat) -> None:
    assert OutputFormat.parse(name) == expected


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_canonical_name_parses_back(name: str) -> None:
    fmt = OutputFormat.parse(name)
    assert OutputFormat.parse(fmt.name) == fmt


def test_parse_takes_bitrate_and_complexity() -> None:
    assert OutputFormat.parse("opus", bitrate=24000, complexity=9) == OutputFormat(
        "opus", 48000, 24000, 9
    )
    assert OutputFormat.parse("mp3_48000", bitrate=128000).bitrate == 128000


@pytest.mark.parametrize(
    ("name", "mime"),
    [
        ("pcm_16000", "audio/pcm;rate=16000;channels=1"),
        ("mulaw_8000", "audio/basic"),
        ("opus", "audio/opus"),
        ("ogg_opus", "audio/ogg;codecs=opus"),
        ("mp3", "audio/mpeg"),
    ],
)
def test_mime_types(name: str, mime: str) -> None:
    assert OutputFormat.parse(name).mime_type == mime


BAD_FORMATS: list[tuple[str, Callable[[], object], str]] = [
    ("encoding", lambda: OutputFormat("flac", 24000), "unknown encoding"),  # type: ignore[arg-type]
    ("pcm rate", lambda: OutputFormat("pcm_s16le", 44100), "44100 Hz"),
    ("mulaw rate", lambda: OutputFormat("mulaw", 16000), "8000 Hz"),
    ("opus rate", lambda: OutputFormat("opus", 24000), "48000 Hz"),
    ("mp3 rate", lambda: OutputFormat("mp3", 22050), "22050 Hz"),
    ("rate type", lambda: OutputFormat("pcm_s16le", 24000.0), "integer"),  # type: ignore[arg-type]
    ("opus low", lambda: OutputFormat("opus", 48000, 1000), "6000-510000"),
    ("opus high", lambda: OutputFormat("ogg_opus", 48000, 600_000), "6000-510000"),
    ("mp3 odd bitrate", lambda: OutputFormat("mp3", 24000, 65000), "65000"),
    ("mp3 mpeg1 only", lambda: OutputFormat("mp3", 24000, 320000), "320000"),
    ("mp3 mpeg2 only", lambda: OutputFormat("mp3", 48000, 8000), "8000 bit/s"),
    ("pcm bitrate", lambda: OutputFormat("pcm_s16le", 24000, 64000), "fixed bitrate"),
    ("mulaw bitrate", lambda: OutputFormat("mulaw", 8000, 64000), "fixed bitrate"),
    ("bool bitrate", lambda: OutputFormat("opus", 48000, True), "integer"),
    ("complexity high", lambda: OutputFormat("opus", 48000, None, 11), "0-10"),
    ("complexity low", lambda: OutputFormat("opus", 48000, None, -1), "0-10"),
    ("complexity mp3", lambda: OutputFormat("mp3", 24000, None, 5), "opus and ogg_opus only"),
    ("unknown name", lambda: OutputFormat.parse("pcm_44100"), "unknown output format"),
    ("unknown param", lambda: OutputFormat.parse("opus", vbr=True), "vbr"),
    ("string bitrate", lambda: OutputFormat.parse("opus", bitrate="32k"), "integer"),
]


@pytest.mark.parametrize(
    ("build", "message"), [c[1:] for c in BAD_FORMATS], ids=[c[0] for c in BAD_FORMATS]
)
def test_bad_formats_are_refused_clearly(build: Callable[[], object], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        build()
    assert caught.value.code == "invalid_output_format"
    assert message in caught.value.message


# -- the contract every encoder keeps ---------------------------------------------------

ALL_FORMATS = [
    "pcm_24000",
    "pcm_16000",
    "pcm_8000",
    "pcm_48000",
    "mulaw_8000",
    "opus",
    "ogg_opus",
    "mp3_24000",
    "mp3_16000",
    "mp3_48000",
]


def test_make_encoder_picks_the_encoding() -> None:
    kinds = {"pcm": PcmEncoder, "mulaw": MulawEncoder, "opus": OpusEncoder}
    kinds |= {"ogg": OggOpusEncoder, "mp3": Mp3Encoder}
    for name in ALL_FORMATS:
        encoder = make_encoder(OutputFormat.parse(name))
        assert isinstance(encoder, kinds[name.split("_")[0]])
        assert encoder.format == OutputFormat.parse(name)


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_clock_runs_on_through_flush_and_reset(name: str) -> None:
    fmt = OutputFormat.parse(name)
    encoder = make_encoder(fmt)
    out = encode_in_pieces(encoder, SIGNAL_BYTES[:24000])
    out += encoder.encode(SIGNAL_BYTES[24000:30002])
    encoder.reset()
    out += encode_in_pieces(encoder, SIGNAL_BYTES[40000:64000], seed=3)
    encoder.reset()
    out += encoder.flush()  # nothing left after a reset
    out += encode_in_pieces(encoder, SIGNAL_BYTES[:9602], seed=4)
    assert (out[0].seq, out[0].timestamp) == (0, 0)
    assert_clock(out, fmt.clock_rate)


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_half_a_sample_is_refused(name: str) -> None:
    with pytest.raises(AudioError) as caught:
        make_encoder(OutputFormat.parse(name)).encode(b"\x01\x02\x03")
    assert caught.value.code == "bad_pcm_length"


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_nothing_in_nothing_out(name: str) -> None:
    encoder = make_encoder(OutputFormat.parse(name))
    assert encoder.encode(b"") == []
    assert encoder.flush() == []
    encoder.reset()
    assert encoder.flush() == []


@pytest.mark.parametrize("name", ["pcm_16000", "mulaw_8000", "opus", "mp3_24000"])
@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(1, 1500), min_size=1, max_size=30))
def test_output_does_not_depend_on_how_input_is_cut(name: str, cuts: list[int]) -> None:
    data = SIGNAL_BYTES[: 2 * 7200]  # 300 ms
    whole = make_encoder(OutputFormat.parse(name))
    reference = whole.encode(data) + whole.flush()
    cut = make_encoder(OutputFormat.parse(name))
    out: list[EncodedAudio] = []
    position = 0
    for size in [*cuts, len(data)]:
        out += cut.encode(data[position : position + 2 * size])
        position += 2 * size
    out += cut.flush()
    assert joined(out) == joined(reference)
    if not name.startswith("pcm"):  # framed formats: the very same payloads and stamps
        stamps = [(p.seq, p.timestamp, p.ticks) for p in out]
        assert stamps == [(p.seq, p.timestamp, p.ticks) for p in reference]


def test_packet_clock_wraps_at_2_32() -> None:
    clock = PacketClock(48000, seq=2**32 - 1, timestamp=2**32 - 500)
    first, second = clock.stamp(b"a", 960), clock.stamp(b"b", 960)
    assert (first.seq, first.timestamp) == (2**32 - 1, 2**32 - 500)
    assert (second.seq, second.timestamp) == (0, 460)
    assert_clock([first, second], 48000)


def test_input_rate_must_suit_the_encoder() -> None:
    with pytest.raises(AudioError):
        make_encoder(OutputFormat.parse("opus"), input_rate=22050)
    with pytest.raises(AudioError):
        make_encoder(OutputFormat.parse("pcm_24000"), input_rate=0)


# -- pcm --------------------------------------------------------------------------------


def test_pcm_at_the_input_rate_passes_the_same_bytes_through() -> None:
    encoder = make_encoder(OutputFormat.parse("pcm_24000"))
    piece = SIGNAL_BYTES[:962]
    (payload,) = encoder.encode(piece)
    assert payload.data is piece
    assert payload.ticks == 481
    assert payload.duration_ms == pytest.approx(481 / 24)
    assert encoder.flush() == []


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_pcm_resampled_in_pieces_keeps_length_pitch_and_has_no_seams(rate: int) -> None:
    out = encode_in_pieces(make_encoder(OutputFormat.parse(f"pcm_{rate}")))
    assert_clock(out, rate)
    samples = np.frombuffer(joined(out), dtype="<i2")
    assert sum(p.ticks for p in out) == len(samples)
    assert abs(len(samples) - 2 * rate) <= 2
    assert_tone_then_speech((samples / 32768).astype(np.float32), rate)
    # The same filter ran across every piece: identical to resampling the whole at once.
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    frame = av.AudioFrame.from_ndarray(SIGNAL.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = RATE
    frames = resampler.resample(frame) + resampler.resample(None)
    assert joined(out) == b"".join(f.to_ndarray().tobytes() for f in frames)


def test_pcm_reset_drops_the_filter_history() -> None:
    encoder = make_encoder(OutputFormat.parse("pcm_8000"))
    before = encoder.encode(tone(0.1).tobytes())
    encoder.reset()
    after = encoder.encode(np.zeros(2400, np.int16).tobytes()) + encoder.flush()
    assert_clock(before + after, 8000)
    assert not np.any(np.frombuffer(joined(after), dtype="<i2"))


# -- mu-law -----------------------------------------------------------------------------


def pyav_encode(codec: str, samples: Samples, rate: int) -> bytes:
    encoder = av.CodecContext.create(codec, "w")
    assert isinstance(encoder, av.AudioCodecContext)
    encoder.sample_rate = rate
    encoder.layout = "mono"
    encoder.format = "s16"
    encoder.open()
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    return b"".join(bytes(p) for p in encoder.encode(frame) + encoder.encode(None))


def test_mulaw_table_equals_ffmpeg_for_every_sample_value() -> None:
    every = np.arange(-32768, 32768, dtype=np.int16)
    assert mulaw_encode(every) == pyav_encode("pcm_mulaw", every, 8000)


def test_mulaw_is_exact_20ms_frames_equal_to_ffmpeg() -> None:
    out = encode_in_pieces(make_encoder(OutputFormat.parse("mulaw_8000")))
    assert {len(p.data) for p in out} == {160}
    assert {p.ticks for p in out} == {160}
    assert_clock(out, 8000)
    assert len(out) == 100  # 2 s of 8 kHz is exactly 100 frames, nothing padded
    # What PyAV's own resampler and pcm_mulaw encoder make of the whole signal at once.
    resampler = av.AudioResampler(format="s16", layout="mono", rate=8000)
    frame = av.AudioFrame.from_ndarray(SIGNAL.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = RATE
    frames = resampler.resample(frame) + resampler.resample(None)
    at_8k = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    assert joined(out) == pyav_encode("pcm_mulaw", at_8k, 8000)
    decoded = np.concatenate(pyav_decode("pcm_mulaw", [p.data for p in out], 8000))
    assert len(decoded) == 16000
    assert_tone_then_speech(decoded, 8000)


def test_mulaw_holds_the_partial_frame_pads_it_on_flush_and_reset_drops_it() -> None:
    encoder = make_encoder(OutputFormat.parse("mulaw_8000"))
    loud = tone(0.050).tobytes()  # 2.5 frames at 8 kHz
    first = encoder.encode(loud)
    assert len(first) == 2  # the half frame (and filter history) is held back
    encoder.reset()
    after = encoder.encode(np.zeros(480, np.int16).tobytes()) + encoder.flush()
    assert [p.timestamp for p in after] == [320]  # the dropped 10 ms do not count
    assert after[0].data == b"\xff" * 160  # nothing of the tone comes out after the reset
    flushed = encoder.encode(loud[:200]) + encoder.flush()  # 100 samples -> 33 at 8 kHz
    assert len(flushed) == 1
    assert flushed[0].data.endswith(b"\xff" * 100)
    assert_clock(first + after + flushed, 8000)


# -- opus -------------------------------------------------------------------------------

PRE_SKIP = 312  # libopus' lookahead at 48 kHz: 6.5 ms


def test_opus_packets_are_each_20ms_and_decode_to_the_input() -> None:
    encoder = make_encoder(OutputFormat.parse("opus"))
    assert isinstance(encoder, OpusEncoder)
    assert encoder.pre_skip == PRE_SKIP
    out = encode_in_pieces(encoder)
    assert_clock(out, 48000)
    assert {(p.ticks, p.duration_ms) for p in out} == {(960, 20.0)}
    # 2 s is 100 frames; flush adds one packet to let the 6.5 ms lookahead out.
    assert len(out) == 101
    decoded = opus_decode(out)
    assert {len(d) for d in decoded} == {960}
    samples = np.concatenate(decoded)[PRE_SKIP:]
    assert_tone_then_speech(samples, 48000)


def test_opus_packet_leaves_as_soon_as_20ms_exist() -> None:
    encoder = make_encoder(OutputFormat.parse("opus"))
    assert encoder.encode(SIGNAL_BYTES[: 2 * 479]) == []
    assert len(encoder.encode(SIGNAL_BYTES[2 * 479 : 2 * 480])) == 1
    assert len(encoder.encode(SIGNAL_BYTES[2 * 480 : 2 * 960])) == 1
    assert len(encoder.encode(SIGNAL_BYTES[2 * 960 : 2 * 3360])) == 5


@pytest.mark.parametrize(("extra", "flushed"), [(0, 1), (100, 1), (324, 1), (325, 2), (479, 2)])
def test_opus_flush_lets_every_real_sample_out(extra: int, flushed: int) -> None:
    """The partial frame is padded; one more silent frame follows only while real audio is
    still inside libopus' lookahead (the last 156 input samples of the last frame)."""
    source = tone(0.2 + extra / RATE)
    encoder = make_encoder(OutputFormat.parse("opus"))
    out = encoder.encode(source.tobytes())
    tail = encoder.flush()
    assert len(tail) == flushed
    assert encoder.flush() == []
    decoded = np.concatenate(opus_decode(out + tail))
    end = PRE_SKIP + 2 * len(source)  # where the input's last sample lands at 48 kHz
    assert len(decoded) >= end
    assert rms(decoded[end - 200 : end - 20]) > 0.8 * TONE_RMS  # the tone, to its very end
    if len(decoded) > end + 120:  # then the padding: silence, but for codec smearing
        assert rms(decoded[end + 120 :]) < 0.2 * TONE_RMS


def test_opus_reset_drops_the_partial_frame_and_the_lookahead() -> None:
    encoder = make_encoder(OutputFormat.parse("opus"))
    first = encoder.encode(tone(0.030).tobytes())  # one packet, 10 ms held back
    encoder.reset()
    rest = encoder.encode(np.zeros(2400, np.int16).tobytes()) + encoder.flush()
    assert [p.timestamp for p in rest] == [960 * i for i in range(1, 7)]  # 5 + lookahead
    decoded = np.concatenate(opus_decode(first + rest))
    # The first packet carries the tone up to input sample 480 - 156; nothing of what was
    # held back (input 324-720) may follow; 2.5 ms of CELT overlap ringing is allowed.
    assert rms(decoded[700:900]) > 0.1
    assert rms(decoded[960 + 120 :]) < 0.005


@pytest.mark.parametrize("input_rate", [16000, 48000])
def test_opus_takes_other_libopus_rates_and_stays_on_the_48k_clock(input_rate: int) -> None:
    t = np.arange(input_rate // 2) / input_rate
    source = (np.sin(2 * np.pi * 440 * t) * 12000).astype(np.int16)
    encoder = make_encoder(OutputFormat.parse("opus"), input_rate=input_rate)
    out = encoder.encode(source.tobytes()) + encoder.flush()
    assert [p.ticks for p in out] == [960] * 26
    decoded = np.concatenate(opus_decode(out))
    assert dominant_hz(decoded[4800:20000], 48000) == pytest.approx(440, rel=0.02)


def test_opus_bitrate_and_complexity_reach_libopus() -> None:
    speech = speech_like(1.0).tobytes()
    sizes = {}
    for bitrate in (12000, 64000):
        for complexity in (0, 10):
            fmt = OutputFormat.parse("opus", bitrate=bitrate, complexity=complexity)
            out = make_encoder(fmt).encode(speech)
            sizes[bitrate, complexity] = np.mean([len(p.data) for p in out])
            assert sizes[bitrate, complexity] == pytest.approx(bitrate / 8 / 50, rel=0.35)
    assert sizes[12000, 0] != sizes[12000, 10]  # a different coder search, different bits


# -- ogg opus ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    flags: int
    granule: int
    serial: int
    sequence: int
    crc: int
    packets: list[bytes]
    raw: bytes


def ogg_pages(data: bytes) -> list[Page]:
    """Parse a stream of whole pages whose packets never continue onto the next page."""
    pages, position = [], 0
    while position < len(data):
        assert data[position : position + 4] == b"OggS"
        fields = struct.unpack_from("<BBqIIIB", data, position + 4)
        version, flags, granule, serial, sequence, crc, count = fields
        assert version == 0
        lacing = data[position + 27 : position + 27 + count]
        assert count > 0
        assert lacing[-1] < 255  # the last packet ends on this page
        body = position + 27 + count
        packets, start, size = [], body, 0
        for value in lacing:
            size += value
            if value < 255:
                packets.append(data[start : start + size])
                start, size = start + size, 0
        raw = data[position:start]
        pages.append(Page(flags, granule, serial, sequence, crc, packets, raw))
        position = start
    return pages


def crc_field_zeroed(page: bytes) -> bytes:
    return page[:22] + b"\0\0\0\0" + page[26:]


def test_ogg_crc_of_the_check_string() -> None:
    # CRC-32/CKSUM's catalogue check value is 0x765E7680; Ogg's variant has no final xor.
    assert ogg_crc(b"123456789") == 0x765E7680 ^ 0xFFFFFFFF


def test_ogg_crc_matches_the_pages_ffmpeg_writes() -> None:
    sink = io.BytesIO()
    with av.open(sink, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=24000, layout="mono")
        frame = av.AudioFrame.from_ndarray(SIGNAL.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    pages = ogg_pages(sink.getvalue())
    assert len(pages) >= 3
    for page in pages:
        assert ogg_crc(crc_field_zeroed(page.raw)) == page.crc


def test_ogg_opus_stream_is_a_valid_opus_file() -> None:
    encoder = make_encoder(OutputFormat.parse("ogg_opus"))
    out = encode_in_pieces(encoder)
    assert_clock(out, 48000)
    data = joined(out)
    probed = ffprobe(data, "opus")
    assert (probed["codec"], probed["sample_rate"], probed["channels"]) == ("opus", 48000, 1)
    assert probed["format"] == "ogg"
    # ffprobe's container duration is the last granule position, pre-skip included.
    assert probed["duration"] == pytest.approx(101 * 960 / 48000, abs=0.001)
    decoded = decode(data)
    assert decoded.sample_rate == 48000
    assert len(decoded.samples) == 101 * 960 - PRE_SKIP  # the decoder honoured pre-skip
    assert_tone_then_speech(decoded.samples, 48000)


def test_ogg_opus_pages_follow_rfc_7845() -> None:
    encoder = make_encoder(OutputFormat.parse("ogg_opus"))
    out = encode_in_pieces(encoder)
    pages = ogg_pages(joined(out))
    head, tags, audio = pages[0], pages[1], pages[2:]
    assert head.flags == 0x02
    assert head.packets[0].startswith(b"OpusHead")
    assert int.from_bytes(head.packets[0][10:12], "little") == PRE_SKIP
    assert int.from_bytes(head.packets[0][12:16], "little") == RATE  # the input rate
    assert tags.packets[0].startswith(b"OpusTags")
    assert tags.granule == 0
    assert [p.sequence for p in pages] == list(range(len(pages)))
    assert len({p.serial for p in pages}) == 1
    assert all(p.flags == 0 for p in audio)
    packets = 0
    for page in pages:
        assert ogg_crc(crc_field_zeroed(page.raw)) == page.crc
    for page in audio:
        packets += len(page.packets)
        assert page.granule == 960 * packets
    assert packets == 101
    # Every payload is whole pages; the first one starts with the two header pages.
    assert out[0].data.startswith(head.raw + tags.raw)
    for payload in out:
        payload_pages = ogg_pages(payload.data)
        audio_packets = sum(len(p.packets) for p in payload_pages if p.granule)
        assert payload.ticks == 960 * audio_packets


def test_ogg_opus_real_time_input_gets_a_page_per_packet() -> None:
    encoder = make_encoder(OutputFormat.parse("ogg_opus"))
    frames = [SIGNAL_BYTES[i : i + 960] for i in range(0, 96000, 960)]
    for index, frame in enumerate(frames[:10]):
        (payload,) = encoder.encode(frame)
        pages = ogg_pages(payload.data)
        assert len(pages) == (3 if index == 0 else 1)  # headers ride on the first
        assert len(pages[-1].packets) == 1
        assert payload.ticks == 960


def test_ogg_opus_burst_is_cut_into_pages_that_fit() -> None:
    fmt = OutputFormat.parse("ogg_opus", bitrate=256000)  # ~640 B packets: 3 lacing values
    encoder = make_encoder(fmt)
    burst = np.tile(SIGNAL, 3).tobytes()  # 6 s in one call: 300 packets
    (payload,) = encoder.encode(burst)
    pages = ogg_pages(payload.data)[2:]
    assert len(pages) > 3
    assert all(len(p.raw) - 27 - sum(map(len, p.packets)) <= 255 for p in pages)
    assert sum(len(p.packets) for p in pages) == 300
    assert payload.ticks == 300 * 960
    assert decode(payload.data + b"".join(p.data for p in encoder.flush())).duration > 5.9


def test_ogg_opus_reset_keeps_the_stream_valid_and_drops_held_audio() -> None:
    encoder = make_encoder(OutputFormat.parse("ogg_opus"))
    before = encoder.encode(tone(0.5 + 0.01).tobytes())  # 25 packets, 10 ms held back
    encoder.reset()
    after = encoder.encode(np.zeros(RATE // 2, np.int16).tobytes()) + encoder.flush()
    assert_clock(before + after, 48000)
    decoded = decode(joined(before + after))
    assert decoded.duration == pytest.approx((25 + 26) * 0.02 - PRE_SKIP / 48000)
    cut = 25 * 960 - PRE_SKIP  # where the tone's packets end, pre-skip removed
    assert rms(decoded.samples[cut - 960 : cut - 120]) > 0.8 * TONE_RMS
    assert rms(decoded.samples[cut + 120 :]) < 0.005


# -- mp3 --------------------------------------------------------------------------------

LAME_DELAY = 576 + 529  # samples of silence LAME puts before the audio, at any rate


@pytest.mark.parametrize(("rate", "frame"), [(16000, 576), (24000, 576), (48000, 1152)])
def test_mp3_stream_of_frames_decodes_and_probes(rate: int, frame: int) -> None:
    out = encode_in_pieces(make_encoder(OutputFormat.parse(f"mp3_{rate}")))
    assert_clock(out, rate)
    assert {p.ticks for p in out} == {frame}
    bits_per_frame = 64000 * frame // rate
    assert {len(p.data) * 8 for p in out} <= {bits_per_frame, bits_per_frame + 8}  # CBR
    data = joined(out)
    probed = ffprobe(data, "mp3")
    assert (probed["codec"], probed["sample_rate"], probed["channels"]) == ("mp3", rate, 1)
    assert probed["duration"] == pytest.approx(len(out) * frame / rate, abs=0.005)
    decoded = decode(data)
    assert decoded.codec.startswith("mp3")
    assert decoded.sample_rate == rate
    assert len(decoded.samples) == len(out) * frame
    # The input, LAME's start-up delay before it, and less than a frame of padding after.
    assert 0 <= len(decoded.samples) - (2 * rate + LAME_DELAY) < frame
    assert_tone_then_speech(decoded.samples, rate, offset_s=0.05)


def test_mp3_turns_concatenate_into_one_stream() -> None:
    encoder = make_encoder(OutputFormat.parse("mp3"))
    first = encode_in_pieces(encoder, SIGNAL_BYTES[: RATE * 2])  # 1 s tone, then flush
    second = encode_in_pieces(encoder, SIGNAL_BYTES[: RATE * 2], seed=5)
    assert_clock(first + second, 24000)
    decoded = decode(joined(first + second))
    assert decoded.duration == pytest.approx(len(first + second) * 0.024)
    assert 2.0 < decoded.duration < 2.0 + 2 * 0.07
    second_turn = decoded.samples[len(first) * 576 :]
    assert dominant_hz(second_turn[2400:21600], 24000) == pytest.approx(440, rel=0.02)


def test_mp3_reset_drops_what_lame_holds() -> None:
    encoder = make_encoder(OutputFormat.parse("mp3"))
    before = encoder.encode(tone(0.5).tobytes())
    assert 0 < len(before) < 0.5 / 0.024  # LAME holds the last frames back
    encoder.reset()
    after = encoder.encode(np.zeros(RATE // 2, np.int16).tobytes()) + encoder.flush()
    assert_clock(before + after, 24000)
    decoded = decode(joined(before + after))
    cut = len(before) * 576
    assert rms(decoded.samples[cut - 1152 : cut - 576]) > 0.8 * TONE_RMS
    # The decoder's filterbank and MDCT overlap carry the last frame ~900 samples on.
    assert rms(decoded.samples[cut + 1152 :]) < 0.005
