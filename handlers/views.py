"""The "new story" modal: field errors inline, otherwise the same durable start as `/story`."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.pipeline.request import RequestError, validate
from bot.pipeline.triggers import StartSession, session_id_for
from bot.services import HandlerServices
from bot.slack import actions as ids
from handlers import replies

log = logging.getLogger(__name__)


def _value(values: dict[str, Any], block: str, action: str) -> dict[str, Any]:
    found = values.get(block, {}).get(action, {})
    return found if isinstance(found, dict) else {}


def register(app: AsyncApp, services: HandlerServices) -> None:
    async def handle_start_modal(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        """Start a story session from the modal."""
        values = (view.get("state") or {}).get("values") or {}
        prompt = _value(values, ids.PROMPT_BLOCK, ids.PROMPT_ACTION).get("value") or ""
        option = _value(values, ids.DURATION_BLOCK, ids.DURATION_ACTION).get("selected_option")
        tone = _value(values, ids.TONE_BLOCK, ids.TONE_ACTION).get("value")
        raw_duration = str(option.get("value")) if isinstance(option, dict) else ""
        duration = int(raw_duration) if raw_duration.isdigit() else ids.DEFAULT_DURATION_S
        parsed = validate(str(prompt), duration, str(tone) if tone else None)
        if isinstance(parsed, RequestError):
            block = ids.TONE_BLOCK if "tone" in parsed.message else ids.PROMPT_BLOCK
            if "duration" in parsed.message:
                block = ids.DURATION_BLOCK
            await ack(response_action="errors", errors={block: parsed.message[:150]})
            return
        channel_id = str(view.get("private_metadata") or "")
        team_id = str((body.get("team") or {}).get("id") or view.get("team_id") or "")
        user_id = str((body.get("user") or {}).get("id") or "")
        view_id = str(view.get("id") or "")
        if not (channel_id and team_id and user_id and view_id) or channel_id.startswith("D"):
            await ack(response_action="errors", errors={ids.PROMPT_BLOCK: replies.NO_DMS[:150]})
            return
        trigger = StartSession(
            team_id=team_id,
            channel_id=channel_id,
            user_id=user_id,
            session_id=session_id_for(team_id, view_id),
            prompt=parsed.prompt,
            duration_s=parsed.duration_s,
            tone=parsed.tone,
        )
        try:
            await services.intake.submit(trigger)
        except Exception:
            log.exception("intake failed for the start modal")
            await ack(
                response_action="errors", errors={ids.PROMPT_BLOCK: replies.UNAVAILABLE[:150]}
            )
            return
        services.crash.reach("after_intake")
        await ack()

    app.view(ids.START_MODAL_CALLBACK)(handle_start_modal)
