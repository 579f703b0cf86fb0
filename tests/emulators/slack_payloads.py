"""Builders for real-shaped Slack payloads (SLACK.md §1.2, §2, §3).

Pure functions: no I/O, no emulator state beyond what is passed in. Shapes follow the
samples in SLACK.md so that Bolt's matchers and the app's parsers see what production sees.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from typing import Any
from urllib.parse import urlencode

from tests.emulators.slack_state import JSON, StoredMessage

# ---------------------------------------------------------------------------------------------
# HTTP signing (SLACK.md §3)
# ---------------------------------------------------------------------------------------------


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """Slack request signature: ``v0=`` + hex HMAC-SHA256 of ``v0:{ts}:{raw body}``."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def encode_http_body(kind: str, payload: JSON) -> tuple[bytes, str]:
    """Encode a delivery the way Slack's HTTP sender does; returns ``(body, content_type)``.

    Events are JSON, slash commands are form fields, interactivity is one ``payload`` form
    field holding JSON.
    """
    if kind == "events_api" or kind == "url_verification":
        return json.dumps(payload).encode(), "application/json"
    if kind == "slash_commands":
        return urlencode({k: str(v) for k, v in payload.items()}).encode(), (
            "application/x-www-form-urlencoded"
        )
    return urlencode({"payload": json.dumps(payload)}).encode(), (
        "application/x-www-form-urlencoded"
    )


# ---------------------------------------------------------------------------------------------
# Socket Mode frames (SLACK.md §1.2)
# ---------------------------------------------------------------------------------------------


def hello_frame(app_id: str, num_connections: int) -> JSON:
    """First frame after the WebSocket upgrade."""
    return {
        "type": "hello",
        "num_connections": num_connections,
        "debug_info": {
            "host": "applink-emulator",
            "build_number": 1,
            "approximate_connection_time": 18060,
        },
        "connection_info": {"app_id": app_id},
    }


def disconnect_frame(reason: str) -> JSON:
    """Frame asking the client to reconnect (``warning``/``refresh_requested``/...)."""
    return {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-emulator"}}


def envelope(
    kind: str,
    payload: JSON,
    *,
    accepts_response_payload: bool,
    retry_attempt: int = 0,
    retry_reason: str = "",
    envelope_id: str | None = None,
) -> JSON:
    """A Socket Mode envelope; ``retry_*`` keys only on ``events_api`` like Slack's fixtures."""
    frame: JSON = {
        "envelope_id": envelope_id or str(uuid.uuid4()),
        "type": kind,
        "accepts_response_payload": accepts_response_payload,
        "payload": payload,
    }
    if kind == "events_api":
        frame["retry_attempt"] = retry_attempt
        frame["retry_reason"] = retry_reason
    return frame


# ---------------------------------------------------------------------------------------------
# Events API (SLACK.md §2.3-2.6)
# ---------------------------------------------------------------------------------------------


def event_callback(
    event: JSON,
    *,
    team_id: str,
    app_id: str,
    bot_user_id: str,
    event_id: str,
    event_time: int,
) -> JSON:
    """The Events API wrapper around one event."""
    return {
        "token": "legacy-verification-token",
        "team_id": team_id,
        "api_app_id": app_id,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": event_time,
        "event_context": "4-" + uuid.uuid4().hex[:24],
        "is_ext_shared_channel": False,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "event": event,
    }


_MENTION_RE = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


def rich_text_blocks(text: str) -> list[JSON]:
    """The ``rich_text`` block Slack's client attaches to a typed message (mentions split out)."""
    elements: list[JSON] = []
    pos = 0
    for match in _MENTION_RE.finditer(text):
        if match.start() > pos:
            elements.append({"type": "text", "text": text[pos : match.start()]})
        elements.append({"type": "user", "user_id": match.group(1)})
        pos = match.end()
    if pos < len(text):
        elements.append({"type": "text", "text": text[pos:]})
    return [
        {
            "type": "rich_text",
            "block_id": uuid.uuid4().hex[:5],
            "elements": [{"type": "rich_text_section", "elements": elements}],
        }
    ]


def message_body(msg: StoredMessage, *, team_id: str, bot_name: str = "") -> JSON:
    """The inner message object used in events (no channel, no thread stats)."""
    body: JSON = {"type": "message", "user": msg.user, "text": msg.text, "ts": msg.ts}
    body["team"] = team_id
    if msg.client_msg_id:
        body["client_msg_id"] = msg.client_msg_id
    if msg.bot_id:
        body["bot_id"] = msg.bot_id
        body["app_id"] = msg.app_id
        body["bot_profile"] = {
            "id": msg.bot_id,
            "app_id": msg.app_id,
            "name": bot_name,
            "team_id": team_id,
            "deleted": False,
        }
    if msg.blocks is not None:
        body["blocks"] = msg.blocks
    if msg.attachments:
        body["attachments"] = msg.attachments
    if msg.thread_ts:
        body["thread_ts"] = msg.thread_ts
    if msg.edited:
        body["edited"] = msg.edited
    return body


def message_event(
    msg: StoredMessage,
    *,
    channel_type: str,
    team_id: str,
    parent_user_id: str | None = None,
    bot_name: str = "",
) -> JSON:
    """A plain ``message`` event (human or the bot's own granular-bot post, SLACK.md §2.4)."""
    event = message_body(msg, team_id=team_id, bot_name=bot_name)
    event["channel"] = msg.channel
    event["channel_type"] = channel_type
    event["event_ts"] = msg.ts
    if msg.is_reply and parent_user_id:
        event["parent_user_id"] = parent_user_id
    if msg.is_reply and msg.reply_broadcast:
        event["subtype"] = "thread_broadcast"
    return event


def app_mention_event(msg: StoredMessage, *, team_id: str) -> JSON:
    """``app_mention`` event: like ``message`` but without ``channel_type`` (SLACK.md §2.6)."""
    event: JSON = {
        "type": "app_mention",
        "user": msg.user,
        "text": msg.text,
        "ts": msg.ts,
        "channel": msg.channel,
        "event_ts": msg.ts,
        "team": team_id,
    }
    if msg.client_msg_id:
        event["client_msg_id"] = msg.client_msg_id
    if msg.blocks is not None:
        event["blocks"] = msg.blocks
    if msg.thread_ts:
        event["thread_ts"] = msg.thread_ts
    return event


def message_changed_event(
    msg: StoredMessage,
    previous: JSON,
    *,
    event_ts: str,
    channel_type: str,
    team_id: str,
    bot_name: str = "",
) -> JSON:
    """``message_changed``: outer ts is the edit's own ts; ``message`` is the new version."""
    return {
        "type": "message",
        "subtype": "message_changed",
        "hidden": True,
        "channel": msg.channel,
        "channel_type": channel_type,
        "ts": event_ts,
        "event_ts": event_ts,
        "message": message_body(msg, team_id=team_id, bot_name=bot_name),
        "previous_message": previous,
    }


def message_deleted_event(
    msg: StoredMessage, previous: JSON, *, event_ts: str, channel_type: str
) -> JSON:
    """``message_deleted``: ``deleted_ts`` names the removed message."""
    event: JSON = {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "channel": msg.channel,
        "channel_type": channel_type,
        "ts": event_ts,
        "event_ts": event_ts,
        "deleted_ts": msg.ts,
        "previous_message": previous,
    }
    if msg.thread_ts:
        event["thread_ts"] = msg.thread_ts
    return event


# ---------------------------------------------------------------------------------------------
# Slash commands and interactivity (SLACK.md §2.1, §2.2)
# ---------------------------------------------------------------------------------------------


def slash_command_payload(
    *,
    command: str,
    text: str,
    user_id: str,
    user_name: str,
    channel_id: str,
    channel_name: str,
    team_id: str,
    app_id: str,
    response_url: str,
    trigger_id: str,
) -> dict[str, str]:
    """Slash command fields; all strings, exactly as the form body carries them."""
    return {
        "token": "legacy-verification-token",
        "api_app_id": app_id,
        "team_id": team_id,
        "team_domain": "storyloop-test",
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "response_url": response_url,
        "trigger_id": trigger_id,
        "is_enterprise_install": "false",
    }


def find_action(blocks: list[JSON] | None, action_id: str) -> tuple[JSON, JSON] | None:
    """Find ``(block, element)`` for an interactive element with ``action_id``."""
    for block in blocks or []:
        candidates: list[Any] = []
        if block.get("type") == "actions":
            candidates = list(block.get("elements") or [])
        elif block.get("accessory"):
            candidates = [block["accessory"]]
        elif block.get("type") == "input" and block.get("element"):
            candidates = [block["element"]]
        for element in candidates:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return block, element
    return None


def action_ids(blocks: list[JSON] | None) -> list[str]:
    """All action_ids present in ``blocks`` (for helpful assertion messages)."""
    found: list[str] = []
    for block in blocks or []:
        elements = list(block.get("elements") or []) if block.get("type") == "actions" else []
        if block.get("accessory"):
            elements.append(block["accessory"])
        found.extend(e["action_id"] for e in elements if isinstance(e, dict) and "action_id" in e)
    return found


def action_payload(block: JSON, element: JSON, *, action_ts: str, value: str | None) -> JSON:
    """``actions[0]`` for a click/selection on ``element`` inside ``block``."""
    action: JSON = {
        "type": element.get("type", "button"),
        "action_id": element.get("action_id"),
        "block_id": block.get("block_id", ""),
        "action_ts": action_ts,
    }
    kind = action["type"]
    if kind == "button":
        action["text"] = element.get("text")
        if value is not None or "value" in element:
            action["value"] = value if value is not None else element.get("value")
        if "style" in element:
            action["style"] = element["style"]
    elif kind in ("static_select", "overflow", "radio_buttons"):
        options = list(element.get("options") or [])
        for group in element.get("option_groups") or []:
            options.extend(group.get("options") or [])
        chosen = next((o for o in options if value is None or o.get("value") == value), None)
        if chosen is None:
            raise AssertionError(f"no option with value {value!r} in {element.get('action_id')}")
        action["selected_option"] = chosen
    elif value is not None:
        action["value"] = value
    return action


def block_actions_payload(
    *,
    team_id: str,
    app_id: str,
    user_id: str,
    user_name: str,
    channel_id: str,
    channel_name: str,
    trigger_id: str,
    response_url: str,
    action: JSON,
    message: JSON | None,
    message_ts: str,
    thread_ts: str | None,
    is_ephemeral: bool,
) -> JSON:
    """A ``block_actions`` payload for a click on a (possibly ephemeral) message."""
    container: JSON = {
        "type": "message",
        "message_ts": message_ts,
        "channel_id": channel_id,
        "is_ephemeral": is_ephemeral,
    }
    if thread_ts:
        container["thread_ts"] = thread_ts
    payload: JSON = {
        "type": "block_actions",
        "api_app_id": app_id,
        "token": "legacy-verification-token",
        "trigger_id": trigger_id,
        "team": {"id": team_id, "domain": "storyloop-test"},
        "enterprise": None,
        "is_enterprise_install": False,
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "channel": {"id": channel_id, "name": channel_name},
        "container": container,
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }
    if message is not None:
        payload["message"] = message
    return payload


def view_state_values(values: dict[str, dict[str, Any]]) -> JSON:
    """Normalise ``{block_id: {action_id: value}}``; bare strings become plain_text_input."""
    out: JSON = {}
    for block_id, actions in values.items():
        out[block_id] = {}
        for action_id, value in actions.items():
            is_bare = isinstance(value, str) or value is None
            out[block_id][action_id] = (
                {"type": "plain_text_input", "value": value} if is_bare else value
            )
    return out


def view_submission_payload(
    *,
    team_id: str,
    app_id: str,
    bot_id: str,
    user_id: str,
    user_name: str,
    trigger_id: str,
    view: JSON,
    state_values: JSON,
) -> JSON:
    """A ``view_submission`` payload carrying the submitted ``state.values``."""
    submitted = dict(view)
    submitted["state"] = {"values": state_values}
    submitted.setdefault("team_id", team_id)
    submitted.setdefault("app_id", app_id)
    submitted.setdefault("bot_id", bot_id)
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": "storyloop-test"},
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": app_id,
        "token": "legacy-verification-token",
        "trigger_id": trigger_id,
        "view": submitted,
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
