"""How a playlist names prompts: store names in, file paths out.

The engine plays files (:meth:`MediaControl.play` takes Paths, so a remote media node can
get the same commands); a call flow names prompts (``"welcome"``, ``"number_3"``). The
prompt store (``outputs/prompts.py``) implements :class:`PromptLoader` and is passed in
from ``app.py``, so neither ``calls/`` nor ``media/`` knows where prompts live.
Every path a loader returns is an 8 kHz mono 16-bit WAV (converted by the store).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

QUEUE_NUMBERS = range(1, 21)  # the default set has number_1 .. number_20


class PromptName(enum.StrEnum):
    """The prompts of the default set (``mediasrv prompts build``)."""

    BEEP = "beep"
    WELCOME = "welcome"
    AFTER_HOURS = "after_hours"
    PLEASE_HOLD = "please_hold"
    QUEUE_POSITION = "queue_position"  # "you are caller number" ...
    QUEUE_POSITION_END = "queue_position_end"  # ... "in line, please hold"
    MENU = "menu"  # "please press the number for your enquiry"
    MENU_PRESS = "menu_press"  # <label> <number> "... press" (menu_option_names)
    MENU_REPEAT = "menu_repeat"  # "to hear this again, press #"
    INVALID_CHOICE = "invalid_choice"
    NO_INPUT = "no_input"
    VOICEMAIL_GREETING = "voicemail_greeting"
    RECORDING_CONSENT = "recording_consent"
    BUSY = "busy"
    GOODBYE = "goodbye"
    HOLD_MUSIC = "hold_music"


def number_name(n: int) -> str:
    """Store name of the spoken number ``n`` (1..20)."""
    if n not in QUEUE_NUMBERS:
        raise ValueError(f"the default set speaks numbers 1-20, not {n}")
    return f"number_{n}"


def digit_name(d: int) -> str:
    """Store name of the spoken digit ``d`` (0..9), for flows that read a number digit by
    digit; ``digit-1`` .. ``digit-9`` are the same files as ``number_1`` .. ``number_9``."""
    if not 0 <= d <= 9:
        raise ValueError(f"a digit is 0-9, not {d}")
    return f"digit-{d}"


def menu_option_names(label: str, key: int) -> list[str]:
    """One menu line, "for <label>, press <key>", from a business's own ``label`` prompt
    ("営業については、") and the default set's number and ``menu_press``."""
    return [label, number_name(key), PromptName.MENU_PRESS]


def queue_position_names(position: int) -> list[str]:
    """"You are caller number <position>" as three prompts played gap-free (issue 9 §2).

    Beyond 20 the number is left out (the sentence still reads well without it)."""
    if position in QUEUE_NUMBERS:
        return [PromptName.QUEUE_POSITION, number_name(position), PromptName.QUEUE_POSITION_END]
    return [PromptName.PLEASE_HOLD]


class PromptLoader(Protocol):
    """Resolves prompt names to converted files. Lookups are in memory: safe on the loop."""

    def resolve(self, name: str, business: str | None = None) -> Path:
        """The file of prompt ``name``: the business's own prompt of that name if it has
        one, else the default set's. Raises ``PromptError`` for an unknown name."""
        ...

    def playlist(self, names: Sequence[str], business: str | None = None) -> list[Path]:
        """:meth:`resolve` for each name, in order (for :meth:`MediaControl.play`)."""
        ...
