"""Recognising "rewrite the story" (or "regenerate the images", "redo the storyboard") in a
thread reply without asking the LLM: a request for a new version of the current stage.

Only clear, short requests count; anything subtler goes to the LLM, whose feedback answer
carries its own ``wants_regenerate`` judgement.
"""

from __future__ import annotations

import re

# What a request may name: the current stage's artifact, in the words people use for it.
_WHAT = (
    r"(?:it|this|that|them|(?:the\s+)?"
    r"(?:story|script|images|image\s+set|set|pictures|storyboard|shot\s+list|shots|board))"
)
_PHRASES = re.compile(
    rf"""^\W*(?:please\s+|pls\s+|ok(?:ay)?[,!.]?\s+|now\s+|can\s+you\s+|could\s+you\s+)*
    (?:
        regenerate(?:\s+{_WHAT})?
      | rewrite(?:\s+{_WHAT})?
      | try\s+again
      | redo(?:\s+(?:all|everything|{_WHAT}))?
      | (?:make|write)\s+(?:a\s+)?new\s+version
    )
    (?:\s+(?:please|pls|now|with\s+(?:that|these|those|the)\s+changes?))*\W*$""",
    re.IGNORECASE | re.VERBOSE,
)

_MAX_INTENT_LENGTH = 80


def wants_regenerate(text: str) -> bool:
    """True when a short reply is plainly a request for a new version of the current stage."""
    stripped = re.sub(r"<@[A-Z0-9]+(?:\|[^>]*)?>", " ", text).strip()
    if len(stripped) > _MAX_INTENT_LENGTH:
        return False
    return bool(_PHRASES.match(stripped))
