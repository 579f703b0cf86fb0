"""Safe text for Slack: escaping, intended mentions, and cutting text to Slack's limits.

Slack parses ``&``, ``<`` and ``>`` as control characters in ``mrkdwn`` and message ``text``, so
user- or LLM-written text could otherwise ping ``<!channel>``, mention people or forge links.
Everything a builder shows that we did not write ourselves goes through :func:`escape`; mentions
the bot *intends* are built with :func:`mention` after escaping. Cutting helpers never split an
escape entity (``&amp;``) or one of our own ``<…>`` sequences, which would leave a broken or, worse,
a live control sequence behind.
"""

from __future__ import annotations

import re

__all__ = ["ELLIPSIS", "escape", "mention", "split_text", "truncate"]

ELLIPSIS = "…"

_USER_ID = re.compile(r"[UW][A-Z0-9]+")
_ENTITIES = ("&amp;", "&lt;", "&gt;")
_LONGEST_ENTITY = max(len(e) for e in _ENTITIES)
# How far back a cut looks for an unclosed "<" of a mention/link we composed ourselves.
_CONTROL_LOOKBACK = 64
# Boundaries split_text prefers, best first: paragraph, line, word.
_SEPARATORS = ("\n\n", "\n", " ")


def escape(text: str) -> str:
    """Neutralise Slack's three control characters (``&`` first, so entities aren't doubled).

    Nothing else is touched: Slack renders any other entity literally, so over-escaping would
    show users ``&quot;`` and friends.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mention(user_id: str) -> str:
    """A user mention for a real-looking Slack user id; anything else is shown as escaped text.

    Ids come from payloads we parsed, but a malformed one (``"U1> <!channel"``) must not be able
    to smuggle a control sequence into a message.
    """
    if _USER_ID.fullmatch(user_id):
        return f"<@{user_id}>"
    return escape(user_id)


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters, ending in "…" when anything was removed."""
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    if len(text) <= limit:
        return text
    cut = _safe_cut(text, limit - len(ELLIPSIS))
    return text[:cut].rstrip() + ELLIPSIS


def split_text(text: str, limit: int) -> list[str]:
    """Split ``text`` into pieces of at most ``limit`` characters for separate Slack blocks.

    Prefers paragraph breaks, then line breaks, then spaces, and only then cuts mid-word (never
    inside an escape entity). Pieces are packed greedily and stripped of the whitespace at their
    edges; blank pieces are dropped, so ``""`` gives ``[]`` and every piece is safe to put in a
    section (Slack rejects empty section text).
    """
    if limit < _LONGEST_ENTITY:
        raise ValueError(f"limit must be at least {_LONGEST_ENTITY}, got {limit}")
    return [stripped for piece in _split(text, limit, 0) if (stripped := piece.strip())]


def _split(text: str, limit: int, level: int) -> list[str]:
    if len(text) <= limit:
        return [text]
    if level == len(_SEPARATORS):
        return _hard_split(text, limit)
    sep = _SEPARATORS[level]
    out: list[str] = []
    current = ""
    for part in text.split(sep):
        candidate = f"{current}{sep}{part}" if current else part
        if len(candidate) <= limit:
            current = candidate
            continue
        if current:
            out.append(current)
        # An over-long part is split at the next finer boundary; its last piece stays open so
        # the following parts can still join it (no needless tiny sections).
        *done, current = _split(part, limit, level + 1)
        out.extend(done)
    out.append(current)
    return out


def _hard_split(text: str, limit: int) -> list[str]:
    pieces: list[str] = []
    while len(text) > limit:
        cut = _safe_cut(text, limit) or limit
        pieces.append(text[:cut])
        text = text[cut:]
    pieces.append(text)
    return pieces


def _safe_cut(text: str, at: int) -> int:
    """The largest index ≤ ``at`` that doesn't fall inside an entity or a ``<…>`` we composed."""
    at = max(0, min(at, len(text)))
    amp = text.rfind("&", max(0, at - _LONGEST_ENTITY + 1), at)
    if amp != -1:
        for entity in _ENTITIES:
            if text.startswith(entity, amp) and amp + len(entity) > at:
                at = amp
                break
    # Escaped text has no raw "<"; one here is a mention/link the bot built on purpose.
    opening = text.rfind("<", max(0, at - _CONTROL_LOOKBACK), at)
    if opening > 0 and text.find(">", opening, at) == -1:
        at = opening
    return at
