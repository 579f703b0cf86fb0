"""Recognising "rewrite the story" in a thread reply without asking the LLM.

Only clear, short requests count; anything subtler goes to the LLM, whose feedback answer
carries its own ``wants_regenerate`` judgement.
"""

from __future__ import annotations

import re

_PHRASES = re.compile(
    r"""^\W*(?:please\s+|pls\s+|ok(?:ay)?[,!.]?\s+|now\s+|can\s+you\s+|could\s+you\s+)*
    (?:
        regenerate(?:\s+(?:it|this|that|the\s+story|story|the\s+script))?
      | rewrite(?:\s+(?:it|this|that|the\s+story|story|the\s+script))?
      | try\s+again
      | redo(?:\s+(?:it|this|the\s+story))?
      | (?:make|write)\s+(?:a\s+)?new\s+version
    )
    (?:\s+(?:please|pls|now|with\s+(?:that|these|those|the)\s+changes?))*\W*$""",
    re.IGNORECASE | re.VERBOSE,
)

_MAX_INTENT_LENGTH = 80


def wants_regenerate(text: str) -> bool:
    """True when a short reply is plainly a request to rewrite the story."""
    stripped = re.sub(r"<@[A-Z0-9]+(?:\|[^>]*)?>", " ", text).strip()
    if len(stripped) > _MAX_INTENT_LENGTH:
        return False
    return bool(_PHRASES.match(stripped))
