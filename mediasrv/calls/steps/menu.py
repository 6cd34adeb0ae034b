"""IVR menus (F5): prompt, collect digits, branch; FreeSWITCH ``play_and_get_digits`` options.

One try: play the prompt (a key barges in when allowed); then wait ``first_digit_timeout``
for the first key, ``inter_digit_timeout`` for each further key, and at most
``total_timeout`` for the whole entry. An entry ends at ``max_digits``, at the finish key or
at a timeout after at least one key. No input and invalid input count separately; each plays
its own prompt before the menu prompt is played again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mediasrv.media.api import DtmfEvent, PromptFinished

from ..flow import CallContext
from ..plan import Menu, Step
from ..trace import MenuChoice as MenuChoiceEvent
from ..trace import MenuPick
from .common import is_caller_digit


class Entry(enum.Enum):
    CHOSEN = "chosen"
    NO_INPUT = "no-input"
    INVALID = "invalid"


@dataclass(slots=True)
class Collected:
    kind: Entry
    digits: str = ""


async def _prompt(ctx: CallContext, menu: Menu, names: tuple[str, ...]) -> str:
    """Play ``names``; returns the keys pressed during it (barge-in), "" if none."""
    play = ctx.play_to_caller(names, barge_in=menu.barge_in)
    if play is None:
        return ""
    while True:
        got = await ctx.next_event(None)
        if got is None:
            continue
        _source, event = got
        if isinstance(event, PromptFinished) and event.play_id == play:
            ctx.caller_play = None
            return ""
        if menu.barge_in and isinstance(event, DtmfEvent) and is_caller_digit(event):
            ctx.media.stop_play(play)
            ctx.caller_play = None
            return event.digit
        # Without barge-in, keys during the prompt are ignored (Twilio bargeIn=false).


async def collect(ctx: CallContext, menu: Menu, first: str) -> Collected:
    """Collect one entry after the prompt; ``first`` is a key that barged in."""
    clock = ctx.clock
    total_deadline = clock.now() + menu.total_timeout
    digits = ""
    pending = first
    while True:
        if pending:
            key, pending = pending, ""
            if menu.finish_on_key and key == menu.finish_on_key:
                break
            if key not in menu.valid_digits:
                return Collected(Entry.INVALID, digits + key)
            digits += key
            if len(digits) >= menu.max_digits:
                break
        wait = menu.inter_digit_timeout if digits else menu.first_digit_timeout
        deadline = min(clock.now() + wait, total_deadline)
        got = await ctx.next_event(deadline - clock.now())
        if got is None:
            break
        _source, event = got
        if isinstance(event, DtmfEvent) and is_caller_digit(event):
            pending = event.digit
    if not digits:
        return Collected(Entry.NO_INPUT)
    return Collected(Entry.CHOSEN, digits)


async def menu(ctx: CallContext, step: Menu) -> Step | None:
    ctx.answer_caller(early_media=step.early_media)
    no_input = invalid = 0
    names = step.prompt
    tries = 0
    while True:
        tries += 1
        first = await _prompt(ctx, step, names)
        entry = await collect(ctx, step, first)
        if entry.kind is Entry.CHOSEN:
            choice = next((c for c in step.choices if c.digits == entry.digits), None)
            if choice is not None:
                name = choice.name or choice.goto
                ctx.trace.menu.append(MenuPick(step.name, entry.digits, name, tries))
                ctx.emit(MenuChoiceEvent(ctx.id, step.name, entry.digits, name, ctx.clock.wall()))
                return ctx.plan.at(choice.goto)
            entry = Collected(Entry.INVALID, entry.digits)
        if entry.kind is Entry.NO_INPUT:
            no_input += 1
            if no_input >= step.max_no_input:
                ctx.trace.menu.append(MenuPick(step.name, "", "no-input", tries))
                return ctx.plan.at(step.on_no_input, after=step)
            names = step.no_input_prompt + step.prompt
        else:
            invalid += 1
            if invalid >= step.max_invalid:
                ctx.trace.menu.append(MenuPick(step.name, entry.digits, "invalid", tries))
                return ctx.plan.at(step.on_invalid, after=step)
            names = step.invalid_prompt + step.prompt
