"""What /metrics declares: counts since the process started are counters, named `_total`."""

from __future__ import annotations

import re

from voxgate.gateway.metrics import Metrics


def declared() -> dict[str, tuple[str, str]]:
    """Each metric family's name -> (type, help), as the scrape declares them."""
    text = Metrics().render()[0].decode()
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", text, re.M))
    return {
        name: (kind, helps[name]) for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M)
    }


def test_counters_are_named_total_and_counts_since_start_are_counters() -> None:
    families = declared()
    assert families
    for name, (kind, documentation) in families.items():
        if kind == "counter":
            assert name.endswith("_total"), name
        if "since the process started" in documentation:
            assert kind == "counter", name  # so rate() reads it across restarts


def test_counts_read_from_their_owners_are_counters() -> None:
    metrics = Metrics()
    metrics.settlements_lost.set(3)
    metrics.media_clock_skipped.set(7)
    text = metrics.render()[0].decode()
    assert "# TYPE voxgate_settlements_lost_total counter" in text
    assert "voxgate_settlements_lost_total 3.0" in text
    assert "voxgate_media_clock_skipped_ticks_total 7.0" in text
