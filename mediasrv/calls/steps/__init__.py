"""One module per verb; :data:`HANDLERS` maps each step type to its coroutine."""

from __future__ import annotations

from typing import Any

from ..plan import (
    Answer,
    Branch,
    Classify,
    Dial,
    Enqueue,
    Goto,
    Hangup,
    Menu,
    Play,
    Reject,
    Voicemail,
)
from . import basic, dial, enqueue, menu, voicemail

HANDLERS: dict[type, Any] = {
    Reject: basic.reject,
    Answer: basic.answer,
    Play: basic.play,
    Branch: basic.branch,
    Classify: basic.classify,
    Goto: basic.goto,
    Hangup: basic.hangup,
    Menu: menu.menu,
    Dial: dial.dial,
    Enqueue: enqueue.enqueue,
    Voicemail: voicemail.voicemail,
}
