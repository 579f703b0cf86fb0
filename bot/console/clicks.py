"""Which button a typed line names, if any.

Pure: no I/O. A short line is matched against the buttons on screen, the open modal first and
then the most recently shown message first: the exact label (``approve``), a label's unique
beginning (``generate video`` for "Generate video (≈ $1.20)"), or the last word of the button's
action id (``confirm`` for ``video_confirm``). A menu is used as ``<menu> <option>``. Anything
longer than a few words is never a click: it is a reply.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from bot.console.forms import Invalid, pick_option
from bot.console.payloads import JSON
from bot.console.render import Control, loose

MAX_WORDS = 6


@dataclass(frozen=True)
class Hit:
    """Click ``control`` on surface number ``surface`` (with ``option`` for a menu)."""

    control: Control
    surface: int
    option: JSON | None = None


@dataclass(frozen=True)
class Ambiguous:
    """Several buttons start with what was typed."""

    handles: tuple[str, ...]


@dataclass(frozen=True)
class MenuOnly:
    """A menu was named without a choice (or with one it doesn't have)."""

    control: Control


Found = Hit | Ambiguous | MenuOnly | None


def _in_surface(words: str, controls: Sequence[Control], surface: int) -> Found:
    for control in controls:
        if loose(control.handle) == words:
            return MenuOnly(control) if control.kind == "select" else Hit(control, surface)
    for control in controls:
        handle = loose(control.handle)
        if control.kind == "select" and words.startswith(handle + " "):
            rest = words[len(handle) + 1 :]
            try:
                option = pick_option(control.options, rest, by_position=False)
            except Invalid:
                return MenuOnly(control)
            return Hit(control, surface, option)
    buttons = [c for c in controls if c.kind == "button"]
    starts = [c for c in buttons if loose(c.handle).startswith(words + " ")]
    if len(starts) == 1:
        return Hit(starts[0], surface)
    if len(starts) > 1:
        return Ambiguous(tuple(c.handle for c in starts))
    aliased = [c for c in buttons if c.alias and c.alias == words]
    if len(aliased) == 1:
        return Hit(aliased[0], surface)
    return None


def find(line: str, surfaces: Sequence[Sequence[Control]]) -> Found:
    """The control ``line`` names, searching ``surfaces`` in order; None: it's not a click."""
    words = loose(line)
    if not words or len(words.split()) > MAX_WORDS:
        return None
    for index, controls in enumerate(surfaces):
        found = _in_surface(words, controls, index)
        if found is not None:
            return found
    return None


def near_miss(line: str, surfaces: Sequence[Sequence[Control]]) -> str | None:
    """A button ``line`` looks like a typo of (one or two words only), for a hint."""
    words = loose(line)
    if not words or len(words.split()) > 2:
        return None
    handles = {loose(c.handle) for controls in surfaces for c in controls}
    close = difflib.get_close_matches(words, sorted(handles), n=1, cutoff=0.75)
    return close[0] if close else None
