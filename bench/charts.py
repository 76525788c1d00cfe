"""Charts of the benchmark figures kept by ``bench/all.py`` (matplotlib, Agg backend).

  webrtc_capacity.png   CPU per stream and send-interval jitter p99 against the number of
                        streams, one line per arm found in the webrtc figures (failed levels
                        marked x), libopus alone beside them
  first_audio.png       time to first audio as distributions: the WebRTC path (push -> first
                        packet, per state the stream was in) and a session's (first token ->
                        first audio, per ledger; realtime_load's sessions per level)
  slow_llm.png          the pauses a listener heard per LLM token rate, per arm and upstream
                        first-byte delay

Every chart names, in its own image, the machine, the date, the commit and the command that
made its figures. A chart whose bench has no figures is not drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def provenance(entry: dict[str, Any]) -> str:
    """The machine, date, commit and command of one bench entry, for a chart's foot."""
    m = entry["machine"]
    return (
        f"{m['cpu']}, {m['cores']} cores, {m['ram_gb']:g} GB, Linux {m['kernel']}, "
        f"Python {m['python']}, steal {m.get('steal_pct', 0):g} %, load {m.get('load', 0):g}\n"
        f"{entry['date']}  commit {entry['commit']}  {entry['command']}"
    )


def footed(fig: Figure, entries: list[dict[str, Any]]) -> None:
    text = "\n".join(provenance(e) for e in entries)
    fig.text(0.01, 0.005, text, fontsize=6.5, va="bottom", ha="left", color="#444444")


def webrtc_capacity(entry: dict[str, Any], path: Path) -> Path:
    arms: dict[str, list[dict[str, Any]]] = entry["figures"]["arms"]
    fig, (cpu_ax, jit_ax) = plt.subplots(1, 2, figsize=(11, 4.8))
    bare: dict[int, list[float]] = {}
    for arm, levels in arms.items():
        ordered = sorted(levels, key=lambda lv: (lv["streams"], lv["attempt"]))
        streams = [lv["streams"] for lv in ordered]
        (line,) = cpu_ax.plot(
            streams, [lv["cpu_per_stream_pct"] for lv in ordered], "o-", label=arm
        )
        jit_ax.plot(streams, [lv["jit_p99_ms"] for lv in ordered], "o-", color=line.get_color())
        for ax, key in ((cpu_ax, "cpu_per_stream_pct"), (jit_ax, "jit_p99_ms")):
            failed = [lv for lv in ordered if not lv["passed"]]
            ax.plot([lv["streams"] for lv in failed], [lv[key] for lv in failed], "x",
                    color="black", markersize=9)  # fmt: skip
        for lv in ordered:
            if lv.get("bare_pct") is not None:
                bare.setdefault(lv["streams"], []).append(lv["bare_pct"])
    if bare:
        n = sorted(bare)
        mean = [sum(bare[k]) / len(bare[k]) for k in n]
        cpu_ax.plot(n, mean, "--", color="grey", label="libopus alone (bare)")
    cpu_ax.set(xlabel="streams", ylabel="CPU per stream, % of one core", xscale="log")
    cpu_ax.set_title("CPU per stream (x: level failed)")
    goal = entry["figures"].get("goals", {}).get("jit_p99_ms", 2.0)
    jit_ax.axhline(goal, color="grey", linestyle=":", label=f"goal {goal:g} ms")
    jit_ax.set(xlabel="streams", ylabel="send-interval jitter p99, ms", xscale="log")
    jit_ax.set_title("send jitter p99 (x: level failed)")
    every = sorted({lv["streams"] for levels in arms.values() for lv in levels})
    for ax in (cpu_ax, jit_ax):
        ax.set_xticks(every, [str(n) for n in every])
        ax.minorticks_off()
    cpu_ax.legend(fontsize=8)
    jit_ax.legend(fontsize=8)
    fig.suptitle("WebRTC streams: voxgate encoding, Opus passthrough, stock aiortc, libopus alone")
    footed(fig, [entry])
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return save(fig, path)


def ecdf(ax: Any, samples: list[float], label: str) -> None:
    ordered = sorted(samples)
    if ordered:
        ax.step(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], where="post",
                label=f"{label} (n {len(ordered)})")  # fmt: skip


def first_audio(kept: dict[str, dict[str, Any]], path: Path) -> Path | None:
    webrtc, session, load = (kept.get(n) for n in ("webrtc", "session_latency", "realtime_load"))
    if not (webrtc or session or load):
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8))
    if webrtc:
        for key, path_name in (("first_audio", "encode"), ("first_audio_passthrough", "pass")):
            turns = webrtc["figures"].get(key, {}).get("turns", [])
            for state in ("dtx", "hangover", "talking"):
                ecdf(
                    left,
                    [t["ms"] for t in turns if t["state"] == state],
                    f"{path_name}, after {state}",
                )
        left.axvline(5, color="grey", linestyle=":", label="goal p99 5 ms")
        left.set(xscale="log", xlabel="push -> first packet sent, ms", ylabel="share of turns")
        left.set_title("WebRTC path, 20 streams speaking turns")
        left.legend(fontsize=8)
    if session:
        for name, ledger in session["figures"]["ledgers"].items():
            ecdf(right, ledger["to_audio"].get("samples", []), f"session, {name} ledger")
    if load:
        for level in load["figures"]["levels"]:
            ecdf(
                right,
                level["ttfa_ms"].get("samples", []),
                f"realtime_load, {level['sessions']} sessions",
            )
    right.set(xlabel="first token -> first audio, ms (tokens at 30/s)", ylabel="share")
    right.set_title("a session's time to first audio")
    right.legend(fontsize=8)
    fig.suptitle("Time to first audio, distributions")
    footed(fig, [e for e in (webrtc, session, load) if e])
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    return save(fig, path)


def slow_llm(entry: dict[str, Any], path: Path) -> Path:
    scenarios = entry["figures"]["scenarios"]
    delays = sorted({s["delay_ms"] for s in scenarios})
    fig, axes = plt.subplots(1, len(delays), figsize=(5.5 * len(delays), 4.5), squeeze=False)
    for ax, delay in zip(axes[0], delays, strict=True):
        chosen = sorted((s for s in scenarios if s["delay_ms"] == delay), key=lambda s: s["rate"])
        arms = list(chosen[0]["arms"]) if chosen else []
        width = 0.8 / max(1, len(arms))
        for i, arm in enumerate(arms):
            xs = [k + i * width for k in range(len(chosen))]
            ax.bar(xs, [s["arms"][arm]["pauses_ms"] for s in chosen], width, label=arm)
        ax.set_xticks([k + width * (len(arms) - 1) / 2 for k in range(len(chosen))])
        ax.set_xticklabels([f"{s['rate']:g}" for s in chosen])
        ax.set(xlabel="LLM tokens/s (4 characters each)", ylabel="pauses heard, ms (median)")
        ax.set_title(f"upstream first byte +{delay:g} ms")
        ax.legend(fontsize=8)
    fig.suptitle(f"Pauses heard in a {entry['figures']['text_chars']}-character answer")
    footed(fig, [entry])
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return save(fig, path)


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw(kept: dict[str, Any], out: Path) -> list[Path]:
    """Every chart whose figures are in ``kept`` (``docs/bench/figures.json``), into ``out``."""
    benches: dict[str, dict[str, Any]] = kept.get("benches", {})
    drawn = []
    if "webrtc" in benches:
        drawn.append(webrtc_capacity(benches["webrtc"], out / "webrtc_capacity.png"))
    chart = first_audio(benches, out / "first_audio.png")
    if chart is not None:
        drawn.append(chart)
    if "slow_llm" in benches:
        drawn.append(slow_llm(benches["slow_llm"], out / "slow_llm.png"))
    return drawn
