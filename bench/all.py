"""Re-run every benchmark on the current code, keep its figures, chart them, render the README.

Each bench runs as its own process, ``python bench/<name>.py [its options] --json FILE``,
its table printed as it goes. What it wrote is kept in ``docs/bench/figures.json`` with the
machine it ran on, the date, the git commit and the exact command; then the charts
(``docs/bench/*.png``, see ``bench/charts.py``) are drawn and the README's measured tables
(between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``, see ``bench/report.py``) are
rendered from that file. Nobody types those figures by hand.

    python bench/all.py                      # every bench, about 25 minutes on 2 cores
    python bench/all.py --quick              # the long ones shortened, about 10 minutes
    python bench/all.py --only webrtc,slow_llm
    python bench/all.py --skip cluster
    python bench/all.py --render             # charts and README from the JSON kept

A bench run with ``--only`` replaces its own entry and keeps the others' (each entry has
its own date, commit, machine and command). A bench that fails, or that has no ``--json``
option, is reported at the end and keeps its previous entry, if any.

The layout of ``docs/bench/figures.json``::

    {"updated": ISO date, "command": "python bench/all.py ...",
     "benches": {name: {
        "command": "python bench/webrtc.py --json ...", "date": ISO date,
        "commit": sha ("+" if the tree had uncommitted changes), "run_s": seconds,
        "machine": {"cpu", "cores", "ram_gb", "kernel", "python", "steal_pct", "load"},
        "figures": what the bench wrote}}}

The figures of ``webrtc`` (charts are drawn for every arm found, whatever its name)::

    {"arms": {arm: [{"streams", "attempt", "cpu_per_stream_pct", "user_pct", "system_pct",
                     "bare_pct", "bare_rt_pct", "ratio_to_bare", "ratio_to_bare_rt",
                     "due_p99_ms", "grid_p99_ms", "jit_p99_ms", "late", "stolen",
                     "rx_min_pps", "ts_gaps", "load", "steal_ms", "passed"}, ...]},
     "capacity": {arm: {"max_streams", "fails_at", "ratio_to_bare": [min, max],
                        "ratio_to_bare_rt": [min, max], "jit_p99_ms_max"}},
     "first_audio": {"streams", "seconds", "turns": [{"ms", "state", "sent_from", "gc",
                     "preempted", "steal_ms"}], "by_state": {state: {"n", "p50", "p99",
                     "max"}}, "slow": {"over_ms", "turns", causes...}},
     "args", "cores", "speech_s", "goals"}

The other benches' layouts are in their own docstrings (``--json PATH``). A p99 is null
when there were fewer than 100 samples (``bench/figures.py``): the maximum is given instead.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
FIGURES = ROOT / "docs" / "bench" / "figures.json"

# name: (options of the default run, options with --quick); in the order they run.
BENCHES: dict[str, tuple[list[str], list[str]]] = {
    "encoders": ([], ["--seconds", "5", "--rounds", "3"]),
    "ledger_reserve": ([], ["--chunks", "2000"]),
    "playout": ([], ["--seconds", "10"]),
    "sse_first_delta": ([], ["--runs", "3"]),
    "session_latency": ([], ["--runs", "100"]),
    "realtime_load": ([], []),
    "segmentation": ([], []),
    "lookahead": ([], ["--quick"]),
    "telephony": ([], ["--quick"]),
    "cluster": ([], ["--quick"]),
    "slow_llm": ([], ["--runs", "1"]),
    "webrtc": ([], ["--quick"]),
}


def machine() -> dict[str, Any]:
    """What the figures depend on: the CPU, its cores, memory, kernel and Python."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
    except (OSError, StopIteration, ValueError):
        mem_kb = 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(mem_kb / 1024**2, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def cpu_ticks() -> tuple[int, int]:
    """(steal, total) jiffies of the whole machine so far, from /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    sha = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return sha + ("+" if git("status", "--porcelain", "--", "src", "bench") else "")


def has_json_option(name: str) -> bool:
    source = (BENCH / f"{name}.py").read_text()
    return "--json" in source


def run_bench(name: str, options: list[str], timeout_s: float) -> dict[str, Any] | str:
    """Run one bench; its entry, or why there is none."""
    if not (BENCH / f"{name}.py").exists():
        return "no such bench"
    if not has_json_option(name):
        return "it has no --json option yet"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{name}.json"
        command = [sys.executable, str(BENCH / f"{name}.py"), *options, "--json", str(out)]
        shown = shlex.join(["python", f"bench/{name}.py", *options, "--json", "FILE"])
        print(f"\n=== {shown}", flush=True)
        steal0, total0 = cpu_ticks()
        load = os.getloadavg()[0]
        started = time.monotonic()
        try:
            done = subprocess.run(command, cwd=ROOT, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return f"timed out after {timeout_s:g} s"
        run_s = time.monotonic() - started
        steal1, total1 = cpu_ticks()
        if done.returncode != 0:
            return f"exit status {done.returncode} after {run_s:.0f} s"
        if not out.exists():
            return "it wrote no JSON"
        figures = json.loads(out.read_text())
    facts = machine()
    facts["steal_pct"] = round(100 * (steal1 - steal0) / max(1, total1 - total0), 2)
    facts["load"] = round(load, 2)
    print(f"=== {name}: {run_s:.0f} s", flush=True)
    return {
        "command": shown,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "run_s": round(run_s, 1),
        "machine": facts,
        "figures": figures,
    }


def load(path: Path) -> dict[str, Any]:
    if path.exists():
        kept: dict[str, Any] = json.loads(path.read_text())
        return kept
    return {"benches": {}}


def names(text: str) -> list[str]:
    chosen = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in BENCHES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown bench {', '.join(unknown)}")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", type=names, default=None, help="comma-separated benches")
    parser.add_argument("--skip", type=names, default=[], help="comma-separated benches")
    parser.add_argument("--quick", action="store_true", help="the long benches shortened")
    parser.add_argument("--render", action="store_true", help="only charts and README")
    parser.add_argument("--json", type=Path, default=FIGURES, help="the figures file")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per bench")
    args = parser.parse_args()
    kept = load(args.json)
    problems: dict[str, str] = {}
    if not args.render:
        chosen = [n for n in (args.only or BENCHES) if n not in args.skip]
        for name in chosen:
            options = BENCHES[name][1 if args.quick else 0]
            entry = run_bench(name, options, args.timeout)
            if isinstance(entry, str):
                problems[name] = entry
                print(f"=== {name}: not measured: {entry}", flush=True)
            else:
                kept["benches"][name] = entry
                args.json.parent.mkdir(parents=True, exist_ok=True)
                kept["updated"] = entry["date"]
                kept["command"] = shlex.join(["python", "bench/all.py", *sys.argv[1:]])
                args.json.write_text(json.dumps(kept, indent=1) + "\n")
    render(kept, args.json.parent, args.readme)
    print()
    for name, entry in kept["benches"].items():
        print(f"{name:16s} {entry['run_s']:7.0f} s  {entry['date']}  {entry['commit']}")
    for name, problem in problems.items():
        print(f"{name:16s} NOT MEASURED: {problem}")


def render(kept: dict[str, Any], charts_dir: Path, readme: Path) -> None:
    import charts
    import report

    for path in charts.draw(kept, charts_dir):
        print(f"chart {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    for page in (readme, *(ROOT / name for name in report.PAGE_BLOCKS)):
        if page.exists():
            text = page.read_text()
            rendered = report.render_readme(text, kept)
            if rendered != text:
                page.write_text(rendered)
                print(f"{page.name}: measured tables rendered")


if __name__ == "__main__":
    main()
