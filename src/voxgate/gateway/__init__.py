"""The aiohttp gateway: WebSocket protocol, WHEP/WebRTC, REST, auth, limits and metrics."""
