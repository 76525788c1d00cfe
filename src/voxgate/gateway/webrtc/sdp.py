"""Negotiation helpers for a send-only Opus track: codec choice and the answer's fmtp.

:class:`~voxgate.gateway.webrtc.track.SessionAudioTrack` hands aiortc ready Opus packets,
and aiortc packs whatever it gets with the *negotiated* codec: had PCMU won the offer, our
Opus bytes would go out labelled as PCMU. :func:`send_opus_only` makes Opus the only codec
the transceiver accepts (the negotiation fails instead of mislabelling).

:func:`describe_mono_opus` edits the SDP text the gateway sends back (aiortc rebuilds its
own description from state, so this only changes what the remote peer reads): it says we
send mono (``sprop-stereo=0``), in 20 ms packets, without DTX, at about our bitrate, so a
browser can size its decoder and jitter buffer for it. Pure string in, string out.
"""

from __future__ import annotations

import re

from aiortc import RTCRtpSender, RTCRtpTransceiver
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

__all__ = ["describe_mono_opus", "opus_capabilities", "send_opus_only"]

_RTPMAP = re.compile(r"^a=rtpmap:(\d+) opus/48000(?:/\d+)?$", re.IGNORECASE)
PTIME_MS = 20


def opus_capabilities() -> list[RTCRtpCodecCapability]:
    """aiortc's Opus codec capabilities (one entry today), for ``setCodecPreferences``."""
    codecs = RTCRtpSender.getCapabilities("audio").codecs
    return [codec for codec in codecs if codec.mimeType.lower() == "audio/opus"]


def send_opus_only(transceiver: RTCRtpTransceiver) -> None:
    """Restrict ``transceiver`` to Opus; call before ``createAnswer``/``createOffer``."""
    transceiver.setCodecPreferences(opus_capabilities())


def describe_mono_opus(sdp: str, *, bitrate: int | None = None) -> str:
    """``sdp`` with every Opus payload type described as mono, 20 ms packets, no DTX.

    Existing fmtp parameters are kept unless overridden; ``bitrate`` (bit/s), when given,
    becomes ``maxaveragebitrate``. Audio sections without ``a=ptime`` get ``a=ptime:20``.
    """
    params = {"stereo": "0", "sprop-stereo": "0", "usedtx": "0"}
    if bitrate is not None:
        params["maxaveragebitrate"] = str(bitrate)
    newline = "\r\n" if "\r\n" in sdp else "\n"
    sections = re.split(r"(?m)^(?=m=)", sdp.replace("\r\n", "\n"))
    edited = [_edit_section(section, params) for section in sections]
    return "".join(edited).replace("\n", newline)


def _edit_section(section: str, params: dict[str, str]) -> str:
    if not section.startswith("m=audio"):
        return section
    lines = section.rstrip("\n").split("\n")
    payload_types = [m.group(1) for line in lines if (m := _RTPMAP.match(line))]
    for pt in payload_types:
        lines = _with_fmtp(lines, pt, params)
    if payload_types and not any(line.startswith("a=ptime:") for line in lines):
        lines.append(f"a=ptime:{PTIME_MS}")
    return "\n".join(lines) + "\n"


def _with_fmtp(lines: list[str], pt: str, params: dict[str, str]) -> list[str]:
    prefix = f"a=fmtp:{pt} "
    for i, line in enumerate(lines):
        if line.startswith(prefix):
            merged = _parse_fmtp(line[len(prefix) :]) | params
            return [*lines[:i], prefix + _format_fmtp(merged), *lines[i + 1 :]]
    at = next(i for i, line in enumerate(lines) if line.startswith(f"a=rtpmap:{pt} "))
    return [*lines[: at + 1], prefix + _format_fmtp(params), *lines[at + 1 :]]


def _parse_fmtp(text: str) -> dict[str, str]:
    pairs = (item.strip().partition("=") for item in text.split(";") if item.strip())
    return {key: value for key, _, value in pairs}


def _format_fmtp(params: dict[str, str]) -> str:
    return ";".join(f"{key}={value}" for key, value in params.items())
