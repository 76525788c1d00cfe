"""Prometheus metrics of one gateway process, served at ``/metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions_active = Gauge(
            "voxgate_sessions_active", "Realtime sessions open now", registry=r
        )
        self.sessions_total = Counter(
            "voxgate_sessions_total", "Realtime sessions opened", registry=r
        )
        self.time_to_first_audio = Histogram(
            "voxgate_time_to_first_audio_seconds",
            "From a context's first text to its first audio sent to the client",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_first_byte = Histogram(
            "voxgate_upstream_first_byte_seconds",
            "Upstream request to its first audio",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_requests = Counter(
            "voxgate_upstream_requests_total",
            "Upstream stream requests, by outcome",
            ["outcome"],
            registry=r,
        )
        self.credits_committed = Counter(
            "voxgate_credits_committed_total", "Credits charged for delivered audio", registry=r
        )
        self.audio_seconds = Counter(
            "voxgate_audio_seconds_total", "Audio delivered to clients", registry=r
        )
        self.errors = Counter(
            "voxgate_errors_total", "Errors sent to clients, by code", ["code"], registry=r
        )
        self.interrupts = Counter("voxgate_interrupts_total", "Barge-ins", registry=r)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
