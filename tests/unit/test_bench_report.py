"""bench/report.py: README's measured tables are what the renderer makes of the kept figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import report  # noqa: E402

LEVEL = {
    "streams": 10, "attempt": 1, "cpu_per_stream_pct": 1.5, "ratio_to_bare": 1.25,
    "ratio_to_bare_rt": 1.1, "jit_p99_ms": 1.04, "grid_p99_ms": 1.46, "passed": True,
}  # fmt: skip


def test_webrtc_table_has_a_row_per_arm_and_level_whatever_the_arm() -> None:
    failed = {**LEVEL, "streams": 20, "cpu_per_stream_pct": 1.75, "passed": False}
    again = {**failed, "attempt": 2, "cpu_per_stream_pct": 1.5, "passed": True}
    benches = {"webrtc": {"figures": {"args": {"complexity": 5}, "arms": {
        "voxgate/2": [LEVEL, failed, again], "passthrough/1": [LEVEL]}}}}  # fmt: skip

    assert report.webrtc(benches) == "\n".join([
        "| streams (complexity) | CPU per stream | ÷ bare / bare-rt libopus "
        "| send-interval jitter p99 | pacing p99 | passes |",
        "|---|---|---|---|---|---|",
        "| voxgate, 2 processes, 10 (5) | 1.50 % | 1.25× / 1.10× | 1.0 ms | 1.5 ms | yes |",
        "| voxgate, 2 processes, 20 (5) | 1.50–1.75 % | 1.25× / 1.10× | 1.0 ms | 1.5 ms "
        "| in 1 of 2 runs |",
        "| passthrough, 1 process, 10 (upstream's Opus) | 1.50 % | 1.25× / 1.10× | 1.0 ms "
        "| 1.5 ms | yes |",
    ])  # fmt: skip


def test_segmentation_table_from_its_figures() -> None:
    ours = {"precision": 0.8944, "precision_with_time_cuts": 0.7357, "recall": 0.9012,
            "changed": 0, "first_chunk_chars": 35.2, "us_per_token": 7.04}  # fmt: skip
    benches = {"segmentation": {"figures": {"aggregators": {"voxgate": ours}}}}

    assert report.segmentation(benches).splitlines()[2] == (
        "| voxgate | 0.894 | 0.736 | 0.901 | 0 | 35.2 | 7.0 |"
    )


def test_a_p99_is_not_claimed_under_a_hundred_samples() -> None:
    assert report.tail({"n": 15, "p50": 1.0, "p99": None, "max": 9.0}) == (
        "1.0 ms p50, 9.0 ms max (n 15)"
    )


def test_readme_blocks_are_what_the_renderer_makes_of_the_committed_figures() -> None:
    kept = json.loads((ROOT / "docs" / "bench" / "figures.json").read_text())
    readme = (ROOT / "README.md").read_text()

    shown = report.blocks(readme)

    elsewhere = {name for names in report.PAGE_BLOCKS.values() for name in names}
    assert set(shown) == set(report.BLOCKS) - elsewhere
    assert shown == report.blocks(report.render_readme(readme, kept))


@pytest.mark.parametrize("page", sorted(report.PAGE_BLOCKS))
def test_other_pages_blocks_are_what_the_renderer_makes_of_the_committed_figures(
    page: str,
) -> None:
    kept = json.loads((ROOT / "docs" / "bench" / "figures.json").read_text())
    text = (ROOT / page).read_text()

    shown = report.blocks(text)

    assert set(shown) == set(report.PAGE_BLOCKS[page])
    assert shown == report.blocks(report.render_readme(text, kept))
