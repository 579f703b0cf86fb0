"""`/story [duration] <prompt>`: validate, record durably, ack. No text opens the modal.
`/story delete <link or id>` deletes a session's data (handlers/deletion.py)."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.pipeline.deletion import parse_delete
from bot.pipeline.request import RequestError, parse_command_text
from bot.pipeline.triggers import StartSession, session_id_for
from bot.services import HandlerServices
from bot.slack import blocks
from handlers import replies, workspace
from handlers.deletion import handle_delete

log = logging.getLogger(__name__)


def is_direct_message(channel_id: str, channel_name: str) -> bool:
    return (
        channel_id.startswith("D")
        or channel_name in ("directmessage", "mpdm")
        or (channel_name.startswith("mpdm-"))
    )


def register(app: AsyncApp, services: HandlerServices) -> None:
    async def handle_story_command(
        ack: AsyncAck,
        command: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        """Start a story session from `/story`."""
        channel_id = str(command.get("channel_id", ""))
        team_id = str(command.get("team_id", ""))
        user_id = str(command.get("user_id", ""))
        trigger_id = str(command.get("trigger_id", ""))
        if not (channel_id and team_id and user_id and trigger_id):
            await ack(response_type="ephemeral", text="That request was incomplete; try again.")
            return
        if workspace.is_foreign(context, team_id, "command"):
            await ack(response_type="ephemeral", text=replies.OTHER_WORKSPACE)
            return
        text = str(command.get("text") or "")
        if (delete := parse_delete(text)) is not None:
            await handle_delete(
                ack,
                delete,
                services,
                team_id=team_id,
                channel_id=channel_id,
                user_id=user_id,
                trigger_id=trigger_id,
                response_url=command.get("response_url"),
            )
            return
        if is_direct_message(channel_id, str(command.get("channel_name", ""))):
            await ack(response_type="ephemeral", text=replies.NO_DMS)
            return
        parsed = parse_command_text(text)
        if parsed is None:
            await ack()
            try:
                await client.views_open(
                    trigger_id=trigger_id,
                    view=blocks.start_modal(
                        channel_id=channel_id,
                        default_policy=services.settings.approval_policy,
                    ),
                )
            except Exception:
                log.exception("views.open failed")
            return
        if isinstance(parsed, RequestError):
            await ack(response_type="ephemeral", text=parsed.message)
            return
        trigger = StartSession(
            team_id=team_id,
            channel_id=channel_id,
            user_id=user_id,
            session_id=session_id_for(team_id, trigger_id),
            prompt=parsed.prompt,
            duration_s=parsed.duration_s,
            response_url=command.get("response_url"),
        )
        if not await services.record(trigger):
            await ack(response_type="ephemeral", text=replies.UNAVAILABLE)
            return
        await ack()

    app.command("/story")(handle_story_command)
