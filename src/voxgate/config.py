"""One settings object, read from the environment (``VOXTRAL_*``, ``VOXGATE_*``) and flags.

Every setting is declared once in ``SETTINGS`` with its variable, default and meaning;
``voxgate serve --help-config`` prints that table and the README's is copied from it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from voxgate.errors import ConfigError
from voxgate.upstream.client import DEFAULT_BASE_URL, UpstreamConfig


@dataclass(frozen=True, slots=True)
class Setting:
    env: str
    default: str
    help: str
    field: str  # attribute of Settings (dotted for the upstream's)
    parse: Callable[[str], Any] = str


def _list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _bool(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {raw!r}")


SETTINGS: tuple[Setting, ...] = (
    Setting("VOXGATE_HOST", "127.0.0.1", "Address `voxgate serve` listens on", "host"),
    Setting(
        "VOXGATE_PORT", "8080", "Port of the gateway (demo page, WebSocket, REST)", "port", int
    ),
    Setting(
        "VOXGATE_REDIS_URL",
        "",
        "Redis for keys, credits and sessions: `redis://host:6379/0`, "
        "`redis+sentinel://s1:26379,s2:26379/<service>/0` or "
        "`redis+cluster://n1:7000,n2:7001` (docs/redis.md); unset = in-process store",
        "redis_url",
    ),
    Setting(
        "VOXGATE_API_KEYS",
        "",
        "In-process store: keys, comma-separated KEY[:CREDITS]; "
        "unset = one dev key printed at start",
        "api_keys",
        _list,
    ),
    Setting(
        "VOXGATE_ALLOWED_ORIGINS",
        "",
        "Browser origins allowed to connect, comma-separated "
        "(`https://*.example.com`, `*`); loopback origins are always allowed",
        "allowed_origins",
        _list,
    ),
    Setting(
        "VOXGATE_DEV_TOKENS",
        "auto",
        "Dev-only client-token endpoint for the demo page: "
        "`auto` = on when listening on loopback, `on`, `off`",
        "dev_tokens",
    ),
    Setting(
        "VOXGATE_MAX_SESSIONS_PER_KEY",
        "10",
        "Concurrent realtime sessions per API key",
        "max_sessions_per_key",
        int,
    ),
    Setting(
        "VOXGATE_MAX_CONTEXTS",
        "4",
        "Contexts (turns) open at once on one session",
        "max_contexts",
        int,
    ),
    Setting(
        "VOXGATE_MAX_MESSAGE_BYTES",
        "1048576",
        "Largest WebSocket message accepted",
        "max_message_bytes",
        int,
    ),
    Setting(
        "VOXGATE_TEXT_RATE",
        "2000",
        "Text characters per second a session may send (sustained)",
        "text_chars_per_second",
        int,
    ),
    Setting(
        "VOXGATE_TEXT_BURST",
        "20000",
        "Text characters a session may send at once",
        "text_burst_chars",
        int,
    ),
    Setting(
        "VOXGATE_IDLE_TIMEOUT",
        "300",
        "Seconds without a message or audio before a socket is closed",
        "idle_timeout_s",
        float,
    ),
    Setting(
        "VOXGATE_AUTH_TIMEOUT",
        "10",
        "Seconds a new socket has to authenticate",
        "auth_timeout_s",
        float,
    ),
    Setting(
        "VOXGATE_DRAIN_TIMEOUT",
        "30",
        "Seconds live turns get to finish on SIGTERM",
        "drain_timeout_s",
        float,
    ),
    Setting(
        "VOXGATE_MAX_QUEUED_AUDIO_MS",
        "1000",
        "How long (ms) a socket may refuse audio (its client stopped reading) before it is "
        "closed with 1013",
        "max_queued_audio_ms",
        int,
    ),
    Setting(
        "VOXGATE_HOLD_TTL",
        "120",
        "Seconds a chunk's credit hold lives in the store unsettled: the holds of a process "
        "that died come back after this long",
        "hold_ttl_s",
        float,
    ),
    Setting(
        "VOXGATE_REDIS_TIMEOUT",
        "1",
        "Seconds a Redis command may take before the store counts as unavailable "
        "(`store_unavailable`)",
        "redis_timeout_s",
        float,
    ),
    Setting(
        "VOXGATE_NODE_URL",
        "",
        "URL other gateway nodes use to reach this one (cluster forwarding); unset = "
        "`http://` + host (or this machine's address when host is 0.0.0.0) + `:` + port",
        "node_url",
    ),
    Setting(
        "VOXGATE_NODE_LEASE",
        "5",
        "Seconds a node's heartbeat lease lasts in Redis: a node silent this long is taken "
        "for dead, and a survivor refunds its holds and ends its sessions",
        "node_lease_s",
        float,
    ),
    Setting(
        "VOXGATE_RESUME_GRACE_S",
        "30",
        "Seconds a session outlives a socket that dropped without a close, waiting for "
        "`session.resume`; 0 = no resume",
        "resume_grace_s",
        float,
    ),
    Setting(
        "VOXGATE_RESUME_REPLAY_BYTES",
        "262144",
        "Bytes of what the socket took (audio frames and turn events) a session keeps, to "
        "send again on resume after the client's `last_seq`",
        "resume_replay_bytes",
        int,
    ),
    Setting(
        "VOXGATE_TWILIO_AUTH_TOKEN",
        "",
        "Twilio auth token: when set, a Media Stream must carry a valid `X-Twilio-Signature`",
        "twilio_auth_token",
    ),
    Setting(
        "VOXGATE_STUN_URLS",
        "",
        "STUN servers for WebRTC, comma-separated "
        "(`stun:stun.example.net:3478`); host candidates only when unset",
        "stun_urls",
        _list,
    ),
    Setting(
        "VOXGATE_TURN_URL",
        "",
        "A TURN server for WebRTC peers behind NAT (`turn:turn.example.net:3478?transport=udp`)",
        "turn_url",
    ),
    Setting("VOXGATE_TURN_USERNAME", "", "Username for the TURN server", "turn_username"),
    Setting("VOXGATE_TURN_CREDENTIAL", "", "Credential for the TURN server", "turn_credential"),
    Setting(
        "VOXGATE_WEBRTC_OPUS_BITRATE",
        "24000",
        "Opus bitrate (bit/s) of WebRTC audio, 6000-510000",
        "webrtc_opus_bitrate",
        int,
    ),
    Setting(
        "VOXGATE_WEBRTC_OPUS_COMPLEXITY",
        "5",
        "libopus complexity 0-10 of WebRTC audio: 5 codes speech within 0.1 dB of 10; "
        "1 halves the encode CPU (more streams per core) for about 0.5 dB",
        "webrtc_opus_complexity",
        int,
    ),
    Setting(
        "VOXGATE_WEBRTC_DTX",
        "true",
        "Quiet between turns (Opus DTX) so a turn's first audio goes out at once; "
        "false = a packet every 20 ms throughout",
        "webrtc_dtx",
        _bool,
    ),
    Setting(
        "VOXGATE_OPUS_PASSTHROUGH",
        "true",
        "While every sink of a session takes Opus, fetch the upstream's Opus and send its "
        "packets as they are (no decode, no encode); false = always fetch PCM and encode",
        "opus_passthrough",
        _bool,
    ),
    Setting(
        "VOXGATE_MEDIA_GC_FREEZE",
        "true",
        "`voxgate serve` keeps connected WebRTC peers out of CPython's full garbage "
        "collections and sweeps what closed peers left, at planned moments (docs/webrtc.md); "
        "false = collections as CPython schedules them",
        "media_gc_freeze",
        _bool,
    ),
    Setting("VOXGATE_LOG_FORMAT", "text", "`text` or `json` (one object per line)", "log_format"),
    Setting(
        "VOXTRAL_API_KEY",
        "",
        "Key of the real Voxtral API; unset = embedded engine",
        "upstream.api_key",
    ),
    Setting(
        "VOXTRAL_BASE_URL", DEFAULT_BASE_URL, "Base URL of the Voxtral API", "upstream.base_url"
    ),
    Setting(
        "VOXTRAL_PCM_SAMPLE_RATE",
        "24000",
        "Sample rate of the upstream's PCM stream (a WAV header overrides it)",
        "upstream.pcm_sample_rate",
        int,
    ),
    Setting(
        "VOXTRAL_FIRST_BYTE_TIMEOUT",
        "15",
        "Seconds to wait for the upstream's first audio",
        "upstream.first_byte_timeout",
        float,
    ),
    Setting(
        "VOXTRAL_IDLE_TIMEOUT",
        "10",
        "Seconds the upstream's stream may go silent once its audio has started",
        "upstream.idle_timeout",
        float,
    ),
    Setting(
        "VOXTRAL_MAX_CONNECTIONS",
        "64",
        "Connections open to the upstream at once: each playing session holds one while it "
        "fetches, so allow one per concurrent session",
        "upstream.max_connections",
        int,
    ),
    Setting(
        "VOXTRAL_TOTAL_TIMEOUT",
        "120",
        "Seconds one upstream request may keep the gateway waiting in all (not counting "
        "while its listener is behind)",
        "upstream.total_timeout",
        float,
    ),
    Setting(
        "VOXTRAL_LOCAL_API_KEYS",
        "",
        "`voxgate local-tts` keys, comma-separated KEY[:CREDITS]",
        "local_api_keys",
        _list,
    ),
)


@dataclass(frozen=True, slots=True)
class Settings:
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    host: str = "127.0.0.1"
    port: int = 8080
    redis_url: str = ""
    api_keys: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    dev_tokens: str = "auto"
    max_sessions_per_key: int = 10
    max_contexts: int = 4
    max_message_bytes: int = 1_048_576
    text_chars_per_second: int = 2000
    text_burst_chars: int = 20_000
    idle_timeout_s: float = 300.0
    auth_timeout_s: float = 10.0
    drain_timeout_s: float = 30.0
    max_queued_audio_ms: int = 1000
    hold_ttl_s: float = 120.0
    redis_timeout_s: float = 1.0
    node_url: str = ""
    node_lease_s: float = 5.0
    resume_grace_s: float = 30.0
    resume_replay_bytes: int = 262_144
    twilio_auth_token: str = ""
    stun_urls: tuple[str, ...] = ()
    turn_url: str = ""
    turn_username: str = ""
    turn_credential: str = ""
    webrtc_opus_bitrate: int = 24000
    webrtc_opus_complexity: int = 5
    webrtc_dtx: bool = True
    opus_passthrough: bool = True
    media_gc_freeze: bool = True
    log_format: str = "text"
    local_api_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.dev_tokens not in ("auto", "on", "off"):
            raise ConfigError("VOXGATE_DEV_TOKENS must be auto, on or off")
        if self.log_format not in ("text", "json"):
            raise ConfigError("VOXGATE_LOG_FORMAT must be text or json")
        for name in (
            "max_sessions_per_key",
            "max_contexts",
            "max_message_bytes",
            "text_chars_per_second",
            "text_burst_chars",
            "max_queued_audio_ms",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        # A hold must outlive the longest settlement delay of a live turn; the ledger keeps
        # settled records for a day, and a hold may not outlive them.
        if not 10 <= self.hold_ttl_s <= 86_400:
            raise ConfigError("VOXGATE_HOLD_TTL must be 10-86400 seconds")
        if not 0.05 <= self.redis_timeout_s <= 30:
            raise ConfigError("VOXGATE_REDIS_TIMEOUT must be 0.05-30 seconds")
        if not 1 <= self.node_lease_s <= 60:
            raise ConfigError("VOXGATE_NODE_LEASE must be 1-60 seconds")
        if not 0 <= self.resume_grace_s <= 3600:
            raise ConfigError("VOXGATE_RESUME_GRACE_S must be 0-3600 seconds")
        if not 0 <= self.resume_replay_bytes <= 16 * 1024 * 1024:
            raise ConfigError("VOXGATE_RESUME_REPLAY_BYTES must be 0-16777216")
        if not 6000 <= self.webrtc_opus_bitrate <= 510_000:
            raise ConfigError("VOXGATE_WEBRTC_OPUS_BITRATE must be 6000-510000")
        if not 0 <= self.webrtc_opus_complexity <= 10:
            raise ConfigError("VOXGATE_WEBRTC_OPUS_COMPLEXITY must be 0-10")

    @property
    def uses_embedded_engine(self) -> bool:
        return not self.upstream.api_key

    @property
    def dev_tokens_enabled(self) -> bool:
        if self.dev_tokens == "auto":
            return self.host in ("127.0.0.1", "localhost", "::1")
        return self.dev_tokens == "on"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then the environment, then ``overrides`` (command-line flags)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        upstream: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = env.get(setting.env)
            if raw is None or raw == "":
                continue
            try:
                value = setting.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{setting.env}: {exc}") from None
            if setting.field.startswith("upstream."):
                upstream[setting.field.removeprefix("upstream.")] = value
            else:
                values[setting.field] = value
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(upstream=UpstreamConfig(**upstream), **values)


def settings_table() -> str:
    """The configuration table, in Markdown."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default else "(unset)"
        rows.append(f"| `{s.env}` | {default} | {s.help} |")
    return "\n".join(rows)
