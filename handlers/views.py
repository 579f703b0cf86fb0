"""The "new story" modal: field errors inline, otherwise the same durable start as `/story`.

Also answers the modal's user-group picker (an external select) from ``usergroups.list``: a
read for one person's dropdown, the one place a handler asks Slack something before its ack.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.pipeline.approvals import ApprovalPolicy, Rule, named
from bot.pipeline.models import MAX_QUORUM
from bot.pipeline.request import RequestError, validate
from bot.pipeline.triggers import StartSession, session_id_for
from bot.services import HandlerServices
from bot.slack import actions as ids
from handlers import replies, workspace

log = logging.getLogger(__name__)
FIELD_BLOCKS = {"prompt": ids.PROMPT_BLOCK, "duration": ids.DURATION_BLOCK, "tone": ids.TONE_BLOCK}
_DURATION_VALUE = re.compile(r"[0-9]{1,4}")
_HANDLE = re.compile(r"@[a-z0-9][a-z0-9._-]{0,79}")


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _value(values: dict[str, Any], block: str, action: str) -> dict[str, Any]:
    """One input's state, tolerating any shape a forged submission might have."""
    return _dict(_dict(values.get(block)).get(action))


def parse_channel(view: dict[str, Any]) -> str:
    """The channel the story lives in: the picker's choice, else the one the modal came from."""
    values = _dict(_dict(view.get("state")).get("values"))
    picked = _value(values, ids.CHANNEL_BLOCK, ids.CHANNEL_ACTION).get("selected_conversation")
    if isinstance(picked, str) and picked:
        return picked
    return str(view.get("private_metadata") or "")


def picked_response_url(body: dict[str, Any], channel_id: str) -> str | None:
    """The response_url Slack gave for the picked channel (``response_url_enabled``)."""
    for entry in body.get("response_urls") or []:
        if isinstance(entry, dict) and entry.get("channel_id") == channel_id:
            url = entry.get("response_url")
            return url if isinstance(url, str) and url.startswith(("https://", "http://")) else None
    return None


def parse_policy_inputs(
    view: dict[str, Any], default: ApprovalPolicy
) -> ApprovalPolicy | tuple[str, str]:
    """The approval rule picked in the modal, or ``(block_id, message)`` to show inline."""
    values = _dict(_dict(view.get("state")).get("values"))
    if ids.RULE_BLOCK not in values:
        return default  # a modal built before the approval inputs existed
    chosen = _dict(_value(values, ids.RULE_BLOCK, ids.RULE_ACTION).get("selected_option"))
    raw_rule = chosen.get("value")
    if raw_rule not in set(Rule):
        return ids.RULE_BLOCK, "Pick who approves each step."
    rule = Rule(str(raw_rule))
    if rule is Rule.QUORUM:
        raw = _value(values, ids.QUORUM_BLOCK, ids.QUORUM_ACTION).get("value")
        if raw in (None, ""):
            return ApprovalPolicy(rule=rule, needed=2)
        if not isinstance(raw, str) or not raw.isdigit() or not 2 <= int(raw) <= MAX_QUORUM:
            return ids.QUORUM_BLOCK, f"Enter a whole number from 2 to {MAX_QUORUM}."
        return ApprovalPolicy(rule=rule, needed=int(raw))
    if rule is Rule.NAMED:
        users = _value(values, ids.APPROVERS_BLOCK, ids.APPROVERS_ACTION).get("selected_users")
        picked = _dict(_value(values, ids.GROUP_BLOCK, ids.GROUP_ACTION).get("selected_option"))
        group = picked.get("value") if isinstance(picked.get("value"), str) else None
        handle = _dict(picked.get("text")).get("text")
        policy = named(
            [u for u in users if isinstance(u, str)] if isinstance(users, list) else [],
            group,
            handle if isinstance(handle, str) and _HANDLE.fullmatch(handle) else None,
        )
        if not policy.users and policy.group is None:
            return ids.APPROVERS_BLOCK, "Pick at least one approver, or a user group below."
        return policy
    return ApprovalPolicy(rule=rule)


def group_options(groups: object, query: str) -> list[dict[str, Any]]:
    """``usergroups.list``'s groups as external-select options, filtered by what was typed."""
    wanted = query.strip().lstrip("@").lower()
    options: list[dict[str, Any]] = []
    for group in groups if isinstance(groups, list) else []:
        if not isinstance(group, dict):
            continue
        gid, handle, name = group.get("id"), group.get("handle"), group.get("name")
        if not (
            isinstance(gid, str) and isinstance(handle, str) and _HANDLE.fullmatch("@" + handle)
        ):
            continue
        if wanted and wanted not in handle.lower() and wanted not in str(name or "").lower():
            continue
        options.append({"text": {"type": "plain_text", "text": f"@{handle}"}, "value": gid})
    return options[:100]


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
    async def handle_start_modal(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        """Start a story session from the modal."""
        parsed = validate(*parse_modal(view))
        if isinstance(parsed, RequestError):
            block = FIELD_BLOCKS.get(parsed.field, ids.PROMPT_BLOCK)
            await ack(response_action="errors", errors={block: parsed.message[:150]})
            return
        policy = parse_policy_inputs(view, services.settings.approval_policy)
        if isinstance(policy, tuple):
            await ack(response_action="errors", errors={policy[0]: policy[1][:150]})
            return
        channel_id = parse_channel(view)
        team_id = str((body.get("team") or {}).get("id") or view.get("team_id") or "")
        if workspace.is_foreign(context, team_id, "modal"):
            await ack(
                response_action="errors", errors={ids.PROMPT_BLOCK: replies.OTHER_WORKSPACE[:150]}
            )
            return
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
            policy=policy,
            response_url=picked_response_url(body, channel_id),
        )
        if not await services.record(trigger):
            await ack(
                response_action="errors", errors={ids.PROMPT_BLOCK: replies.UNAVAILABLE[:150]}
            )
            return
        await ack()

    async def handle_group_options(
        ack: AsyncAck, payload: dict[str, Any], client: AsyncWebClient
    ) -> None:
        """The approver-group dropdown: the workspace's user groups matching what was typed."""
        try:
            resp = await client.usergroups_list(include_disabled=False)
            options = group_options(resp.get("usergroups"), str(payload.get("value") or ""))
        except Exception:
            log.warning("usergroups.list failed", exc_info=True)
            options = []
        await ack(options=options)

    app.view(ids.START_MODAL_CALLBACK)(handle_start_modal)
    app.options(ids.GROUP_ACTION)(handle_group_options)
