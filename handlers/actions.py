"""Approve, Regenerate, Retry and Redo buttons of every stage: each click is recorded durably,
then acked.

Who may act and whether the version is current are decided by the worker under the session
lease, so twenty simultaneous clicks still produce exactly one winner and polite refusals.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond

from bot.pipeline.triggers import Approve, Cancel, Click, Confirm, Redo, Regenerate, Retry
from bot.services import HandlerServices
from bot.slack.actions import ActionId, parse_button
from handlers import replies, workspace

log = logging.getLogger(__name__)
ClickType = (
    type[Approve] | type[Regenerate] | type[Retry] | type[Redo] | type[Confirm] | type[Cancel]
)
CLICKS: dict[ActionId, ClickType] = {
    ActionId.APPROVE: Approve,
    ActionId.REGENERATE: Regenerate,
    ActionId.RETRY: Retry,
    ActionId.REDO: Redo,
    ActionId.CONFIRM: Confirm,
    ActionId.CANCEL: Cancel,
}


def parse_click(body: dict[str, Any]) -> Click | None:
    """The click as a trigger, or None when the payload or the button value is not ours."""
    actions = body.get("actions") or []
    action = actions[0] if actions and isinstance(actions[0], dict) else {}
    value = parse_button(action.get("value"))
    kind = (
        CLICKS.get(ActionId(action["action_id"]))
        if action.get("action_id") in set(ActionId)
        else None
    )
    team_id = (body.get("team") or {}).get("id") or (body.get("user") or {}).get("team_id")
    user_id = (body.get("user") or {}).get("id")
    channel_id = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id"
    )
    message_ts = (body.get("container") or {}).get("message_ts")
    action_ts = action.get("action_ts")
    if not (value and kind and team_id and user_id and channel_id and message_ts and action_ts):
        return None
    common: dict[str, Any] = {
        "team_id": str(team_id),
        "channel_id": str(channel_id),
        "user_id": str(user_id),
        "session_id": value.session,
        "stage": value.stage,
        "version": value.version,
        "message_ts": str(message_ts),
        "action_ts": str(action_ts),
        "response_url": body.get("response_url"),
    }
    if kind is Redo:
        # A Redo names its item; one without (forged, or another button's value) is not ours.
        return Redo(**common, item=value.item) if value.item is not None else None
    return kind(**common)


def register(app: AsyncApp, services: HandlerServices) -> None:
    async def handle_story_button(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        """Record an Approve / Regenerate / Retry click."""
        if workspace.is_foreign(context, workspace.payload_team(body), "click"):
            await ack()
            await respond(
                text=replies.OTHER_WORKSPACE, response_type="ephemeral", replace_original=False
            )
            return
        click = parse_click(body)
        failed = click is not None and not await services.record(click)
        await ack()
        if click is None or failed:
            try:
                await respond(
                    text=replies.UNAVAILABLE if failed else replies.STALE_BUTTON,
                    response_type="ephemeral",
                    replace_original=False,
                )
            except Exception:
                log.warning("could not answer a click", exc_info=True)

    async def handle_unknown_button(ack: AsyncAck, respond: AsyncRespond) -> None:
        """A button we don't know (an old or forged message): answer instead of timing out."""
        await ack()
        try:
            await respond(
                text=replies.STALE_BUTTON, response_type="ephemeral", replace_original=False
            )
        except Exception:
            log.warning("could not answer an unknown button", exc_info=True)

    for action_id in ActionId:
        app.action(action_id.value)(handle_story_button)
    app.action(re.compile(".+"))(handle_unknown_button)  # registered last: first match wins
