"""The demo page at ``/``, as a new user meets it: Chromium, WebRTC, a real gateway.

What the browser itself measures is the evidence: the peer connection's ``getStats()``
inbound audio (packets, samples, level, energy), read in the page. The page's own figures
and messages are then checked against it.
"""

from __future__ import annotations

import math
import re
import struct
import wave
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, Route, expect

from tests.browser.conftest import CHROMIUM, Gateway

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs Debian Chromium at {CHROMIUM}"),
    pytest.mark.timeout(120),
]

SHORT_TEXT = "Hello from voxgate. This is live speech over WebRTC."
LONG_TEXT = (
    "This answer is long on purpose, so that the listener can cut it short. "
    "It goes on about the weather, the traffic on the way home, and what is for dinner, "
    "and it would keep going for a good while if nobody stopped it."
)
STREAM_TEXT = (
    "Streaming works like a language model writing its answer: a few words at a time, "
    "and the voice starts long before the last word has arrived."
)
SPEECH_LEVEL = 0.05  # getStats() audioLevel of speech: it peaks at 0.3 to 0.9 here
SILENCE_LEVEL = 0.01
SPEECH_RMS = 0.02  # an analyser's RMS of speech: 0.05 to 0.2 here
SILENCE_RMS = 0.002  # the gateway's silence decodes to exact zeros
INTERRUPT_BUDGET_MS = 300
STATS_DECAY_MS = 400  # audioLevel: up to 100 ms to take the last peak, 300 ms to decay

INBOUND_AUDIO = """async () => {
  const stats = await window.voxgate.pc.getStats();
  for (const r of stats.values()) {
    if (r.type === 'inbound-rtp' && r.kind === 'audio') {
      return {packets: r.packetsReceived, samples: r.totalSamplesReceived,
              level: r.audioLevel ?? 0, energy: r.totalAudioEnergy ?? 0,
              duration: r.totalSamplesDuration ?? 0, lost: r.packetsLost ?? 0,
              discarded: r.packetsDiscarded ?? 0,
              delay: r.jitterBufferDelay ?? 0, emitted: r.jitterBufferEmittedCount ?? 0};
    }
  }
  return null;
}"""

# Two views of what the browser receives, sampled side by side while `click` is pressed:
# - an AnalyserNode of the test's own on the received track: RMS of its last 5 ms, every 5 ms;
# - getStats() inbound-rtp audioLevel, every 10 ms. WebRTC computes it as the peak of each
#   100 ms, held and divided by 4 every 100 ms once the sound stops, so it lags the sound.
WATCH_LEVELS = """async ({ms, click}) => {
  const sleep = (t) => new Promise((resolve) => setTimeout(resolve, t));
  const receiver = window.voxgate.pc.getReceivers().find((r) => r.track?.kind === 'audio');
  const audio = new AudioContext();
  await audio.resume();
  const analyser = audio.createAnalyser();
  analyser.fftSize = 256;
  audio.createMediaStreamSource(new MediaStream([receiver.track])).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  await sleep(60);  // let the analyser fill
  const level = async () => {
    const stats = await window.voxgate.pc.getStats();
    for (const r of stats.values()) {
      if (r.type === 'inbound-rtp' && r.kind === 'audio') return r.audioLevel ?? 0;
    }
    return 0;
  };
  const traces = {analyser: [], stats: []};
  const start = performance.now();
  const timer = setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    const power = samples.reduce((sum, x) => sum + x * x, 0) / samples.length;
    traces.analyser.push([performance.now() - start, Math.sqrt(power)]);
  }, 5);
  if (click) document.getElementById(click).click();
  while (performance.now() - start < ms) {
    traces.stats.push([performance.now() - start, await level()]);
    await sleep(10);
  }
  clearInterval(timer);
  await audio.close();
  return traces;
}"""


async def open_demo(page: Page, gateway: Gateway) -> None:
    await page.goto(gateway.url + "/")
    await page.wait_for_function("window.voxgate?.state === 'ready'", timeout=15_000)


async def inbound_audio(page: Page) -> dict[str, float]:
    stats: dict[str, float] | None = await page.evaluate(INBOUND_AUDIO)
    assert stats is not None, "no inbound-rtp audio in getStats()"
    return stats


Trace = list[tuple[float, float]]  # (ms since the start, level)


async def watch_levels(page: Page, ms: int, click: str | None = None) -> dict[str, Trace]:
    """The analyser and getStats() level traces for ``ms``; ``click`` a button at the start."""
    traces: dict[str, Trace] = await page.evaluate(WATCH_LEVELS, {"ms": ms, "click": click})
    return traces


def silent_from(trace: Trace, below: float) -> float | None:
    """When the level went under ``below`` for good, or None if it is not there at the end."""
    for i, (at, _) in enumerate(trace):
        if all(level < below for _, level in trace[i:]):
            return at
    return None


def js_round(ms: float) -> int:
    """As the page's Math.round: halves go up (Python's round() goes to even)."""
    return math.floor(ms + 0.5)


def rounded(trace: Trace) -> list[tuple[int, float]]:
    return [(round(at), round(level, 4)) for at, level in trace]


async def turn(page: Page) -> dict[str, Any]:
    summary: dict[str, Any] = await page.evaluate("window.voxgate.turn")
    return summary


def write_tone(path: Path, seconds: float) -> Path:
    """A gliding tone as 16 kHz mono WAV: audio any decoder reads, of a known duration."""
    rate = 16_000
    samples = (
        int(9000 * math.sin(2 * math.pi * (170 + 30 * math.sin(i / 3000)) * i / rate))
        for i in range(int(rate * seconds))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return path


async def test_the_page_connects_over_webrtc(tab: Page, gateway: Gateway) -> None:
    await open_demo(tab, gateway)
    await expect(tab.locator("#connection-label")).to_have_text("Connected: ready to speak")
    await expect(tab.locator("#peer-state")).to_have_text("connected")
    await expect(tab.locator("#channel-state")).to_have_text("open")
    assert await tab.evaluate("window.voxgate.pc.connectionState") == "connected"
    assert await tab.evaluate("window.voxgate.dc.label") == "voxgate"
    await expect(tab.locator("#language option:checked")).to_have_text("English (en)")
    await expect(tab.locator("#voice optgroup[label=Presets] option").first).to_contain_text("Jane")
    await expect(tab.locator("#credits-left")).to_have_text(re.compile(r"^[\d,]+$"))
    await expect(tab.locator("#alert")).to_be_hidden()
    # The audio track is there before any text: between turns a DTX frame every 400 ms.
    first = await inbound_audio(tab)
    await tab.wait_for_timeout(900)
    assert (await inbound_audio(tab))["packets"] >= first["packets"] + 2


async def test_speak_plays_audio_that_the_browser_receives(tab: Page, gateway: Gateway) -> None:
    await open_demo(tab, gateway)
    balance = await tab.evaluate("window.voxgate.balance")
    await tab.fill("#text", SHORT_TEXT)
    before = await inbound_audio(tab)
    await tab.focus("#text")
    await tab.keyboard.press("Control+Enter")  # the keyboard path of "Speak"

    loudest = 0.0
    for _ in range(30):
        await tab.wait_for_timeout(50)
        loudest = max(loudest, (await inbound_audio(tab))["level"])
    after = await inbound_audio(tab)
    assert after["packets"] > before["packets"]
    assert after["samples"] > before["samples"]
    assert after["energy"] > before["energy"]
    assert loudest > SPEECH_LEVEL, f"inbound audioLevel stayed at {loudest}"

    await tab.wait_for_function("window.voxgate.turn?.outcome === 'done'", timeout=15_000)
    spoken = await turn(tab)
    assert 0 < spoken["ttfaMs"] < 2000
    # The turn started out of DTX, re-timing the RTP clock: Chromium's NetEq lost and
    # discarded nothing, and its jitter buffer stayed short.
    done = await inbound_audio(tab)
    print("inbound-rtp:", done)
    assert done["lost"] == 0
    assert done["discarded"] == 0
    assert done["delay"] / max(done["emitted"], 1) < 0.15
    await expect(tab.locator("#ttfa")).to_have_text(f"{js_round(spoken['ttfaMs'])} ms")
    characters = spoken["usage"]["characters"]
    assert 0 < characters <= len(SHORT_TEXT)
    # What it cost: the session's credits, and the account's balance down by as much.
    await tab.wait_for_function(
        "([used, left]) => window.voxgate.creditsUsed === used && window.voxgate.balance === left",
        arg=[characters, balance - characters],
        timeout=5000,
    )
    await expect(tab.locator("#credits-used")).to_have_text(str(characters))
    await expect(tab.locator(".chunk.spoken").first).to_be_visible()


async def test_interrupt_silences_the_audio_and_shows_what_was_heard(
    tab: Page, gateway: Gateway
) -> None:
    await open_demo(tab, gateway)
    await tab.fill("#text", LONG_TEXT)
    await tab.click("#speak")
    await tab.wait_for_function("window.voxgate.turn?.ttfaMs != null", timeout=10_000)
    playing = await watch_levels(tab, 700)
    assert max(level for _, level in playing["analyser"]) > SPEECH_RMS
    assert max(level for _, level in playing["stats"]) > SPEECH_LEVEL

    traces = await watch_levels(tab, 1000, click="interrupt")
    sound_stopped = silent_from(traces["analyser"], SILENCE_RMS)
    assert sound_stopped is not None, f"still audible 1 s on: {rounded(traces['analyser'])}"
    assert sound_stopped <= INTERRUPT_BUDGET_MS, rounded(traces["analyser"])
    # audioLevel: within the budget plus its own decay (3 steps of 100 ms take speech under
    # 0.01), and then no sound at all any more.
    level_fell = silent_from(traces["stats"], SILENCE_LEVEL)
    assert level_fell is not None, f"audioLevel never fell: {rounded(traces['stats'])}"
    assert level_fell <= INTERRUPT_BUDGET_MS + STATS_DECAY_MS, rounded(traces["stats"])

    await tab.wait_for_function("window.voxgate.turn?.outcome === 'interrupted'", timeout=5000)
    result = await turn(tab)
    heard, unheard = result["heard"], result["unheard"]
    assert heard.strip(), "nothing was reported as heard after a second of speech"
    assert unheard.strip(), "the whole text was reported as heard"
    assert " ".join(LONG_TEXT.split()).startswith(" ".join(heard.split()))
    await expect(tab.locator("#outcome")).to_be_visible()
    await expect(tab.locator("#heard")).to_have_text(heard)
    await expect(tab.locator("#unheard")).to_have_text(unheard)
    # The page's own measure, from its AnalyserNode, agrees.
    await tab.wait_for_function("window.voxgate.turn?.stopMs != null", timeout=3000)
    assert (await turn(tab))["stopMs"] <= INTERRUPT_BUDGET_MS
    await expect(tab.locator("#stop")).to_have_text(f"{js_round((await turn(tab))['stopMs'])} ms")


async def test_stream_like_an_llm_speaks_before_the_last_token(tab: Page, gateway: Gateway) -> None:
    await open_demo(tab, gateway)
    await tab.fill("#text", STREAM_TEXT)
    await tab.locator("#rate").fill("10")
    await expect(tab.locator("#rate-value")).to_have_text("10 tokens/s")
    await tab.click("#stream")
    await tab.wait_for_function("window.voxgate.turn?.ttfaMs != null", timeout=10_000)
    first_sound = await turn(tab)
    assert first_sound["tokensSent"] < first_sound["tokensTotal"] / 2
    await tab.wait_for_timeout(700)  # a few words
    await expect(tab.locator(".turn-text .pending")).not_to_be_empty()

    await tab.keyboard.press("Escape")  # the keyboard path of "Interrupt"
    await tab.wait_for_function("window.voxgate.turn?.outcome === 'interrupted'", timeout=5000)
    stopped = await turn(tab)
    assert stopped["heard"].strip()
    await tab.wait_for_timeout(300)
    assert (await turn(tab))["tokensSent"] == stopped["tokensSent"] < stopped["tokensTotal"]


async def test_dev_tokens_off_is_explained(tab: Page, gateway_without_dev_tokens: Gateway) -> None:
    await tab.goto(gateway_without_dev_tokens.url + "/")
    alert = tab.locator("#alert")
    await expect(alert).to_be_visible()
    await expect(tab.locator("#alert-title")).to_have_text("Dev tokens are off")
    await expect(alert).to_contain_text("VOXGATE_DEV_TOKENS")
    await tab.click("#speak")  # trying anyway gets the same answer, not silence
    await expect(tab.locator("#alert-title")).to_have_text("Dev tokens are off")
    await expect(tab.locator("#connection-label")).to_have_text("Not connected")


async def test_a_refused_token_is_explained(tab: Page, gateway: Gateway) -> None:
    """A token the gateway does not know: WHEP answers 401, the page shows its message."""

    async def forged_token(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        body["data"]["token"] = "vgct_" + "x" * 43
        await route.fulfill(response=response, json=body)

    await tab.route("**/v1/dev/client_token", forged_token)
    await tab.goto(gateway.url + "/")
    await expect(tab.locator("#alert-title")).to_have_text("The client token was refused")
    await expect(tab.locator("#alert-hint")).to_contain_text("Reconnect")
    await expect(tab.locator("#connection-label")).to_have_text("Not connected")
    assert await tab.evaluate("window.voxgate.state") == "failed"


async def test_upstream_down_is_explained_instead_of_silence(
    tab: Page, gateway_with_upstream_down: Gateway
) -> None:
    await open_demo(tab, gateway_with_upstream_down)
    await expect(tab.locator("#alert-title")).to_have_text("The TTS upstream is down")
    await expect(tab.locator("#alert-message")).to_contain_text("Cannot list the voices")
    await tab.click("#speak")
    await expect(tab.locator(".chunk.failed").first).to_contain_text(
        "upstream_unavailable", timeout=20_000
    )
    await expect(tab.locator("#alert-title")).to_have_text("The TTS upstream is down")
    await expect(tab.locator("#alert")).to_contain_text("VOXTRAL_BASE_URL")


async def test_cloning_from_a_too_short_recording_says_why(
    tab: Page, gateway: Gateway, tmp_path: Path
) -> None:
    await open_demo(tab, gateway)
    await tab.click("#clone summary")
    await tab.fill("#clone-name", "Too short")
    await tab.set_input_files("#clone-file", write_tone(tmp_path / "short.wav", 1.0))
    await tab.click("#clone-submit")
    status = tab.locator("#clone-status")
    await expect(status).to_have_attribute("data-kind", "error")
    await expect(status).to_contain_text("Cannot clone from this recording")
    await expect(status).to_contain_text("5 to 30 s")


async def test_choosing_a_language_picks_its_voices_and_a_new_session(
    tab: Page, gateway: Gateway
) -> None:
    await open_demo(tab, gateway)
    first_session = await tab.evaluate("window.voxgate.sessionId")
    await tab.select_option("#language", "fr")
    await expect(tab.locator("#text")).to_have_value(re.compile(r"^Merci de votre appel\."))
    await expect(tab.locator("#clone-language")).to_have_value("fr")
    voice = tab.locator("#voice option:checked")
    name = (await voice.text_content() or "").split(" · ")[0]
    presets: list[dict[str, Any]] = await tab.evaluate(
        "fetch('/v1/dev/voices').then((r) => r.json()).then((b) => b.data.presets)"
    )
    french = {p["id"] for p in presets if p.get("language") == "fr"}
    listed = await tab.locator("#voice option").evaluate_all("(all) => all.map((o) => o.value)")
    assert french
    assert set(listed) == french
    # The voice is fixed per session: the page opened a new one with it.
    await expect(tab.locator("#voice-note")).to_contain_text(f"Session: {name}")
    assert await tab.evaluate("window.voxgate.state") == "ready"
    assert await tab.evaluate("window.voxgate.sessionId") != first_session


async def test_a_cloned_voice_becomes_the_session_voice(
    tab: Page, gateway: Gateway, tmp_path: Path
) -> None:
    await open_demo(tab, gateway)
    first_session = await tab.evaluate("window.voxgate.sessionId")
    await tab.click("#clone summary")
    await tab.fill("#clone-name", "Tone")
    await tab.set_input_files("#clone-file", write_tone(tmp_path / "tone.wav", 6.0))
    await tab.click("#clone-submit")
    await expect(tab.locator("#clone-status")).to_have_attribute("data-kind", "ok")
    await expect(
        tab.locator("#voice optgroup[label='Your cloned voices'] option:checked")
    ).to_have_text("Tone · cloned")
    # A new session (tokens are single-use, the voice is fixed per session) with that voice.
    await expect(tab.locator("#voice-note")).to_have_text("Session: Tone at 1.00×")
    assert await tab.evaluate("window.voxgate.state") == "ready"
    assert await tab.evaluate("window.voxgate.sessionId") != first_session
    await tab.fill("#text", "A cloned voice.")
    await tab.click("#speak")
    await tab.wait_for_function("window.voxgate.turn?.ttfaMs != null", timeout=10_000)
    await tab.wait_for_function("window.voxgate.turn?.outcome === 'done'", timeout=15_000)
