"""What a client asked to receive: one encoding, its clock, and its encoder settings.

Formats are named the way clients spell them on the wire (aliases: ``ulaw_8000`` for
``mulaw_8000``, ``mp3`` for ``mp3_24000``)::

    name        encoding   clock Hz  payload                  bitrate: default, allowed
    pcm_8000    pcm_s16le   8000     any size                 -
    pcm_16000   pcm_s16le  16000     any size                 -
    pcm_24000   pcm_s16le  24000     any size (pass-through)  -
    pcm_48000   pcm_s16le  48000     any size                 -
    mulaw_8000  mulaw       8000     exactly 20 ms, 160 B     -
    opus        opus       48000     one 20 ms packet         32000, 6000-510000
    ogg_opus    ogg_opus   48000     Ogg pages                32000, 6000-510000
    mp3_16000   mp3        16000     one frame, 576 samples   64000, MPEG-2 rates 8k-160k
    mp3_24000   mp3        24000     one frame, 576 samples   64000, MPEG-2 rates 8k-160k
    mp3_48000   mp3        48000     one frame, 1152 samples  64000, MPEG-1 rates 32k-320k

``complexity`` (0-10, default 5) applies to opus and ogg_opus only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from voxgate.errors import InvalidInput

Encoding = Literal["pcm_s16le", "mulaw", "opus", "ogg_opus", "mp3"]
ENCODINGS: tuple[Encoding, ...] = get_args(Encoding)

# Opus always runs on a 48 kHz RTP / Ogg granule clock, whatever rate libopus is fed.
OPUS_CLOCK_RATE = 48000
OPUS_BITRATES = range(6000, 510001)  # libopus' documented range
OPUS_DEFAULT_BITRATE = 32000  # transparent-enough mono speech, well under a voice channel
OPUS_DEFAULT_COMPLEXITY = 5  # half of libopus' CPU at 10, barely audible on speech
MP3_DEFAULT_BITRATE = 64000

_RATES: dict[Encoding, tuple[int, ...]] = {
    "pcm_s16le": (8000, 16000, 24000, 48000),
    "mulaw": (8000,),
    "opus": (OPUS_CLOCK_RATE,),
    "ogg_opus": (OPUS_CLOCK_RATE,),
    "mp3": (16000, 24000, 48000),
}
# MP3 can only signal these bitrates in a frame header: MPEG-2 below 32 kHz, MPEG-1 above.
_MPEG2_KBPS = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_MPEG1_KBPS = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)

_NAMES: dict[str, tuple[Encoding, int]] = {
    **{f"pcm_{rate}": ("pcm_s16le", rate) for rate in _RATES["pcm_s16le"]},
    "mulaw_8000": ("mulaw", 8000),
    "opus": ("opus", OPUS_CLOCK_RATE),
    "ogg_opus": ("ogg_opus", OPUS_CLOCK_RATE),
    **{f"mp3_{rate}": ("mp3", rate) for rate in _RATES["mp3"]},
}
_ALIASES = {"ulaw_8000": "mulaw_8000", "mp3": "mp3_24000"}
FORMAT_NAMES: tuple[str, ...] = (*_NAMES, *_ALIASES)
_PARAMS = ("bitrate", "complexity")


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_output_format")


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """An audio format a sink delivers; ``bitrate`` and ``complexity`` are filled with
    their defaults where they apply, so two spellings of one format compare equal."""

    encoding: Encoding
    sample_rate: int
    bitrate: int | None = None  # bit/s; opus, ogg_opus and mp3 only
    complexity: int | None = None  # libopus 0-10; opus and ogg_opus only

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise _invalid(f"unknown encoding {self.encoding!r}; one of {', '.join(ENCODINGS)}")
        _int("sample_rate", self.sample_rate)
        if self.sample_rate not in _RATES[self.encoding]:
            rates = ", ".join(map(str, _RATES[self.encoding]))
            raise _invalid(f"{self.encoding} cannot use {self.sample_rate} Hz; allowed: {rates} Hz")
        # Frozen: the defaults are filled in through object.__setattr__, once, here.
        object.__setattr__(self, "bitrate", self._checked_bitrate())
        object.__setattr__(self, "complexity", self._checked_complexity())

    @classmethod
    def parse(cls, name: str, **params: object) -> OutputFormat:
        """The format a client named (see the module docstring), with optional ``bitrate``
        and ``complexity``; anything else raises ``InvalidInput``."""
        canonical = _ALIASES.get(name, name)
        if canonical not in _NAMES:
            raise _invalid(f"unknown output format {name!r}; one of {', '.join(FORMAT_NAMES)}")
        unknown = sorted(set(params) - set(_PARAMS))
        if unknown:
            raise _invalid(f"unknown output format parameter(s): {', '.join(unknown)}")
        bitrate = _optional_int("bitrate", params.get("bitrate"))
        complexity = _optional_int("complexity", params.get("complexity"))
        encoding, rate = _NAMES[canonical]
        return cls(encoding, rate, bitrate, complexity)

    @property
    def name(self) -> str:
        """The canonical name; ``parse(fmt.name)`` gives this format with default settings."""
        if self.encoding in ("opus", "ogg_opus"):
            return self.encoding
        prefix = {"pcm_s16le": "pcm", "mulaw": "mulaw", "mp3": "mp3"}[self.encoding]
        return f"{prefix}_{self.sample_rate}"

    @property
    def clock_rate(self) -> int:
        """Ticks per second of ``EncodedAudio.timestamp``: the sample rate (Opus: 48 kHz)."""
        return self.sample_rate

    @property
    def mime_type(self) -> str:
        """The media type for HTTP bodies and the session's format announcement."""
        if self.encoding == "pcm_s16le":
            # audio/L16 is big-endian by definition (RFC 2586); ours is little-endian.
            return f"audio/pcm;rate={self.sample_rate};channels=1"
        return {
            "mulaw": "audio/basic",  # RFC 2046: headerless 8-bit mu-law, 8 kHz mono
            "opus": "audio/opus",
            "ogg_opus": "audio/ogg;codecs=opus",
            "mp3": "audio/mpeg",
        }[self.encoding]

    def _checked_bitrate(self) -> int | None:
        bitrate = _optional_int("bitrate", self.bitrate)
        if self.encoding in ("pcm_s16le", "mulaw"):
            if bitrate is not None:
                raise _invalid(f"{self.encoding} has a fixed bitrate; do not set one")
            return None
        if self.encoding == "mp3":
            return _mp3_bitrate(self.sample_rate, bitrate)
        if bitrate is None:
            return OPUS_DEFAULT_BITRATE
        if bitrate not in OPUS_BITRATES:
            raise _invalid(f"opus bitrate must be 6000-510000 bit/s, not {bitrate}")
        return bitrate

    def _checked_complexity(self) -> int | None:
        complexity = _optional_int("complexity", self.complexity)
        if self.encoding not in ("opus", "ogg_opus"):
            if complexity is not None:
                raise _invalid("complexity applies to opus and ogg_opus only")
            return None
        if complexity is None:
            return OPUS_DEFAULT_COMPLEXITY
        if not 0 <= complexity <= 10:
            raise _invalid(f"opus complexity must be 0-10, not {complexity}")
        return complexity


def _mp3_bitrate(sample_rate: int, bitrate: int | None) -> int:
    if bitrate is None:
        return MP3_DEFAULT_BITRATE
    allowed = _MPEG2_KBPS if sample_rate < 32000 else _MPEG1_KBPS
    if bitrate % 1000 or bitrate // 1000 not in allowed:
        kbps = ", ".join(map(str, allowed))
        raise _invalid(
            f"mp3 at {sample_rate} Hz cannot carry {bitrate} bit/s; allowed kbit/s: {kbps}"
        )
    return bitrate


def _int(field: str, value: object) -> int:
    # bool is an int to Python, but "bitrate": true is a client bug, not 1 bit/s.
    if not isinstance(value, int) or isinstance(value, bool):
        raise _invalid(f"{field} must be an integer, not {value!r}")
    return value


def _optional_int(field: str, value: object) -> int | None:
    return None if value is None else _int(field, value)
