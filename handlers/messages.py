"""Thread replies: a human's message in a session thread is feedback; everything else is noise.

Noise is dropped in one place (``is_human_reply``): edits, deletions, joins, bot messages (ours
come back as events) and top-level messages. Whether the thread is a session's is decided by the
intake script itself, in the same round trip that records the reply.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from bot.pipeline.intent import wants_regenerate
from bot.pipeline.models import Turn, TurnRole
from bot.pipeline.request import clean_text
from bot.pipeline.triggers import Feedback
from bot.services import HandlerServices

log = logging.getLogger(__name__)
HUMAN_SUBTYPES = (None, "thread_broadcast", "file_share")
MAX_FEEDBACK_CHARS = 4000


def _text_field(event: dict[str, Any], name: str) -> bool:
    value = event.get(name)
    return isinstance(value, str) and bool(value)


def is_human_reply(event: dict[str, Any]) -> bool:
    return (
        event.get("subtype") in HUMAN_SUBTYPES
        and not event.get("bot_id")
        and not event.get("bot_profile")
        and all(_text_field(event, name) for name in ("user", "channel", "ts", "thread_ts"))
        and isinstance(event.get("text", ""), str)
        and event.get("thread_ts") != event.get("ts")
    )


def is_noise(body: dict[str, Any]) -> bool:
    """A ``message`` event that can't be feedback: most of what Slack delivers — every post and
    edit the app makes comes back as one (about 40 per session against 6 triggers) — so the
    listener acks these before Bolt's dispatch (``bot/runtime.py``). The same test as
    ``handle_message``'s, so nothing it would record is ever dropped here."""
    if body.get("type") != "event_callback":
        return False
    event = body.get("event")
    return isinstance(event, dict) and event.get("type") == "message" and not is_human_reply(event)


def parse_reply(body: dict[str, Any], event: dict[str, Any]) -> tuple[Feedback, Turn] | None:
    if not is_human_reply(event):
        return None
    team_id = body.get("team_id") or event.get("team")
    text = clean_text(str(event.get("text") or ""))[:MAX_FEEDBACK_CHARS]
    if not team_id or not text:
        return None
    feedback = Feedback(
        team_id=str(team_id),
        channel_id=str(event["channel"]),
        user_id=str(event["user"]),
        session_id="",
        thread_ts=str(event["thread_ts"]),
        ts=str(event["ts"]),
        text=text,
        wants_regenerate=wants_regenerate(text),
    )
    turn = Turn(role=TurnRole.USER, ts=feedback.ts, user_id=feedback.user_id, text=text)
    return feedback, turn


def register(app: AsyncApp, services: HandlerServices) -> None:
    async def handle_message(
        body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        """Record a thread reply as feedback (Bolt acks once this returns)."""
        parsed = parse_reply(body, event)
        if parsed is None:
            return
        to_us = bool(context.bot_user_id) and event.get("parent_user_id") == context.bot_user_id
        # Raising here makes Bolt answer 500 (HTTP) / skip the ack (Socket Mode): Slack retries.
        await services.intake.submit_feedback(*parsed, replying_to_us=to_us)
        services.crash.reach("after_intake")

    app.event("message")(handle_message)
