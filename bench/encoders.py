"""CPU per second of audio for every sink encoder, and Opus against bare libopus.

Each encoder gets a speech-like signal (24 kHz mono s16le) twice: in 20 ms pieces, the
playout buffer's cadence, and in 240 ms bursts, the shape of upstream deltas. The figure is
process CPU time (time.process_time) per second of audio, best of several rounds, so a
noisy neighbour costs a round rather than the result.

The Opus comparison runs voxgate's encoder and a bare ``av.CodecContext`` libopus loop
(same settings, same 20 ms pieces, packet bytes taken) side by side, alternating within
each round. DESIGN.md's budget for the whole WebRTC path is 1.3x bare libopus; the
encoder's share of that should be close to 1.0x.

    python bench/encoders.py [--seconds 20] [--rounds 5] [--json PATH]

``--json PATH`` writes {"formats": {name: {"pieces_20ms": ms/s, "bursts_240ms": ms/s}},
"opus": {"voxgate_ms_per_s", "bare_ms_per_s", "ratio_best", "ratio_median"}}.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import av
import numpy as np
from figures import add_json_option, write_json

from voxgate.codecs.encoders import OutputFormat, make_encoder

RATE = 24000
NAMES = (
    "pcm_24000",
    "pcm_16000",
    "pcm_8000",
    "pcm_48000",
    "mulaw_8000",
    "opus",
    "ogg_opus",
    "mp3_24000",
)


def speech_like(seconds: float) -> bytes:
    """Voiced syllables: gliding pitch, a moving formant, 4 Hz syllables and a little hiss."""
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 125 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    formant = 600 + 250 * np.sin(2 * np.pi * 3.1 * t)
    k = np.arange(1, 31)[:, None]
    voiced = np.sum((np.exp(-(((k * f0 - formant) / 200) ** 2)) + 0.03) * np.sin(k * phase), 0)
    hiss = np.random.default_rng(1).normal(0, 0.05, len(t))
    signal = (voiced / np.max(np.abs(voiced)) + hiss) * np.sin(np.pi * 4 * t) ** 2
    return bytes((signal / np.max(np.abs(signal)) * 16000).astype("<i2").tobytes())


def cut(pcm: bytes, ms: int) -> list[bytes]:
    size = 2 * RATE * ms // 1000
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def encoder_run(name: str, pieces: list[bytes]) -> Callable[[], None]:
    def run() -> None:
        encoder = make_encoder(OutputFormat.parse(name))
        for piece in pieces:
            encoder.encode(piece)
        encoder.flush()

    return run


def bare_opus_run(pieces: list[bytes]) -> Callable[[], None]:
    """What any PyAV user must do at least: a frame per 20 ms, encode, take the bytes."""

    def run() -> None:
        codec = av.CodecContext.create("libopus", "w")
        codec.sample_rate = RATE
        codec.layout = "mono"
        codec.format = "s16"
        codec.bit_rate = 32000
        codec.options = {"application": "voip", "frame_duration": "20", "compression_level": "5"}
        codec.open()
        for piece in pieces:
            samples = np.frombuffer(piece, dtype="<i2").reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            frame.sample_rate = RATE
            for packet in codec.encode(frame):
                bytes(packet)

    return run


def cpu_seconds(run: Callable[[], None]) -> float:
    start = time.process_time()
    run()
    return time.process_time() - start


def report_formats(pcm: bytes, seconds: float, rounds: int) -> dict[str, dict[str, float]]:
    print(f"{'format':<12} {'20 ms pieces':>14} {'240 ms bursts':>14}   CPU ms per s of audio")
    table = {}
    for name in NAMES:
        figures = []
        for ms in (20, 240):
            run = encoder_run(name, cut(pcm, ms))
            figures.append(min(cpu_seconds(run) for _ in range(rounds)) / seconds * 1000)
        print(f"{name:<12} {figures[0]:>14.3f} {figures[1]:>14.3f}")
        table[name] = {"pieces_20ms": figures[0], "bursts_240ms": figures[1]}
    return table


def report_opus_ratio(pcm: bytes, seconds: float, rounds: int) -> dict[str, float]:
    pieces = cut(pcm, 20)
    ours, bare = encoder_run("opus", pieces), bare_opus_run(pieces)
    ours_cpu, bare_cpu = [], []
    for _ in range(rounds):
        ours_cpu.append(cpu_seconds(ours))
        bare_cpu.append(cpu_seconds(bare))
    ratios = [o / b for o, b in zip(ours_cpu, bare_cpu, strict=True)]
    per_s = 1000 / seconds
    print()
    print(f"opus, 20 ms pieces, {rounds} alternating rounds of {seconds:g} s")
    print(f"  voxgate OpusEncoder   best {min(ours_cpu) * per_s:7.3f} ms/s  "
          f"median {statistics.median(ours_cpu) * per_s:7.3f} ms/s")  # fmt: skip
    print(f"  bare av.CodecContext  best {min(bare_cpu) * per_s:7.3f} ms/s  "
          f"median {statistics.median(bare_cpu) * per_s:7.3f} ms/s")  # fmt: skip
    print(f"  ratio voxgate / bare  best-vs-best {min(ours_cpu) / min(bare_cpu):.3f}  "
          f"median of rounds {statistics.median(ratios):.3f}  (path budget <= 1.3)")  # fmt: skip
    return {
        "voxgate_ms_per_s": min(ours_cpu) * per_s,
        "bare_ms_per_s": min(bare_cpu) * per_s,
        "ratio_best": min(ours_cpu) / min(bare_cpu),
        "ratio_median": statistics.median(ratios),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=5)
    add_json_option(parser)
    args = parser.parse_args()
    pcm = speech_like(args.seconds)
    encoder_run("opus", cut(pcm, 20))()  # warm-up: first use loads codecs and tables
    formats = report_formats(pcm, args.seconds, args.rounds)
    opus = report_opus_ratio(pcm, args.seconds, args.rounds)
    write_json(args.json, {"seconds": args.seconds, "formats": formats, "opus": opus})


if __name__ == "__main__":
    main()
