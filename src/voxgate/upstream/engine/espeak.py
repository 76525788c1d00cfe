"""Speech from libespeak-ng (the ``espeakng-loader`` wheel), with word timings.

espeak-ng keeps its state in C globals and is not thread-safe, so every call into it runs on
the single worker thread of an ``Espeak`` and, across instances, under one process-wide lock.
``Synthesizer`` is the asyncio face: it never lets espeak or PyAV run on the event loop.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

import espeakng_loader
import numpy as np
import numpy.typing as npt

from voxgate.errors import AudioError
from voxgate.upstream.engine import audio
from voxgate.upstream.engine.voices import Prosody

BASE_WPM: Final = 175
MIN_WPM: Final = 80
MAX_WPM: Final = 450

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS: Final = 2
_INITIALIZE_DONT_EXIT: Final = 0x8000  # report errors instead of calling exit()
_POS_CHARACTER: Final = 1
_CHARS_UTF8: Final = 1
_ENDPAUSE: Final = 0x1000  # keep the pause after the last sentence: chunks are concatenated
_EVENT_LIST_TERMINATED: Final = 0
_EVENT_WORD: Final = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
_EE_OK: Final = 0


@dataclass(frozen=True)
class WordTiming:
    """A word of the input: ``text[char_start:char_end]``, heard from ``sample_start`` on."""

    char_start: int
    char_end: int
    sample_start: int


@dataclass(frozen=True, eq=False)
class Synthesis:
    """Mono int16 speech, its rate, and where each word starts in it."""

    pcm: npt.NDArray[np.int16]
    sample_rate: int
    words: tuple[WordTiming, ...]

    def __post_init__(self) -> None:
        if self.pcm.dtype != np.int16 or self.pcm.ndim != 1:
            raise ValueError(f"pcm must be mono int16, got {self.pcm.dtype} {self.pcm.shape}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        self.pcm.flags.writeable = False

    @property
    def seconds(self) -> float:
        return self.pcm.size / self.sample_rate


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based, in characters (code points) for UTF-8
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),  # samples since the start of this espeak_Synth call
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass
class _Job:
    """What the C callback collects for one espeak_Synth call."""

    cancel: threading.Event
    chunks: list[npt.NDArray[np.int16]] = dataclasses.field(default_factory=list)
    words: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)


class _Library:
    """The loaded and initialised libespeak-ng. Use only under ``_LOCK``."""

    def __init__(self) -> None:
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._declare()
        data_path = espeakng_loader.get_data_path().encode()
        rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, _INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise AudioError("espeak-ng failed to initialise", code="synthesis_failed")
        self.sample_rate: int = rate
        self._job: _Job | None = None
        # ctypes frees a callback with its last Python reference; espeak keeps the pointer.
        self._callback = _SynthCallback(self._on_audio)
        self._lib.espeak_SetSynthCallback(self._callback)

    def _declare(self) -> None:
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip

    def synthesize(self, text: str, prosody: Prosody, rate_wpm: int, job: _Job) -> Synthesis:
        if not text.strip():
            return Synthesis(np.zeros(0, np.int16), self.sample_rate, ())
        self._configure(prosody, rate_wpm)
        # NUL would end the C string early; a space keeps every later character offset.
        encoded = text.replace("\0", " ").encode("utf-8")
        self._job = job
        try:
            status = self._lib.espeak_Synth(
                encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None
            )
        finally:
            self._job = None
        if status != _EE_OK:
            raise AudioError(f"espeak-ng synthesis failed ({status})", code="synthesis_failed")
        pcm = np.concatenate(job.chunks) if job.chunks else np.zeros(0, np.int16)
        return Synthesis(pcm, self.sample_rate, _word_timings(text, job.words, pcm.size))

    def _configure(self, prosody: Prosody, rate_wpm: int) -> None:
        name = prosody.espeak_voice + (f"+{prosody.variant}" if prosody.variant else "")
        if self._lib.espeak_SetVoiceByName(name.encode()) != _EE_OK:
            raise AudioError(f"espeak-ng has no voice {name!r}", code="synthesis_failed")
        # After the voice: selecting a voice may reset these.
        for parameter, value in (
            (_PARAM_RATE, rate_wpm),
            (_PARAM_PITCH, prosody.pitch),
            (_PARAM_RANGE, prosody.pitch_range),
            (_PARAM_VOLUME, prosody.volume),
        ):
            self._lib.espeak_SetParameter(parameter, value, 0)

    def _on_audio(
        self, wav: ctypes._Pointer[ctypes.c_short], count: int, events: ctypes._Pointer[_Event]
    ) -> int:
        job = self._job
        if job is None:
            return 1
        if count > 0 and wav:
            # Copied out as bytes: numpy.ctypeslib.as_array leaves each pointer in a
            # reference cycle, one per callback, for the garbage collector to find.
            job.chunks.append(np.frombuffer(ctypes.string_at(wav, count * 2), dtype=np.int16))
        index = 0
        while events[index].type != _EVENT_LIST_TERMINATED:
            event = events[index]
            if event.type == _EVENT_WORD:
                job.words.append((event.text_position, event.length, event.sample))
            index += 1
        return 1 if job.cancel.is_set() else 0  # 1 asks espeak to abandon this text


_LOCK = threading.Lock()
_library: _Library | None = None


def _loaded_library() -> _Library:
    global _library  # the C library itself is process-global
    if _library is None:
        _library = _Library()
    return _library


def _word_timings(
    text: str, raw: list[tuple[int, int, int]], total_samples: int
) -> tuple[WordTiming, ...]:
    """Turn espeak WORD events into ordered, non-overlapping spans of ``text``.

    espeak repeats a word when it reads it as several ("1990", "5.20") and reports spans that
    include spaces (emoji names), so overlaps are merged into the first and spans trimmed.
    """
    words: list[WordTiming] = []
    for position, length, sample in raw:
        start = min(max(position - 1, 0), len(text))
        end = min(start + max(length, 0), len(text))
        span = text[start:end]
        start, end = start + len(span) - len(span.lstrip()), start + len(span.rstrip())
        if start >= end or (words and start < words[-1].char_end):
            continue
        floor = words[-1].sample_start if words else 0
        words.append(WordTiming(start, end, min(max(sample, floor), total_samples)))
    return tuple(words)


class Espeak:
    """Blocking espeak-ng synthesis at its native rate (22050 Hz), on one worker thread."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="espeak")

    def synthesize(self, text: str, prosody: Prosody, rate_wpm: int) -> Synthesis:
        """Speak ``text`` with ``prosody`` at ``rate_wpm`` words a minute (80–450)."""
        return self.submit(text, prosody, rate_wpm).result()

    def submit(
        self, text: str, prosody: Prosody, rate_wpm: int, cancel: threading.Event | None = None
    ) -> Future[Synthesis]:
        """Queue a synthesis; setting ``cancel`` stops it early (its result is then partial)."""
        if not MIN_WPM <= rate_wpm <= MAX_WPM:
            raise ValueError(f"rate must be {MIN_WPM}–{MAX_WPM} wpm, got {rate_wpm}")
        job = _Job(cancel or threading.Event())
        return self._executor.submit(self._run, text, prosody, rate_wpm, job)

    def close(self) -> None:
        """Finish the synthesis under way, drop queued ones, stop the worker thread."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def _run(text: str, prosody: Prosody, rate_wpm: int, job: _Job) -> Synthesis:
        with _LOCK:
            return _loaded_library().synthesize(text, prosody, rate_wpm, job)


class Synthesizer:
    """Asyncio facade: espeak speech at any speed and output rate, off the event loop."""

    def __init__(self, espeak: Espeak | None = None) -> None:
        self._owns_espeak = espeak is None
        self._espeak = espeak or Espeak()
        # One thread for resampling and stretching: more would only fight the event loop for
        # the GIL, and this one still overlaps with espeak speaking the next text.
        self._audio_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth-audio")

    async def synthesize(
        self, text: str, prosody: Prosody, speed: float, sample_rate: int = 24000
    ) -> Synthesis:
        """Speak ``text``; ``speed`` (0.25–4.0, checked by the caller) divides the duration."""
        wanted_wpm = BASE_WPM * prosody.rate * speed
        rate_wpm = min(max(round(wanted_wpm), MIN_WPM), MAX_WPM)
        cancel = threading.Event()
        try:
            native = await asyncio.wrap_future(self._espeak.submit(text, prosody, rate_wpm, cancel))
        except asyncio.CancelledError:
            cancel.set()  # a barge-in must not keep the one espeak thread busy
            raise
        # espeak covers the speed it can; atempo covers the rest, keeping the pitch.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._audio_executor, _adapted, native, wanted_wpm / rate_wpm, sample_rate
        )

    async def close(self) -> None:
        """Stop the worker threads (espeak's only if this synthesizer created it)."""
        await asyncio.to_thread(self._audio_executor.shutdown, wait=True, cancel_futures=True)
        if self._owns_espeak:
            await asyncio.to_thread(self._espeak.close)


def _adapted(native: Synthesis, tempo: float, sample_rate: int) -> Synthesis:
    pcm = audio.time_stretch(native.pcm, native.sample_rate, tempo)
    pcm = audio.resample(pcm, native.sample_rate, sample_rate)
    scale = pcm.size / native.pcm.size if native.pcm.size else 0.0
    words = tuple(
        dataclasses.replace(word, sample_start=min(round(word.sample_start * scale), pcm.size))
        for word in native.words
    )
    return Synthesis(pcm, sample_rate, words)
