"""The curl examples of the Voxtral API reference, pointed at the embedded engine, as shown.

Only the base URL and the key differ; the commands are the reference's own, run by bash.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.audio_checks import assert_speech, decode
from voxgate.upstream.engine.background import BackgroundEngine

pytestmark = [
    pytest.mark.engine_only,
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]

GENERATE = """curl -X POST $BASE/generate \\
  -H "Authorization: Bearer YOUR_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{
    "input": "I am so sorry for your loss. Words cannot express how deeply I feel for you.",
    "voice_id": "82c99ee6-f932-423f-a4a3-d403c8914b8d",
    "response_format": "mp3",
    "speed": 0.9
  }'"""
STREAM = """curl -N -X POST $BASE/stream \\
  -H "Authorization: Bearer YOUR_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{
    "input": "Hello! This audio streams in real time.",
    "voice_id": "82c99ee6-f932-423f-a4a3-d403c8914b8d"
  }'"""
# `base64 -i FILE` is the reference's macOS spelling; GNU base64 says `-w0` (no line breaks,
# which the unquoted $(cat ...) below would otherwise split into several arguments).
CLONE = """base64 -w0 sample.wav > sample.b64

curl -X POST $BASE/voices/clone \\
  -H "Authorization: Bearer YOUR_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{
    "name": "My Podcast Voice",
    "ref_audio": "'$(cat sample.b64)'",
    "language": "en",
    "gender": "male"
  }'"""
# Quoted here: unquoted, the shell reads the reference's "&" as "run in the background".
LIST = """curl "$BASE/voices/mine?page=1&limit=50" \\
  -H "Authorization: Bearer YOUR_API_KEY\""""
UPDATE = """curl -X PATCH $BASE/voices/$VOICE \\
  -H "Authorization: Bearer YOUR_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{"name": "Updated Voice Name", "language": "fr"}'"""
DELETE = """curl -X DELETE $BASE/voices/$VOICE \\
  -H "Authorization: Bearer YOUR_API_KEY\""""


def run(command: str, engine: BackgroundEngine, cwd: Path, voice: str = "") -> str:
    script = command.replace("YOUR_API_KEY", engine.api_key)
    env = {"BASE": engine.base_url, "VOICE": voice, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        ["bash", "-e", "-s"],
        input=script,
        text=True,
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=60,
        check=True,
    )
    return done.stdout


def envelope(output: str) -> dict[str, object]:
    body = json.loads(output)
    assert body["code"] == 0, body
    data: dict[str, object] = body["data"]
    return data


def test_reference_examples_work_as_shown(engine: BackgroundEngine, tmp_path: Path) -> None:
    generated = envelope(run(GENERATE, engine, tmp_path))
    assert generated["format"] == "mp3"
    assert generated["credits_used"] == 76
    mp3 = base64.b64decode(str(generated["audio_data"]))
    assert_speech(decode(mp3))

    events = run(STREAM, engine, tmp_path)
    assert events.count("event: speech.audio.delta") >= 2
    assert events.rstrip().splitlines()[-2] == "event: speech.audio.done"

    # The reference passes the base64 as one argument, which Linux caps at 128 KiB: a
    # compressed sample (as a real user would record) fits, a long 24 kHz WAV would not.
    (tmp_path / "sample.wav").write_bytes(mp3)
    clone = envelope(run(CLONE, engine, tmp_path))
    assert clone["name"] == "My Podcast Voice"
    voice = str(clone["id"])

    listing = envelope(run(LIST, engine, tmp_path))
    assert voice in [v["id"] for v in listing["voices"]]  # type: ignore[attr-defined]
    updated = envelope(run(UPDATE, engine, tmp_path, voice))
    assert (updated["name"], updated["language"]) == ("Updated Voice Name", "fr")
    assert envelope(run(DELETE, engine, tmp_path, voice)) == {"id": voice}
