"""The examples in examples/, run as a user runs them, against a real gateway and engine."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from tests.audio_checks import Decoded, assert_speech, decode
from tests.gateway_harness import Gateway

pytestmark = pytest.mark.engine_only

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ANSWER = "Sure! Your order shipped on Monday, and it should arrive by Thursday."
LONG_ANSWER = " ".join(["This sentence keeps the listener busy for a little while."] * 4)
GREETING = "Your appointment is confirmed."


async def run_example(script: str, gateway: Gateway, *args: str) -> str:
    """Run an example to its end (the gateway serves from this loop meanwhile); its stdout."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / script),
        "--url",
        gateway.ws_url,
        "--key",
        gateway.api_key,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr.decode() + stdout.decode()
    return stdout.decode()


def line_value(output: str, prefix: str) -> str:
    """The rest of the first output line that starts with ``prefix`` (after indentation)."""
    for line in output.splitlines():
        if line.strip().startswith(prefix):
            return line.strip().removeprefix(prefix).strip()
    raise AssertionError(f"no line starting with {prefix!r} in:\n{output}")


def read_wav(path: Path) -> Decoded:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 24000)
    return decode(path.read_bytes())


async def test_agent_streams_tokens_and_saves_the_answer(gateway: Gateway, tmp_path: Path) -> None:
    out = tmp_path / "answer.wav"
    output = await run_example(
        "agent.py", gateway, "--text", ANSWER, "--tokens-per-second", "60", "--out", str(out)
    )
    assert "time to first audio:" in output
    assert "chunk 0 started" in output
    assert "context.done" in output
    decoded = read_wav(out)
    assert_speech(decoded, min_seconds=2.0)
    usage_ms = float(line_value(output, "usage:").split(",")[1].split()[0])
    assert decoded.duration * 1000 == pytest.approx(usage_ms, abs=2)


async def test_agent_barge_in_reports_heard_and_unheard(gateway: Gateway, tmp_path: Path) -> None:
    out = tmp_path / "heard.wav"
    output = await run_example(
        "agent.py",
        gateway,
        *("--text", LONG_ANSWER, "--tokens-per-second", "200", "--out", str(out)),
        *("--pacing", "realtime", "--interrupt-after", "1.0"),
    )
    assert "interrupted:" in output
    heard = line_value(output, "heard:").strip("'\"")
    unheard = line_value(output, "unheard:").strip("'\"")
    assert heard.startswith("This sentence")
    assert unheard
    assert LONG_ANSWER.startswith(heard)
    played_ms = float(line_value(output, "played_ms:"))
    assert 800 <= played_ms <= 1600
    decoded = read_wav(out)  # the agent keeps only what the listener heard
    assert_speech(decoded, min_seconds=0.7)
    assert decoded.duration * 1000 == pytest.approx(played_ms, abs=1)


def summary_of(output: str) -> dict[str, float]:
    summary: dict[str, float] = json.loads(line_value(output, "summary:"))
    return summary


async def test_telephony_opus_packets_are_continuous_across_turns(
    gateway: Gateway, tmp_path: Path
) -> None:
    dump, log = tmp_path / "call.opus", tmp_path / "rtp.jsonl"
    output = await run_example(
        "telephony_bridge.py",
        gateway,
        *("--text", GREETING, "--turns", "2", "--dump", str(dump), "--log", str(log)),
    )
    summary = summary_of(output)
    assert summary["contexts"] == 2
    assert summary["seq_gaps"] == summary["timestamp_gaps"] == 0
    assert summary["interval_ms_median"] == pytest.approx(20, abs=3)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(entries) == summary["packets"]
    # One RTP stream over both turns: seq +1 a packet, timestamps +960 or more, two markers.
    rtp = [e["rtp"] for e in entries]
    assert all((b["seq"] - a["seq"]) % 65536 == 1 for a, b in itertools.pairwise(rtp))
    steps = [(b["timestamp"] - a["timestamp"]) % 2**32 for a, b in itertools.pairwise(rtp)]
    assert min(steps) == 960
    assert sum(r["marker"] for r in rtp) == 2
    decoded = decode(dump.read_bytes())
    assert decoded.codec == "opus"
    assert_speech(decoded, min_seconds=2.0)


async def test_telephony_mulaw_frames_are_20ms_and_continuous(
    gateway: Gateway, tmp_path: Path
) -> None:
    dump, log = tmp_path / "call.ulaw", tmp_path / "rtp.jsonl"
    output = await run_example(
        "telephony_bridge.py",
        gateway,
        *("--mulaw", "--text", GREETING, "--dump", str(dump), "--log", str(log)),
    )
    summary = summary_of(output)
    assert summary["seq_gaps"] == summary["timestamp_gaps"] == 0
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert {e["bytes"] for e in entries} == {160}
    assert [e["timestamp"] for e in entries] == [160 * i for i in range(len(entries))]
    assert all(e["rtp_header"][2:4] in ("80", "00") for e in entries)  # PCMU, payload type 0
    codec = av.CodecContext.create("pcm_mulaw", "r")
    codec.sample_rate, codec.layout = 8000, "mono"
    frames = codec.decode(av.Packet(dump.read_bytes()))
    samples = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]) / 32768
    assert_speech(Decoded(samples.astype(np.float32), 8000, "pcm_mulaw"), min_seconds=1.0)
