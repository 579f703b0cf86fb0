"""Who may approve a stage (and, later, confirm paid work): the approval rules, as one pure
function every stage's Approve goes through."""

from __future__ import annotations

from bot.pipeline.models import Session


def may_approve(s: Session, user_id: str, *, policy: str) -> bool:
    """``owner``: only the session's creator (the default); ``anyone``: anyone who can click."""
    return policy == "anyone" or user_id == s.owner_id
