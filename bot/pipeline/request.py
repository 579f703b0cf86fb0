"""Parsing what a creator typed after `/story` into a validated request.

Pure and total: every input yields either a ``StoryRequest`` or a ``RequestError`` with a
plain-words message the handler can show as an ephemeral. Nothing here raises on bad input.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MIN_DURATION_S = 5
MAX_DURATION_S = 180
DEFAULT_DURATION_S = 30
MAX_PROMPT_CHARS = 2000
MAX_TONE_CHARS = 100

USAGE = "Usage: `/story [duration] <prompt>`, for example `/story 30s eco water bottle launch`."

_DURATION = re.compile(
    r"^(?:(?P<m>\d{1,3})\s*(?:m|min|mins|minutes?))?\s*(?:(?P<s>\d{1,4})\s*(?:s|sec|secs|seconds?))?$",
    re.IGNORECASE,
)
_LOOKS_LIKE_DURATION = re.compile(
    r"^\d+(?:[.,]\d+)?\s*(?:h|hrs?|hours?|ms|s|secs?|seconds?|m|mins?|minutes?)$", re.IGNORECASE
)


@dataclass(frozen=True)
class StoryRequest:
    prompt: str
    duration_s: int
    tone: str | None = None


@dataclass(frozen=True)
class RequestError:
    message: str
    field: str = "prompt"  # which input it is about: "prompt" | "duration" | "tone"


def parse_duration(token: str) -> int | None:
    """Parse ``15s``, ``30 s``, ``1m``, ``1m30s`` or ``90sec`` into seconds.

    A bare number is not a duration: "3 friends go hiking" is a prompt.
    """
    token = token.strip()
    match = _DURATION.match(token)
    if not match or not (match.group("m") or match.group("s")):
        return None
    return int(match.group("m") or 0) * 60 + int(match.group("s") or 0)


def clean_text(text: str) -> str:
    """Drop control and format characters (keeping newlines and tabs) and trim."""
    kept = [ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in {"Cc", "Cf", "Cs"}]
    return "".join(kept).strip()


_EMOJI_SHORTCODE = re.compile(r":[a-z0-9_+'-]+:", re.IGNORECASE)


def _has_letters_or_digits(text: str) -> bool:
    """Words, not only emoji — Slack sends emoji in command text as ``:shortcodes:``."""
    return any(ch.isalnum() for ch in _EMOJI_SHORTCODE.sub(" ", text))


def validate(prompt: str, duration_s: int, tone: str | None = None) -> StoryRequest | RequestError:
    """Check a prompt and duration however they were entered (command text or modal)."""
    prompt = clean_text(prompt)
    if not prompt:
        return RequestError(f"Tell me what the video is about. {USAGE}")
    if len(prompt) > MAX_PROMPT_CHARS:
        return RequestError(
            f"Your prompt is {len(prompt):,} characters; the limit is {MAX_PROMPT_CHARS:,}. "
            "Shorten it and try again — the team can add detail in the thread."
        )
    if not _has_letters_or_digits(prompt):
        return RequestError(f"Describe the video in words, not only symbols or emoji. {USAGE}")
    if not MIN_DURATION_S <= duration_s <= MAX_DURATION_S:
        return RequestError(
            f"The duration must be between {MIN_DURATION_S} s and {MAX_DURATION_S} s "
            f"(3 min); you asked for {duration_s} s. {USAGE}",
            field="duration",
        )
    tone = clean_text(tone or "") or None
    if tone and len(tone) > MAX_TONE_CHARS:
        return RequestError(f"Keep the tone under {MAX_TONE_CHARS} characters.", field="tone")
    return StoryRequest(prompt=prompt, duration_s=duration_s, tone=tone)


def parse_command_text(text: str) -> StoryRequest | RequestError | None:
    """Parse `/story` text. ``None`` means "no text": the caller opens the modal."""
    text = clean_text(text)
    if not text:
        return None
    words = text.split(maxsplit=4)
    # The longest run of leading words that reads as a duration: "90s", "30 s", "1m 30s".
    for count in range(min(4, len(words)), 0, -1):
        duration = parse_duration("".join(words[:count]))
        if duration is not None:
            rest = text.split(maxsplit=count)[count] if len(words) > count else ""
            if not rest.strip():
                return RequestError(f"Add a prompt after the duration. {USAGE}")
            return validate(rest, duration)
    first = words[0]
    if _LOOKS_LIKE_DURATION.match(first) and len(words) > 1:
        return RequestError(
            f"I couldn't read the duration “{first[:20]}”. Use seconds or minutes like "
            f"`15s`, `30s`, `1m` or `90s`. {USAGE}"
        )
    return validate(text, DEFAULT_DURATION_S)
