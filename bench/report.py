"""The README's measured tables, rendered from the figures ``bench/all.py`` keeps.

Each block of README.md between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` is
replaced by ``BLOCKS[NAME](benches)``: the text around the blocks is left as it is. A bench
without figures renders as "not measured" rather than failing, so one missing bench does
not stop the others' tables.

  summary       the "Measured performance" table, a row per figure and the command
  webrtc        the WebRTC table, a row per arm and number of streams
  webrtc-notes  first audio on the WebRTC path and the budget it is held to
  segmentation  per aggregator: precision, recall, changed cases, first chunk, µs/token
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Benches = dict[str, dict[str, Any]]
MISSING = "not measured"


def figures(benches: Benches, name: str) -> dict[str, Any] | None:
    entry = benches.get(name)
    return entry["figures"] if entry else None


def measured(benches: Benches, name: str) -> tuple[dict[str, Any] | None, str]:
    """A bench's figures (None if it has none) and its command, as the table shows it."""
    return figures(benches, name), f"`python bench/{name}.py`"


def num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def tail(summary: dict[str, Any], digits: int = 1) -> str:
    """Like "0.8 ms p50, 1.3 ms p99 (n 280)"; the max in place of a p99 not given."""
    second = ("p99", summary["p99"]) if summary.get("p99") is not None else ("max", summary["max"])
    return (
        f"{num(summary['p50'], digits)} ms p50, {num(second[1], digits)} ms {second[0]} "
        f"(n {summary['n']})"
    )


def joined(values: list[Any], form: str = "{}") -> str:
    return " / ".join(form.format(v) for v in values)


def span(values: list[float], digits: int = 2, unit: str = "") -> str:
    low, high = min(values), max(values)
    if f"{low:.{digits}f}" == f"{high:.{digits}f}":
        return f"{low:.{digits}f}{unit}"
    return f"{low:.{digits}f}–{high:.{digits}f}{unit}"


# -- the summary table --------------------------------------------------------------------


def session_rows(benches: Benches) -> list[tuple[str, str, str]]:
    f, command = measured(benches, "session_latency")
    if f is None:
        return [("gateway work, first token to first audio", MISSING, command)]
    ledgers = f["ledgers"]
    mem, red = ledgers.get("in-process"), ledgers.get("redis")

    def both(key: str, digits: int = 1) -> str:
        text = f"{tail(mem[key], digits)} in-process"
        return text + (f"; {tail(red[key], digits)} Redis" if red else "")

    ratio = f"{mem['ratio']['p50']:.2f} (in-process)"
    if red:
        ratio += f", {red['ratio']['p50']:.2f} (Redis)"
    upstream = mem["upstream_fb"]["p50"]
    return [
        ("gateway work, token completing the first chunk → chunk sent upstream",
         both("to_upstream"), command),
        ("gateway work, upstream's first PCM → first audio out of the session",
         both("after_upstream"), "same"),
        (f"gateway-added time ÷ upstream's own first-byte time (engine: {upstream:.0f} ms p50), "
         "median", ratio, "same"),
    ]  # fmt: skip


def load_rows(benches: Benches) -> list[tuple[str, str, str]]:
    f, command = measured(benches, "realtime_load")
    if f is None:
        return [("time to first audio under load", MISSING, command)]
    levels = f["levels"]
    counts = joined([lv["sessions"] for lv in levels])
    ttfa = "; ".join(f"{lv['sessions']}: {tail(lv['ttfa_ms'], 0)}" for lv in levels)
    cpu = " / ".join(f"{lv['cpu_ms_per_session']:.0f}" for lv in levels)
    return [
        (f"time to first audio, tokens at {f['token_rate']}/s, {counts} concurrent sessions "
         "(first token → first audio frame at the client)", ttfa, command),
        (f"gateway CPU per session (one {f['text_chars']}-character turn) at {counts} sessions",
         f"{cpu} ms", "same"),
    ]  # fmt: skip


def small_rows(benches: Benches) -> list[tuple[str, str, str]]:
    rows = []
    f = figures(benches, "ledger_reserve")
    reserve = MISSING
    if f is not None:
        p50 = [r["redis"]["p50"] for r in f["rounds"]]
        p99 = [r["redis"]["p99"] for r in f["rounds"]]
        reserve = f"p50 {span(p50)} ms, p99 {span(p99)} ms ({len(p50)} rounds)"
    rows.append(("Redis ledger reserve", reserve, "`python bench/ledger_reserve.py`"))
    f = figures(benches, "encoders")
    rows.append((
        "Opus encode through voxgate's encoder ÷ bare libopus (best of rounds)",
        f"{f['opus']['ratio_best']:.2f}" if f else MISSING, "`python bench/encoders.py`",
    ))  # fmt: skip
    f = figures(benches, "sse_first_delta")
    rows.append((
        "embedded engine `/stream`: first delta ÷ whole stream (5 sentences)",
        f"{f['ratio_median']:.2f} median (goal < 0.25)" if f else MISSING,
        "`python bench/sse_first_delta.py`",
    ))  # fmt: skip
    f = figures(benches, "playout")
    playout = MISSING
    if f is not None:
        tick = f["tick_us"]
        playout = (
            f"{f['us_per_frame']:.1f} µs per frame ({f['core_pct']:.1f} % of a core), "
            f"tick p99 {tick['p99'] / 1000:.2f} ms"
        )
    streams = f["streams"] if f else 160
    rows.append((f"playout buffer, {streams} streams on one 20 ms tick", playout,
                 "`python bench/playout.py`"))  # fmt: skip
    return rows


def slow_llm_row(benches: Benches) -> tuple[str, str, str]:
    f, command = measured(benches, "slow_llm")
    if f is None:
        return ("pauses a real-time listener hears under a slow LLM", MISSING, command)
    parts = []
    for delay in sorted({s["delay_ms"] for s in f["scenarios"]}):
        chosen = sorted((s for s in f["scenarios"] if s["delay_ms"] == delay),
                        key=lambda s: s["rate"])  # fmt: skip
        rates = " / ".join(f"{s['rate']:g}" for s in chosen)
        arms = [
            f"{arm} {joined([s['arms'][arm]['pauses_ms'] for s in chosen], '{:,.0f}')} ms "
            f"({joined([s['arms'][arm]['chunks'] for s in chosen], '{:g}')} chunks)"
            for arm in chosen[0]["arms"]
        ]
        parts.append(f"+{delay:g} ms upstream first byte, at {rates} tokens/s: " + "; ".join(arms))
    what = (
        f"pauses a real-time listener hears in a {f['text_chars']}-character answer (runway: "
        "the default; off: `runway_ms: 0`; speech ~15 chars/s, tokens of 4 chars)"
    )
    return what, " — ".join(parts), f"{command} (medians of {f['runs']} runs)"


def lookahead_row(benches: Benches) -> tuple[str, str, str]:
    f, command = measured(benches, "lookahead")
    if f is None:
        return ("gateway memory and credits held per realtime session", MISSING, command)
    counts, rss, held, after = (
        joined([lv[key] for lv in f["levels"]], form)
        for key, form in (("sessions", "{}"), ("per_session_mb", "{:.2f}"),
                          ("max_held", "{}"), ("held_after", "{}"))
    )  # fmt: skip
    return (
        f"gateway memory and credits held per realtime session, {counts} sessions each given "
        f"a {f['turn_chars']:,}-character turn at once (realtime pacing, PCM 24 kHz, "
        f"{f['seconds']:g} s played)",
        f"{rss} MB RSS per session (budget 1 MB); {held} credits held per session at most "
        f"(budget 1,500); {after} held after close",
        command,
    )


def segmentation_row(benches: Benches) -> tuple[str, str, str]:
    f, command = measured(benches, "segmentation")
    what = (
        "segmentation, public sentence-boundary cases in the nine API languages fed at 30 "
        "tokens/s (see [docs/segmentation.md](docs/segmentation.md) and the table below)"
    )
    if f is None:
        return what, MISSING, command
    ours = f["aggregators"]["voxgate"]
    return (
        what.replace("public", f"{f['corpus']['cases']} public"),
        f"boundary precision {ours['precision']:.3f} ({ours['precision_with_time_cuts']:.3f} "
        f"counting the {ours['time_cuts']} cuts of the first chunk's time bound, "
        f"{ours['time_cuts_right']} of them at a boundary), sentence-end recall "
        f"{ours['recall']:.3f}, "
        f"{ours['changed']} cases' spoken text changed, first chunk "
        f"{ours['first_chunk_chars']:.0f} characters on average, {ours['us_per_token']:.1f} µs "
        "per token",
        command,
    )


def cluster_rows(benches: Benches) -> list[tuple[str, str, str]]:
    f, command = measured(benches, "cluster")
    if f is None:
        return [("several nodes behind haproxy", MISSING, command)]
    whep, resume = f["whep_attach"], f["resume"]

    def pair(arm: dict[str, Any], key: str) -> str:
        return f"{arm[key]['p50']:.1f} / {arm[key]['p99']:.1f} ms"

    passed = [lv for lv in f["sessions_per_node"] if lv["passed"]]
    best = max(passed, key=lambda lv: lv["sessions"]) if passed else None
    held = (
        f"{best['sessions']} (node at {best['cpu_pct']['node']:.0f} % of a core, the embedded "
        "engine and the clients on the same cores)"
        if best
        else "none passed"
    )
    trips = f["redis_per_turn"]
    return [
        (f"several nodes behind haproxy ({f['nodes']} nodes on one Redis): a WHEP attach "
         "forwarded to the session's node ÷ direct, POST → 201, p50 / p99",
         f"{pair(whep['forwarded'], 'answer_ms')} forwarded, {pair(whep['direct'], 'answer_ms')}"
         f" direct (the peer's first audio {whep['forwarded']['first_audio_ms']['p50']:.0f} vs "
         f"{whep['direct']['first_audio_ms']['p50']:.0f} ms p50: ICE and DTLS); a resume on "
         f"another node, `session.resume` → `session.resumed`: "
         f"{pair(resume['forwarded'], 'resumed_ms')} forwarded, "
         f"{pair(resume['direct'], 'resumed_ms')} direct", command),
        ("realtime sessions one node holds, paced in real time (PCM 20 ms frames, lateness "
         "p99 ≤ 20 ms, none over the 80 ms lead)", held, "same"),
        ("Redis round trips", f"a session opened and closed: {trips['session']:.0f}; a turn of "
         f"two chunks: {trips['each_further_turn']:.0f}; none per audio frame; an idle node: "
         f"{trips['idle_per_s'] / f['nodes']:.1f} a second", "same"),
        (f"a node killed -9 mid-turn: its holds refunded by a survivor (lease {f['lease_s']:g} s)",
         f"{f['node_death_s']:.1f} s later", "same"),
    ]  # fmt: skip


def telephony_row(benches: Benches) -> tuple[str, str, str]:
    f, command = measured(benches, "telephony")
    if f is None:
        return ("Twilio call legs at once", MISSING, command)
    levels = f["levels"]
    return (
        f"Twilio call legs, {joined([lv['legs'] for lv in levels])} at once (each a "
        f"{f['turn_s']:.0f} s turn to a phone playing in real time; one gateway process)",
        f"gateway {joined([lv['cpu_pct_per_leg'] for lv in levels], '{:.2f}')} % of a core "
        f"per leg, {joined([lv['ratio_to_mulaw'] for lv in levels], '{:.0f}×')} the μ-law "
        f"encode alone ({f['mulaw_alone_pct']:.3f} % a leg); lowest media/s "
        f"{joined([lv['media_per_s_min'] for lv in levels], '{:.1f}')}; buffers ran dry "
        f"{joined([lv['dry'] for lv in levels])}; send jitter p99 "
        f"{joined([lv['jitter_ms']['p99'] for lv in levels], '{:.1f}')} ms; lead ≤ "
        f"{max(lv['max_lead_ms'] for lv in levels):.0f} ms",
        command,
    )


def summary(benches: Benches) -> str:
    rows = [
        *session_rows(benches),
        *load_rows(benches),
        *small_rows(benches),
        slow_llm_row(benches),
        lookahead_row(benches),
        segmentation_row(benches),
        *cluster_rows(benches),
        telephony_row(benches),
    ]
    return table(("what", "figure", "command"), rows)


def webrtc_capacity_row(benches: Benches) -> tuple[str, str, str]:
    f, command = measured(benches, "webrtc")
    what = "WebRTC streams (real-time, pacing p99 ≤ 5 ms, none over 10 ms late)"
    if f is None:
        return what, MISSING, command
    held = [
        f"{arm_label(arm)}: {c['max_streams']}"
        + (f" (fails at {c['fails_at']})" if c["fails_at"] else "")
        for arm, c in f["capacity"].items()
        if arm != "stock"
    ]
    return what, "; ".join(held), command


def webrtc_capacity(benches: Benches) -> str:
    """docs/webrtc.md: per arm, the streams that passed and what the largest level cost."""
    f = figures(benches, "webrtc")
    if f is None:
        return f"WebRTC capacity: {MISSING} (`bench/webrtc.py --json`)."
    rows = []
    for arm, levels in f["arms"].items():
        passed = [lv for lv in levels if lv["passed"]]
        failed = sorted({lv["streams"] for lv in levels if not lv["passed"]} - {
            lv["streams"] for lv in passed})  # fmt: skip
        top = max(passed, key=lambda lv: lv["streams"]) if passed else None
        sweeps = [st.get("sweep_ms", 0.0) for st in (top or {}).get("stalls", [])]
        rows.append((
            arm_label(arm),
            f"{top['streams'] if top else 0}" + (f" (fails at {failed[0]})" if failed else ""),
            f"{top['cpu_per_stream_pct']:.2f} % ({top['ratio_to_bare']:.2f}×)" if top else "—",
            span(sweeps, 0, " ms") if sweeps and max(sweeps) > 0 else "—",
        ))  # fmt: skip
    header = ("arm", "streams that pass", "CPU per stream there (÷ bare libopus)",
              "a sweep with them live, per process")  # fmt: skip
    return table(header, rows)


def deployment_capacity(benches: Benches) -> str:
    """docs/deployment.md: how many sessions of each kind a node holds."""
    load, cluster = load_rows(benches), cluster_rows(benches)
    rows = [
        *((what, figure, load[0][2]) for what, figure, _ in load),
        *((what, figure, cluster[0][2]) for what, figure, _ in cluster[1:2]),
        webrtc_capacity_row(benches),
        telephony_row(benches),
        lookahead_row(benches),
    ]
    return table(("sessions of the kind", "measured", "command"), rows)


def deployment_cluster(benches: Benches) -> str:
    """docs/deployment.md: what the cluster adds, direct against forwarded."""
    f = figures(benches, "cluster")
    if f is None:
        return f"Several nodes: {MISSING} (`bench/cluster.py --json`)."
    whep, resume = f["whep_attach"], f["resume"]

    def pair(arm: dict[str, Any], key: str) -> str:
        return f"{arm[key]['p50']:.1f} / {arm[key]['p99']:.1f} ms"

    trips = f["redis_per_turn"]
    rows = [
        ("WHEP attach to a playing session: POST → 201 answer",
         pair(whep["direct"], "answer_ms"), pair(whep["forwarded"], "answer_ms")),
        ("the same: POST → the peer's first decoded audio (ICE and DTLS included)",
         pair(whep["direct"], "first_audio_ms"), pair(whep["forwarded"], "first_audio_ms")),
        ("resume after a drop: `session.resume` → `session.resumed`",
         pair(resume["direct"], "resumed_ms"), pair(resume["forwarded"], "resumed_ms")),
        ("the same → first audio frame after it",
         pair(resume["direct"], "first_audio_ms"), pair(resume["forwarded"], "first_audio_ms")),
        (f"a node killed -9 mid-turn → its holds refunded by a survivor (lease "
         f"{f['lease_s']:g} s)", "—", f"{f['node_death_s']:.1f} s"),
        ("Redis round trips: a session opened and closed / a turn of two chunks / each "
         "further turn / an idle node, a second", "—",
         f"{trips['session']:.0f} / {trips['turn']:.0f} / {trips['each_further_turn']:.0f} / "
         f"{trips['idle_per_s'] / f['nodes']:.1f}"),
    ]  # fmt: skip
    return table(("what", "direct (the owner)", "forwarded (another node)"), rows)


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# -- WebRTC -------------------------------------------------------------------------------


def arm_label(arm: str) -> str:
    name, _, workers = arm.partition("/")
    if name == "passthrough-cpython-gc":  # bench/webrtc.py's STOCK_GC
        name = "passthrough without the media collector"
    if workers:
        return f"{name}, {workers} process{'es' if workers != '1' else ''}"
    return "stock aiortc" if name == "stock" else name


def webrtc(benches: Benches) -> str:
    f = figures(benches, "webrtc")
    if f is None:
        return f"WebRTC: {MISSING}."
    complexity = f.get("args", {}).get("complexity", 5)
    rows = []
    for arm, levels in f["arms"].items():
        for n in sorted({lv["streams"] for lv in levels}):
            runs = [lv for lv in levels if lv["streams"] == n]
            passed = sum(lv["passed"] for lv in runs)
            verdict = "yes" if passed == len(runs) else "no" if not passed else (
                f"in {passed} of {len(runs)} runs")  # fmt: skip
            # Passthrough codes nothing: the upstream's packets carry their own settings.
            coded = "upstream's Opus" if arm.startswith("passthrough") else complexity
            rows.append((
                f"{arm_label(arm)}, {n} ({coded})",
                span([lv["cpu_per_stream_pct"] for lv in runs], 2, " %"),
                f"{span([lv['ratio_to_bare'] for lv in runs], 2, '×')} / "
                f"{span([lv['ratio_to_bare_rt'] for lv in runs], 2, '×')}",
                span([lv["jit_p99_ms"] for lv in runs], 1, " ms"),
                span([lv["grid_p99_ms"] for lv in runs], 1, " ms"),
                verdict,
            ))  # fmt: skip
    header = ("streams (complexity)", "CPU per stream", "÷ bare / bare-rt libopus",
              "send-interval jitter p99", "pacing p99", "passes")  # fmt: skip
    return table(header, rows)


def webrtc_notes(benches: Benches) -> str:
    f = figures(benches, "webrtc")
    if f is None:
        return f"First audio on the WebRTC path: {MISSING}."
    first = f["first_audio"]
    states = first["by_state"]
    lines = [
        f"First audio added by the WebRTC path (a turn's first PCM pushed → its first packet "
        f"on the socket), {first['streams']} streams speaking turns after pauses for "
        f"{first['seconds']:g} s:"
    ]
    for state, text in (
        ("dtx", "turns that start out of DTX (sent from the push)"),
        ("hangover", "turns that start within 200 ms of the previous turn's end (they wait "
                     "for their stream's next 20 ms slot, as the listener still plays that "
                     "clock)"),
        ("talking", "turns that start while the stream still plays"),
    ):  # fmt: skip
        if state in states:
            lines.append(f"- {text}: {tail(states[state], 2)}")
    passed = f.get("first_audio_passthrough")
    if passed:
        for state, text in (("dtx", "out of DTX"), ("hangover", "within a hangover")):
            if state in passed["by_state"]:
                lines.append(
                    f"- the same with Opus passthrough (packets pushed, nothing coded), turns "
                    f"{text}: {tail(passed['by_state'][state], 2)}"
                )
    slow = first["slow"]
    lines.append(
        f"- turns outside a hangover over {slow['over_ms']:g} ms: {slow['turns']}; of them "
        f"sent from a later tick (the push came while the clock's tick was late) "
        f"{slow['sent_from_tick']}, during a garbage collection {slow['gc']}, with the sender "
        f"preempted {slow['preempted']}, with steal time {slow['steal']}, none of these "
        f"{slow['none_seen']}"
    )
    goals = f.get("goals", {})
    capacity = []
    for arm, c in f["capacity"].items():
        top = [lv for lv in f["arms"].get(arm, []) if lv["passed"]]
        at = max(top, key=lambda lv: lv["streams"]) if top else None
        capacity.append(
            f"{arm_label(arm)}: {c['max_streams']} streams pass"
            + (f" ({c['fails_at']} fail)" if c["fails_at"] else "")
            + (f", CPU per stream {at['ratio_to_bare']:.2f}× bare libopus there" if at else "")
        )
    lines += [
        "",
        f"Against the design budget (CPU per stream ≤ {goals.get('ratio_to_bare', 1.3):g}× "
        f"bare libopus, jitter p99 ≤ {goals.get('jit_p99_ms', 2):g} ms, first audio p50 2 / "
        "p99 5 ms): " + "; ".join(capacity) + ".",
    ]
    return "\n".join(lines)


def segmentation(benches: Benches) -> str:
    f = figures(benches, "segmentation")
    if f is None:
        return f"Segmentation: {MISSING} (`bench/segmentation.py --json`)."
    rows = [
        (name, f"{a['precision']:.3f}", f"{a['precision_with_time_cuts']:.3f}",
         f"{a['recall']:.3f}", str(a["changed"]), f"{a['first_chunk_chars']:.1f}",
         f"{a['us_per_token']:.1f}")
        for name, a in f["aggregators"].items()
    ]  # fmt: skip
    header = ("aggregator", "boundary precision", "precision, every cut (time bounds too)",
              "sentence-end recall", "cases changed", "first chunk, characters",
              "µs per token")  # fmt: skip
    return table(header, rows)


BLOCKS: dict[str, Callable[[Benches], str]] = {
    "summary": summary,
    "webrtc": webrtc,
    "webrtc-notes": webrtc_notes,
    "segmentation": segmentation,
    "deployment-capacity": deployment_capacity,
    "deployment-cluster": deployment_cluster,
    "webrtc-capacity": webrtc_capacity,
}
# The blocks shown in pages other than the README (all.py renders those pages too).
PAGE_BLOCKS = {
    "docs/deployment.md": ("deployment-capacity", "deployment-cluster"),
    "docs/webrtc.md": ("webrtc-capacity",),
}
MARKED = re.compile(r"(<!-- bench:([\w-]+) -->\n)(.*?)(<!-- /bench:\2 -->)", re.DOTALL)


def render_readme(text: str, kept: dict[str, Any]) -> str:
    """``text`` with every marked block rendered from ``kept``; unknown blocks stay."""
    benches: Benches = kept.get("benches", {})

    def replace(match: re.Match[str]) -> str:
        render = BLOCKS.get(match.group(2))
        if render is None:
            return match.group(0)
        return f"{match.group(1)}{render(benches)}\n{match.group(4)}"

    return MARKED.sub(replace, text)


def blocks(text: str) -> dict[str, str]:
    """The marked blocks of ``text``, by name: what the tests compare."""
    return {m.group(2): m.group(3) for m in MARKED.finditer(text)}
