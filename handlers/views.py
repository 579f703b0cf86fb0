"""The "new story" modal: field errors inline, otherwise the same durable start as `/story`."""

from __future__ import annotations

import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.pipeline.request import RequestError, validate
from bot.pipeline.triggers import StartSession, session_id_for
from bot.services import HandlerServices
from bot.slack import actions as ids
from handlers import replies

FIELD_BLOCKS = {"prompt": ids.PROMPT_BLOCK, "duration": ids.DURATION_BLOCK, "tone": ids.TONE_BLOCK}
_DURATION_VALUE = re.compile(r"[0-9]{1,4}")


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _value(values: dict[str, Any], block: str, action: str) -> dict[str, Any]:
    """One input's state, tolerating any shape a forged submission might have."""
    return _dict(_dict(values.get(block)).get(action))


def parse_modal(view: dict[str, Any]) -> tuple[str, int, str | None]:
    """The modal's prompt, duration (s) and tone; missing or odd inputs fall back safely."""
    values = _dict(_dict(view.get("state")).get("values"))
    prompt = _value(values, ids.PROMPT_BLOCK, ids.PROMPT_ACTION).get("value")
    option = _dict(_value(values, ids.DURATION_BLOCK, ids.DURATION_ACTION).get("selected_option"))
    tone = _value(values, ids.TONE_BLOCK, ids.TONE_ACTION).get("value")
    raw = option.get("value")
    duration = (
        int(raw)
        if isinstance(raw, str) and _DURATION_VALUE.fullmatch(raw)
        else ids.DEFAULT_DURATION_S
    )
    return (
        prompt if isinstance(prompt, str) else "",
        duration,
        tone if isinstance(tone, str) and tone else None,
    )


def register(app: AsyncApp, services: HandlerServices) -> None:
    async def handle_start_modal(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        """Start a story session from the modal."""
        parsed = validate(*parse_modal(view))
        if isinstance(parsed, RequestError):
            block = FIELD_BLOCKS.get(parsed.field, ids.PROMPT_BLOCK)
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
        if not await services.record(trigger):
            await ack(
                response_action="errors", errors={ids.PROMPT_BLOCK: replies.UNAVAILABLE[:150]}
            )
            return
        await ack()

    app.view(ids.START_MODAL_CALLBACK)(handle_start_modal)
