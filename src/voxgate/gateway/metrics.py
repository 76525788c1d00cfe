"""Prometheus metrics of one gateway process, served at ``/metrics``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from voxgate.gateway.webrtc.collector import MediaCollector
from voxgate.sessions.settlements import SettlementStats

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class WebrtcSample:
    """The WebRTC side of the process at one instant, read when ``/metrics`` is scraped."""

    peers: int  # WHEP resources live
    packets_sent: int  # by the live peers' tracks
    underruns_gateway: int  # of the live peers: audio ready, our tick late
    underruns_upstream: int  # of the live peers: the session's audio was late
    clock_streams: int
    clock_late_p99_s: float  # the media clock's step lateness, last 3000 steps
    clock_skipped_ticks: int  # steps given up to stalls since the clock was made


class ReadCounter(Collector):
    """A counter that another part keeps (the media clock, the collector, settlements),
    its value read at each scrape: exposed as a counter, ``_total``, so ``rate()`` works."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self.name, self.documentation = name, documentation
        self.value = 0.0
        registry.register(self)

    def set(self, value: float) -> None:
        self.value = value

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(self.name, self.documentation)]

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.value)


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
        self.passthrough_seconds = Counter(
            "voxgate_opus_passthrough_seconds_total",
            "Of that audio, what went out as the upstream coded it (Opus passthrough)",
            registry=r,
        )
        self.errors = Counter(
            "voxgate_errors_total", "Errors sent to clients, by code", ["code"], registry=r
        )
        self.interrupts = Counter("voxgate_interrupts_total", "Barge-ins", registry=r)
        self.call_round_trip = Histogram(
            "voxgate_call_round_trip_seconds",
            "Round trips to a telephony provider, timed by pings on its media streams",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.sessions_detached = Counter(
            "voxgate_sessions_detached_total",
            "Sessions whose socket dropped without a close frame, kept for a resume",
            registry=r,
        )
        self.resumes = Counter(
            "voxgate_session_resumes_total", "Sessions resumed on a new socket", registry=r
        )
        self.resume_expiries = Counter(
            "voxgate_session_resume_expiries_total",
            "Detached sessions not resumed within VOXGATE_RESUME_GRACE_S, ended",
            registry=r,
        )
        self.forwarded = Counter(
            "voxgate_forwarded_total",
            "Requests carried to the node that owns their session, by kind (http, socket)",
            ["kind"],
            registry=r,
        )
        self.nodes_reaped = Counter(
            "voxgate_nodes_reaped_total",
            "Nodes whose lease lapsed, reaped by this node (their holds refunded)",
            registry=r,
        )
        self.sessions_reaped = Counter(
            "voxgate_sessions_reaped_total", "Sessions of reaped nodes, ended as lost", registry=r
        )
        self.webrtc_peers = Gauge("voxgate_webrtc_peers", "WebRTC (WHEP) peers live", registry=r)
        self.webrtc_packets = Gauge(
            "voxgate_webrtc_packets_sent", "RTP packets sent by the live peers", registry=r
        )
        self.webrtc_underruns = Gauge(
            "voxgate_webrtc_underruns",
            "Playout underruns of the live peers: `gateway` (audio ready, tick late) or "
            "`upstream` (audio not there yet)",
            ["cause"],
            registry=r,
        )
        self.media_clock_streams = Gauge(
            "voxgate_media_clock_streams", "Streams on the 20 ms media clock", registry=r
        )
        self.media_clock_late_p99 = Gauge(
            "voxgate_media_clock_late_p99_seconds",
            "Media clock step lateness, p99 of the last 3000 steps",
            registry=r,
        )
        self.media_clock_skipped = ReadCounter(
            "voxgate_media_clock_skipped_ticks_total",
            "Media clock steps given up to stalls since the process started",
            r,
        )
        self.media_gc_sweeps = ReadCounter(
            "voxgate_media_gc_sweeps_total",
            "Sweeps of the media collector since the process started (VOXGATE_MEDIA_GC_FREEZE)",
            r,
        )
        self.media_gc_last_sweep = Gauge(
            "voxgate_media_gc_last_sweep_seconds",
            "The pause of the media collector's last sweep",
            registry=r,
        )
        self.media_gc_closed = Gauge(
            "voxgate_media_gc_closed_peers",
            "WebRTC peers closed since the last sweep: what they left waits for the next",
            registry=r,
        )
        self.media_gc_ended_sessions = Gauge(
            "voxgate_media_gc_ended_sessions",
            "Frozen realtime sessions ended since the last sweep: theirs waits for it too",
            registry=r,
        )
        self.store_unavailable = Counter(
            "voxgate_store_unavailable_total",
            "Requests, handshakes and chunk reserves refused because the store could not be "
            "reached, by where (`http`, `socket`, `chunk`)",
            ["where"],
            registry=r,
        )
        self.settlements_pending = Gauge(
            "voxgate_settlements_pending",
            "Commits and refunds waiting for the store to acknowledge them",
            registry=r,
        )
        self.settlements_pending_credits = Gauge(
            "voxgate_settlements_pending_credits",
            "Credits of the settlements waiting for the store",
            registry=r,
        )
        self.settlement_retries = ReadCounter(
            "voxgate_settlement_retries_total",
            "Settlement sends that found the store unavailable, since the process started",
            r,
        )
        self.settlements_lost = ReadCounter(
            "voxgate_settlements_lost_total",
            "Commits that found their hold gone (expired or lost by the store): not charged",
            r,
        )
        # Set by the WHEP endpoint: read at each scrape, so the audio path never waits on it.
        self.webrtc_sampler: Callable[[], WebrtcSample] | None = None
        self.settlement_sampler: Callable[[], SettlementStats] | None = None

    def render(self) -> tuple[bytes, str]:
        collector = MediaCollector.current()
        if collector is not None:
            self.media_gc_sweeps.set(collector.sweeps)
            self.media_gc_last_sweep.set(collector.last_sweep_ms / 1000)
            self.media_gc_closed.set(collector.closed)
            self.media_gc_ended_sessions.set(collector.ended_sessions)
        if self.webrtc_sampler is not None:
            self._sample_webrtc(self.webrtc_sampler())
        if self.settlement_sampler is not None:
            stats = self.settlement_sampler()
            self.settlements_pending.set(stats.pending)
            self.settlements_pending_credits.set(stats.pending_credits)
            self.settlement_retries.set(stats.retries)
            self.settlements_lost.set(stats.lost)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def _sample_webrtc(self, sample: WebrtcSample) -> None:
        self.webrtc_peers.set(sample.peers)
        self.webrtc_packets.set(sample.packets_sent)
        self.webrtc_underruns.labels("gateway").set(sample.underruns_gateway)
        self.webrtc_underruns.labels("upstream").set(sample.underruns_upstream)
        self.media_clock_streams.set(sample.clock_streams)
        self.media_clock_late_p99.set(sample.clock_late_p99_s)
        self.media_clock_skipped.set(sample.clock_skipped_ticks)
