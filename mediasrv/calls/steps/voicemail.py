"""Voicemail (F11): greeting, beep, a mono recording of the caller's channel.

The message ends at ``max_length``, at the finish key, on silence (the caller's RTP stopping:
the media seam reports no audio level, see :class:`~mediasrv.media.api.RtpTimeout`) or when the
caller hangs up, which is the usual way. A message shorter than ``min_length`` (a hang-up at the
beep) is no message: no row, no event.
"""

from __future__ import annotations

import logging

from mediasrv.media.api import DtmfEvent, LegRole, RecordingResult, RecordMode, RtpTimeout

from ..flow import CallContext, CallerGone
from ..plan import Step, Voicemail
from ..trace import HungUpBy, VoicemailLeft, VoicemailMessage
from .common import wait_play

log = logging.getLogger("mediasrv.calls.steps")


def _keep(ctx: CallContext, step: Voicemail, result: RecordingResult, ended_by: str) -> None:
    if result.path is None:
        ctx.failure("voicemail-recording-failed")
        return
    if result.seconds < step.min_length:
        log.info(
            "voicemail too short: no message",
            extra={"call_id": ctx.id, "seconds": round(result.seconds, 3), "ended_by": ended_by},
        )
        return
    message = VoicemailMessage(step.mailbox, result.path, result.seconds)
    ctx.trace.voicemail = message
    ctx.emit(VoicemailLeft(ctx.id, step.mailbox, result.path, result.seconds, ctx.clock.wall()))


async def voicemail(ctx: CallContext, step: Voicemail) -> Step | None:
    ctx.answer_caller(early_media=step.early_media)
    await wait_play(ctx, ctx.play_to_caller(step.greeting))
    if step.beep:
        await wait_play(ctx, ctx.play_to_caller([ctx.services.beep_prompt]))
    path = ctx.services.voicemail_path(ctx.id, step.mailbox, ctx.trace.received)
    recording = ctx.media.record(ctx.id, path, RecordMode.CALLER, stereo=False)
    clock = ctx.clock
    deadline = clock.now() + step.max_length
    ended_by = "caller-hangup"
    try:
        while True:
            got = await ctx.next_event(deadline - clock.now())
            if got is None:
                ended_by = "max-length"
                break
            _source, event = got
            if (
                isinstance(event, DtmfEvent)
                and event.role is LegRole.CALLER
                and step.finish_on_key
                and event.digit == step.finish_on_key
            ):
                ended_by = "finish-key"
                break
            if isinstance(event, RtpTimeout) and event.role is LegRole.CALLER:
                if step.silence_timeout > 0:
                    ended_by = "silence"
                    break
    except CallerGone:
        ended_by = "caller-hangup"
        raise
    finally:
        _keep(ctx, step, ctx.media.stop_record(recording), ended_by)
    ctx.trace.reason = f"voicemail-{ended_by}"
    ctx.trace.hung_up_by = HungUpBy.SYSTEM
    return None
