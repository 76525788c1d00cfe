"""The JSON convention of the benchmarks: ``--json PATH`` writes a bench's figures there.

Each bench keeps printing its table; with ``--json PATH`` it also writes one JSON object of
plain figures (numbers, lists, per-arm tables) that ``bench/all.py`` gathers, charts and
renders into the README. A tail of samples is summarised by :func:`tail`: a p99 is only
given over at least ``P99_MIN_SAMPLES`` samples (below that it would be the maximum under
another name), and the maximum and the count always come with it.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

P99_MIN_SAMPLES = 100


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", type=Path, default=None, metavar="PATH", help="also write the figures here"
    )


def write_json(path: Path | None, figures: dict[str, Any]) -> None:
    """Write ``figures`` to ``path`` (nothing without one); NaN and infinity become null."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plain(figures), indent=1, sort_keys=False) + "\n")


def plain(value: Any) -> Any:
    """``value`` as JSON takes it: tuples as lists, numpy scalars as numbers, no NaN."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # a numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def percentile(ordered: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of sorted samples, interpolated as numpy does."""
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def tail(samples: Iterable[float], keep: bool = False) -> dict[str, Any]:
    """n, p50, p99 (None under ``P99_MIN_SAMPLES`` samples), max; the samples if ``keep``."""
    ordered = sorted(float(s) for s in samples)
    enough = len(ordered) >= P99_MIN_SAMPLES
    summary: dict[str, Any] = {
        "n": len(ordered),
        "p50": percentile(ordered, 50),
        "p99": percentile(ordered, 99) if enough else None,
        "max": ordered[-1] if ordered else math.nan,
    }
    if keep:
        summary["samples"] = [round(s, 4) for s in ordered]
    return summary


def tail_text(summary: dict[str, Any], unit: str = "ms", digits: int = 2) -> str:
    """Like "p50 0.79 / p99 1.30 ms (n 280, max 9.02)"; "p50 .. / max .." with no p99."""
    n = summary["n"]
    if not n:
        return "no samples"
    p50, top, p99 = (
        f"{summary[k]:.{digits}f}" if summary[k] is not None else "" for k in ("p50", "max", "p99")
    )
    if not p99:
        return f"p50 {p50} / max {top} {unit} (n {n})"
    return f"p50 {p50} / p99 {p99} {unit} (n {n}, max {top})"
