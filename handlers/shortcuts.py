"""The shortcuts: "New story" (global) and "Turn into a story" (on a message) open the start modal.

Both only open the modal; its submission (handlers/views.py) starts the session as `/story`
does. The global shortcut is used outside any channel, so its modal asks where the story lives
(a channel picker); the message shortcut's modal is for the message's channel, prefilled with
the message's text. Both ack at once; ``views.open`` follows (handlers/afterack.py) while the
``trigger_id`` is fresh.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.pipeline.request import clean_text
from bot.services import HandlerServices
from bot.slack import blocks
from handlers import replies, workspace
from handlers.afterack import AfterAck
from handlers.commands import is_direct_message
from handlers.mentions import without_bot_mentions

log = logging.getLogger(__name__)
NEW_STORY_CALLBACK = "new_story"
TURN_INTO_STORY_CALLBACK = "turn_into_story"


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _trigger_id(body: dict[str, Any]) -> str | None:
    value = body.get("trigger_id")
    return value if isinstance(value, str) and value else None


def register(app: AsyncApp, services: HandlerServices) -> None:
    after = AfterAck()

    def answer(respond: AsyncRespond, text: str) -> None:
        after.run(
            "shortcut answer",
            respond(text=text, response_type="ephemeral", replace_original=False),
        )

    async def handle_new_story(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        """Open the start modal with a channel picker."""
        await ack()
        trigger_id = _trigger_id(body)
        # Another workspace's global shortcut has nowhere to be answered (no response_url).
        if trigger_id is None or workspace.is_foreign(
            context, workspace.payload_team(body), "global shortcut"
        ):
            return
        view = blocks.start_modal(channel_id=None, default_policy=services.settings.approval_policy)
        after.run("views.open", client.views_open(trigger_id=trigger_id, view=view))

    async def handle_turn_into_story(
        ack: AsyncAck,
        body: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
        respond: AsyncRespond,
    ) -> None:
        """Open the start modal for the message's channel, prefilled with its text."""
        await ack()
        channel = _dict(body.get("channel"))
        channel_id = channel.get("id")
        trigger_id = _trigger_id(body)
        if not (isinstance(channel_id, str) and channel_id and trigger_id):
            return
        if workspace.is_foreign(context, workspace.payload_team(body), "message shortcut"):
            answer(respond, replies.OTHER_WORKSPACE)
            return
        if is_direct_message(channel_id, str(channel.get("name") or "")):
            answer(respond, replies.NO_DMS)
            return
        text = _dict(body.get("message")).get("text")
        prompt = clean_text(
            without_bot_mentions(text if isinstance(text, str) else "", context.bot_user_id)
        )
        view = blocks.start_modal(
            channel_id=channel_id,
            prompt=prompt,
            default_policy=services.settings.approval_policy,
        )
        after.run("views.open", client.views_open(trigger_id=trigger_id, view=view))

    app.global_shortcut(NEW_STORY_CALLBACK)(handle_new_story)
    app.message_shortcut(TURN_INTO_STORY_CALLBACK)(handle_turn_into_story)
