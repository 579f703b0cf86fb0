"""What Slack would send the app for a typed line: real-shaped payloads, encoded and signed.

Pure functions (no I/O). Shapes follow SLACK.md §2 and §3: slash commands are form fields,
events JSON, interactivity one ``payload`` form field holding JSON; every request is signed
with ``v0:{timestamp}:{body}``, so the app verifies the console exactly as it verifies Slack.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

JSON = dict[str, Any]
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Workspace:
    """The one workspace, channel, person and bot the console plays."""

    team_id: str = "T0CONSOLE"
    team_domain: str = "storyloop-console"
    app_id: str = "A0CONSOLE"
    channel_id: str = "C0CONSOLE"
    channel_name: str = "console"
    user_id: str = "U0YOU"
    user_name: str = "you"
    bot_user_id: str = "U0STORYLOOP"
    bot_id: str = "B0STORYLOOP"
    bot_name: str = "storyloop"

    @property
    def team(self) -> JSON:
        return {"id": self.team_id, "domain": self.team_domain}

    @property
    def user(self) -> JSON:
        return {
            "id": self.user_id,
            "username": self.user_name,
            "name": self.user_name,
            "team_id": self.team_id,
        }


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Slack's request signature: ``v0=`` + hex HMAC-SHA256 of ``v0:{ts}:{raw body}``."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(secret: str, timestamp: int, body: bytes, content_type: str) -> dict[str, str]:
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": sign(secret, timestamp, body),
    }


def form_body(fields: dict[str, str]) -> bytes:
    return urlencode(fields).encode()


def interactive_body(payload: JSON) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def slash_command(
    ws: Workspace, *, text: str, trigger_id: str, response_url: str, command: str = "/story"
) -> dict[str, str]:
    return {
        "token": "console",
        "api_app_id": ws.app_id,
        "team_id": ws.team_id,
        "team_domain": ws.team_domain,
        "channel_id": ws.channel_id,
        "channel_name": ws.channel_name,
        "user_id": ws.user_id,
        "user_name": ws.user_name,
        "command": command,
        "text": text,
        "response_url": response_url,
        "trigger_id": trigger_id,
        "is_enterprise_install": "false",
    }


def message_event(
    ws: Workspace,
    *,
    text: str,
    ts: str,
    event_id: str,
    event_time: int,
    thread_ts: str | None,
    parent_user_id: str | None,
    mention: bool = False,
) -> JSON:
    """The Events API wrapper around a person's message (``app_mention`` when ``mention``)."""
    event: JSON = {
        "type": "app_mention" if mention else "message",
        "user": ws.user_id,
        "team": ws.team_id,
        "text": text,
        "ts": ts,
        "channel": ws.channel_id,
        "event_ts": ts,
        "client_msg_id": event_id.lower(),
        "blocks": [
            {
                "type": "rich_text",
                "block_id": event_id[-5:],
                "elements": [
                    {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}
                ],
            }
        ],
    }
    if not mention:
        event["channel_type"] = "channel"
    if thread_ts:
        event["thread_ts"] = thread_ts
        if parent_user_id:
            event["parent_user_id"] = parent_user_id
    return {
        "token": "console",
        "team_id": ws.team_id,
        "api_app_id": ws.app_id,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": ws.team_id,
                "user_id": ws.bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "event": event,
    }


def home_opened_event(ws: Workspace, *, event_id: str, event_time: int, ts: str) -> JSON:
    return {
        "token": "console",
        "team_id": ws.team_id,
        "api_app_id": ws.app_id,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": event_time,
        "event": {
            "type": "app_home_opened",
            "user": ws.user_id,
            "channel": "D0CONSOLE",
            "tab": "home",
            "event_ts": ts,
        },
    }


def action(control_block: JSON, element: JSON, *, action_ts: str, option: JSON | None) -> JSON:
    """``actions[0]`` for a click on a button, or a choice in a menu."""
    out: JSON = {
        "type": element.get("type", "button"),
        "action_id": element.get("action_id"),
        "block_id": control_block.get("block_id", ""),
        "action_ts": action_ts,
    }
    if out["type"] == "button":
        out["text"] = element.get("text")
        if "value" in element:
            out["value"] = element["value"]
        if "style" in element:
            out["style"] = element["style"]
    elif option is not None:
        out["selected_option"] = option
    return out


def message_click(
    ws: Workspace,
    *,
    act: JSON,
    message: JSON,
    trigger_id: str,
    response_url: str,
    is_ephemeral: bool = False,
    state: JSON | None = None,
) -> JSON:
    """``block_actions`` for a click on a message (``message`` as the app posted it)."""
    container: JSON = {
        "type": "message",
        "message_ts": message["ts"],
        "channel_id": ws.channel_id,
        "is_ephemeral": is_ephemeral,
    }
    if message.get("thread_ts"):
        container["thread_ts"] = message["thread_ts"]
    payload: JSON = {
        "type": "block_actions",
        "api_app_id": ws.app_id,
        "token": "console",
        "trigger_id": trigger_id,
        "team": ws.team,
        "enterprise": None,
        "is_enterprise_install": False,
        "user": ws.user,
        "channel": {"id": ws.channel_id, "name": ws.channel_name},
        "container": container,
        "state": {"values": state or {}},
        "response_url": response_url,
        "actions": [act],
    }
    if not is_ephemeral:
        payload["message"] = message
    return payload


def view_click(ws: Workspace, *, act: JSON, view: JSON, trigger_id: str, state: JSON) -> JSON:
    """``block_actions`` for a click in a modal or the Home tab: no channel, the view instead."""
    shown = dict(view)
    shown["state"] = {"values": state}
    return {
        "type": "block_actions",
        "api_app_id": ws.app_id,
        "token": "console",
        "trigger_id": trigger_id,
        "team": ws.team,
        "enterprise": None,
        "is_enterprise_install": False,
        "user": ws.user,
        "container": {"type": "view", "view_id": view.get("id")},
        "view": shown,
        "state": {"values": state},
        "actions": [act],
    }


def view_submission(ws: Workspace, *, view: JSON, state: JSON, trigger_id: str) -> JSON:
    submitted = dict(view)
    submitted["state"] = {"values": state}
    return {
        "type": "view_submission",
        "team": ws.team,
        "user": ws.user,
        "api_app_id": ws.app_id,
        "token": "console",
        "trigger_id": trigger_id,
        "view": submitted,
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def view_closed(ws: Workspace, *, view: JSON) -> JSON:
    return {
        "type": "view_closed",
        "team": ws.team,
        "user": ws.user,
        "api_app_id": ws.app_id,
        "token": "console",
        "view": view,
        "is_cleared": False,
        "is_enterprise_install": False,
        "enterprise": None,
    }


def block_suggestion(
    ws: Workspace, *, view: JSON, block_id: str, action_id: str, value: str
) -> JSON:
    """What Slack asks an ``external_select``'s options with, as the person types."""
    return {
        "type": "block_suggestion",
        "user": ws.user,
        "team": ws.team,
        "api_app_id": ws.app_id,
        "token": "console",
        "container": {"type": "view", "view_id": view.get("id")},
        "view": view,
        "block_id": block_id,
        "action_id": action_id,
        "value": value,
        "enterprise": None,
        "is_enterprise_install": False,
    }
