"""Session events as the realtime protocol's server messages (audio aside: see outbound)."""

from __future__ import annotations

from voxgate.gateway import protocol as p
from voxgate.sessions import events as ev

ContextEvent = ev.ChunkStarted | ev.ChunkEnded | ev.ChunkFailed | ev.ContextDone | ev.Interrupted


def usage(value: ev.Usage) -> p.UsageOut:
    return p.UsageOut(characters=value.characters, audio_ms=value.audio_ms, chunks=value.chunks)


def message_for(event: ContextEvent | ev.SessionError) -> p._Message:
    """The wire message of a (non-audio) session event."""
    match event:
        case ev.ChunkStarted():
            return p.ChunkStartedOut(
                context_id=event.context_id,
                chunk_index=event.chunk_index,
                text=event.text,
                start_ms=event.start_ms,
            )
        case ev.ChunkEnded():
            words = [  # on the context's timeline, like the chunk's own times
                p.WordOut(
                    w.text,
                    event.start_ms + w.start_ms,
                    event.start_ms + w.end_ms,
                    w.char_start,
                    w.char_end,
                )
                for w in event.words
            ]
            return p.ChunkEndedOut(
                context_id=event.context_id,
                chunk_index=event.chunk_index,
                text=event.text,
                start_ms=event.start_ms,
                end_ms=event.end_ms,
                words=words,
            )
        case ev.ChunkFailed():
            return p.ChunkFailedOut(
                context_id=event.context_id,
                chunk_index=event.chunk_index,
                text=event.text,
                code=event.code,
                message=event.message,
                partial=event.partial,
            )
        case ev.ContextDone():
            return p.ContextDoneOut(context_id=event.context_id, usage=usage(event.usage))
        case ev.Interrupted():
            return p.InterruptedOut(
                context_id=event.context_id,
                heard=event.heard,
                unheard=event.unheard,
                played_ms=event.played_ms,
                usage=usage(event.usage),
            )
        case ev.SessionError():
            return p.ErrorOut(
                code=event.code,
                message=event.message,
                fatal=event.fatal,
                context_id=event.context_id,
            )
