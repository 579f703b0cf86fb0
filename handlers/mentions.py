"""`@storyloop [duration] <prompt>` in a channel: a story threaded on the mention.

Slack sends a mention twice when the app also gets ``message.*`` events (SLACK.md §2.6): as an
``app_mention`` and as a ``message`` with the same channel and ts. The two are kept apart so
each mention is acted on once:

- A top-level mention starts a session. Its id derives from ``team:channel:ts``, so a
  re-delivered event maps onto the same job; the message handler ignores top-level messages.
- A mention in a thread is a thread reply. It is recorded as exactly the feedback the message
  handler would record (same parse, same job id ``msg:team:channel:ts``) through the same intake
  script, which dedupes: whichever delivery comes first is recorded, the other is a duplicate.
  So a mention in a session thread is answered once — even when the ``message`` event never
  comes (an app subscribed to ``app_mention`` only). The script also says whether the thread is
  a session's; if not, the author is told how to start one.

Hints go to the author only (``chat.postEphemeral``), after the ack (handlers/afterack.py).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.pipeline.request import RequestError, parse_command_text
from bot.pipeline.triggers import StartSession, session_id_for
from bot.services import HandlerServices
from bot.slack import blocks
from handlers import replies, workspace
from handlers.afterack import AfterAck
from handlers.messages import parse_reply
from storage.intake import Outcome

log = logging.getLogger(__name__)
_ANY_LEADING_MENTION = re.compile(r"^\s*<@[A-Z0-9]+(?:\|[^>]*)?>")
_SPACES = re.compile(r"[ \t]{2,}")


class IntakeUnavailable(RuntimeError):
    """Storage didn't record the mention: Bolt answers 500 / no ack, so Slack redelivers it."""


def without_bot_mentions(text: str, bot_user_id: str | None) -> str:
    """``text`` with every mention of the bot (``<@U…>`` or ``<@U…|name>``) taken out.

    Without a known bot id only a leading mention is removed: Slack delivers ``app_mention``
    only when the bot is mentioned, and people start with it.
    """
    if bot_user_id:
        pattern = re.compile(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>")
        text = pattern.sub(" ", text)
    else:
        text = _ANY_LEADING_MENTION.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def _fields(event: dict[str, Any]) -> tuple[str, str, str] | None:
    """Channel, user and ts of a human's mention; None for anything else (bots, odd shapes)."""
    if event.get("bot_id") or event.get("subtype"):
        return None
    values = tuple(event.get(name) for name in ("channel", "user", "ts"))
    if not all(isinstance(v, str) and v for v in values):
        return None
    return str(values[0]), str(values[1]), str(values[2])


def register(app: AsyncApp, services: HandlerServices) -> None:
    after = AfterAck()

    def hint(
        client: AsyncWebClient, channel: str, user: str, text: str, thread_ts: str | None = None
    ) -> None:
        # Escaped: a refusal may quote what was typed.
        msg = blocks.ephemeral(text)
        after.run(
            "mention hint",
            client.chat_postEphemeral(
                channel=channel, user=user, text=msg.text, blocks=msg.blocks, thread_ts=thread_ts
            ),
        )

    async def handle_mention(
        body: dict[str, Any],
        event: dict[str, Any],
        context: AsyncBoltContext,
        client: AsyncWebClient,
    ) -> None:
        """Start a story from a top-level mention; a mention in a thread is a reply."""
        team_id = str(body.get("team_id") or event.get("team") or "")
        fields = _fields(event)
        if fields is None or not team_id or workspace.is_foreign(context, team_id, "mention"):
            return
        channel, user, ts = fields
        thread_ts = event.get("thread_ts")
        if isinstance(thread_ts, str) and thread_ts and thread_ts != ts:
            parsed_reply = parse_reply(body, event)
            if parsed_reply is None:
                return
            to_us = bool(context.bot_user_id) and event.get("parent_user_id") == context.bot_user_id
            # Raising here makes Slack redeliver, exactly like the message handler.
            outcome = await services.intake.submit_feedback(*parsed_reply, replying_to_us=to_us)
            if outcome is Outcome.NOT_OURS:
                hint(client, channel, user, replies.MENTION_IN_THREAD, thread_ts)
            return
        if channel.startswith("D") or event.get("channel_type") in ("im", "mpim"):
            hint(client, channel, user, replies.NO_DMS)
            return
        text = without_bot_mentions(str(event.get("text") or ""), context.bot_user_id)
        parsed = parse_command_text(text)
        if parsed is None:
            hint(client, channel, user, replies.MENTION_HINT)
            return
        if isinstance(parsed, RequestError):
            hint(client, channel, user, parsed.message)
            return
        trigger = StartSession(
            team_id=team_id,
            channel_id=channel,
            user_id=user,
            # The mention's identity: its re-delivery maps onto the same session and job.
            session_id=session_id_for(team_id, f"{channel}:{ts}"),
            prompt=parsed.prompt,
            duration_s=parsed.duration_s,
            thread_ts=ts,
        )
        if not await services.record(trigger):
            raise IntakeUnavailable("the mention was not recorded; Slack will redeliver it")

    app.event("app_mention")(handle_mention)
