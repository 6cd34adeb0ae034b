"""Waits shared by the steps: a play to its end, with or without barge-in."""

from __future__ import annotations

from mediasrv.media.api import DtmfEvent, LegRole, PlayId, PromptFinished

from ..flow import CallContext


def is_caller_digit(event: object) -> bool:
    return isinstance(event, DtmfEvent) and event.role is LegRole.CALLER


async def wait_play(ctx: CallContext, play: PlayId | None, *, barge_in: bool = False) -> str | None:
    """Wait for ``play`` to end; with ``barge_in`` a caller's key stops it and is returned."""
    if play is None:
        return None
    while True:
        got = await ctx.next_event(None)
        if got is None:
            continue
        _source, event = got
        if isinstance(event, PromptFinished) and event.play_id == play:
            if ctx.caller_play == play:
                ctx.caller_play = None
            return None
        if barge_in and isinstance(event, DtmfEvent) and event.role is LegRole.CALLER:
            ctx.media.stop_play(play)
            if ctx.caller_play == play:
                ctx.caller_play = None
            return event.digit
