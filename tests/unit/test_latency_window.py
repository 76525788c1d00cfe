"""LatencyWindow's percentiles: numpy.percentile's figures, from its own sort."""

from __future__ import annotations

import numpy as np
import pytest

from voxgate.gateway.webrtc.clock import LatencyWindow


@pytest.mark.parametrize(("size", "added"), [(1, 1), (2, 2), (7, 5), (3000, 3000), (300, 1234)])
@pytest.mark.parametrize("q", [0, 1, 25, 50, 90, 99, 99.9, 100])
def test_percentiles_are_numpys_over_the_samples_held(size: int, added: int, q: float) -> None:
    rng = np.random.default_rng(size * 1000 + added)
    samples = rng.exponential(0.002, added)
    window = LatencyWindow(size)
    for seconds in samples:
        window.add(float(seconds))
    held = samples[-size:]  # the window keeps the newest `size`
    assert window.percentile_ms(q) == pytest.approx(np.percentile(held, q) * 1000, rel=1e-12)
    assert window.max_ms() == pytest.approx(held.max() * 1000, rel=1e-12)
    assert window.count == added


def test_an_empty_window_reads_zero() -> None:
    window = LatencyWindow(10)
    assert (window.percentile_ms(99), window.max_ms(), window.count) == (0.0, 0.0, 0)
