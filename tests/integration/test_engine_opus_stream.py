"""The embedded engine's ``/stream`` in Ogg Opus, as a client receives it over loopback.

Passthrough relies on it: every delta is whole pages of 20 ms packets, the first delta
already carries audio (as early as the first PCM delta would), and the stream lasts as
long as the PCM stream of the same text, its end trimmed by the last granule position.
"""

from __future__ import annotations

import pytest

from tests.audio_checks import assert_speech, decode
from voxgate.codecs.ogg_demux import OggOpusDemuxer
from voxgate.codecs.opus_toc import packet_samples
from voxgate.upstream import SpeechRequest, Upstream

pytestmark = pytest.mark.engine_only

JANE = "82c99ee6-f932-423f-a4a3-d403c8914b8d"
TEXT = "Hello there. This answer streams in Opus, packet by packet. And it ends here!"
PACKET = 960  # 20 ms at 48 kHz
PCM_RATE = 24000


async def deltas(upstream: Upstream, fmt: str) -> list[bytes]:
    request = SpeechRequest(TEXT, voice_id=JANE, response_format=fmt)
    return [delta async for delta in upstream.stream_encoded(request)]


async def test_opus_stream_is_whole_pages_of_20ms_packets_from_the_first_delta(
    upstream: Upstream,
) -> None:
    opus, pcm = await deltas(upstream, "opus"), await deltas(upstream, "pcm")
    demuxer = OggOpusDemuxer()
    per_delta = []
    for delta in opus:
        per_delta.append(demuxer.feed(delta))
        assert demuxer.buffered == 0  # each delta ends on a page boundary
    demuxer.finish()
    packets = [p for ps in per_delta for p in ps]
    assert {packet_samples(p) for p in packets} == {PACKET}
    assert demuxer.head is not None
    pre_skip = demuxer.head.pre_skip

    # The first delta carries the audio of the first PCM delta, but for a partial frame.
    first_pcm_48k = len(pcm[0]) // 2 * 48000 // PCM_RATE
    assert per_delta[0]
    assert len(per_delta[0]) * PACKET > first_pcm_48k - PACKET

    # espeak-ng's output varies by a few samples from one run to the next: the two
    # streams are compared within a packet; the trimming within the stream, exactly.
    pcm_48k = sum(len(d) for d in pcm) // 2 * 48000 // PCM_RATE
    coded = len(packets) * PACKET
    assert abs(coded - pre_skip - pcm_48k) <= PACKET + pre_skip
    assert demuxer.last_granule is not None
    assert coded - PACKET < demuxer.last_granule <= coded  # the padding is trimmed off
    assert abs(demuxer.last_granule - pre_skip - pcm_48k) < PACKET
    assert_speech(decode(b"".join(opus)), min_seconds=2)
