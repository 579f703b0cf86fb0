"""Shortcuts and mentions from anywhere, as Slack sends them (for ``SlackEmulator``).

Payload builders are pure; ``SlackEmulator.global_shortcut`` / ``message_shortcut`` deliver
them with a real ``trigger_id`` (usable once, for ~3 s) and, for a message shortcut, a loopback
``response_url``. ``mention_from`` delivers an ``app_mention`` that another workspace's user
wrote, wrapped for that workspace — what a misrouted or forged delivery would look like.

Shapes: a global shortcut is ``type: "shortcut"`` (no channel, no message, no response_url);
a message shortcut is ``type: "message_action"`` with ``channel{id,name}``, ``message{…}``,
``message_ts`` and ``response_url`` (slack-edge ``MessageShortcut``/``GlobalShortcut`` types,
Bolt's ``to_message_shortcut``). DMs carry ``channel.name`` ``directmessage``; group DMs
``mpdm-…``. Both are delivered as ``interactive`` envelopes with
``accepts_response_payload: false`` (SLACK.md §1.2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.emulators import slack_payloads as payloads
from tests.emulators.slack_state import JSON, AckResult, StoredMessage

if TYPE_CHECKING:
    from tests.emulators.slack import SlackEmulator


def _user(user_id: str, user_name: str, team_id: str) -> JSON:
    return {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id}


def global_shortcut_payload(
    *,
    team_id: str,
    app_id: str,
    user_id: str,
    user_name: str,
    callback_id: str,
    trigger_id: str,
    action_ts: str,
) -> JSON:
    """A global shortcut (the ⚡ menu): who and which shortcut, nothing about a channel."""
    return {
        "type": "shortcut",
        "token": "legacy-verification-token",
        "action_ts": action_ts,
        "team": {"id": team_id, "domain": "storyloop-test"},
        "user": _user(user_id, user_name, team_id),
        "api_app_id": app_id,
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": trigger_id,
    }


def message_action_payload(
    *,
    team_id: str,
    app_id: str,
    user_id: str,
    user_name: str,
    callback_id: str,
    trigger_id: str,
    action_ts: str,
    channel_id: str,
    channel_name: str,
    message: JSON,
    response_url: str,
) -> JSON:
    """A message shortcut (a message's ⋮ menu): the message, its channel and a response_url."""
    return {
        "type": "message_action",
        "token": "legacy-verification-token",
        "action_ts": action_ts,
        "team": {"id": team_id, "domain": "storyloop-test"},
        "user": _user(user_id, user_name, team_id),
        "channel": {"id": channel_id, "name": channel_name},
        "api_app_id": app_id,
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": trigger_id,
        "response_url": response_url,
        "message_ts": str(message.get("ts", "")),
        "message": message,
    }


async def deliver_global_shortcut(
    emu: SlackEmulator, callback_id: str, *, user: str, team_id: str | None
) -> AckResult:
    team = team_id or emu.team_id
    payload = global_shortcut_payload(
        team_id=team,
        app_id=emu.app_id,
        user_id=user,
        user_name=emu.workspace.user(user).name,
        callback_id=callback_id,
        trigger_id=emu._new_trigger(user),
        action_ts=emu._action_ts(),
    )
    return await emu._deliver("interactive", payload)


async def deliver_message_shortcut(
    emu: SlackEmulator,
    target: StoredMessage,
    callback_id: str,
    *,
    user: str,
    team_id: str | None,
) -> AckResult:
    team = team_id or emu.team_id
    known = emu.workspace.channels.get(target.channel)
    payload = message_action_payload(
        team_id=team,
        app_id=emu.app_id,
        user_id=user,
        user_name=emu.workspace.user(user).name,
        callback_id=callback_id,
        trigger_id=emu._new_trigger(user),
        action_ts=emu._action_ts(),
        channel_id=target.channel,
        channel_name=known.name if known else target.channel,
        message=payloads.message_body(target, team_id=emu.team_id, bot_name=emu.bot_name),
        response_url=emu._new_response_url(channel=target.channel, user=user, origin=target),
    )
    return await emu._deliver("interactive", payload)


async def mention_from(
    emu: SlackEmulator, channel: str, text: str, *, team_id: str, user: str = "U0ALICE"
) -> tuple[str, AckResult]:
    """A mention written in (and delivered for) workspace ``team_id``; returns (ts, ack).

    The message is stored so the thread is real, but only the ``app_mention`` is delivered.
    """
    ts = await emu.user_posts(channel, text, user=user, deliver=False)
    msg = emu.message(channel, ts)
    assert msg is not None
    event = payloads.app_mention_event(msg, team_id=team_id)
    emu._counter += 1
    wrapped = payloads.event_callback(
        event,
        team_id=team_id,
        app_id=emu.app_id,
        bot_user_id=emu.bot_user_id,
        event_id=f"Ev0FOREIGN{emu._counter:06d}",
        event_time=int(ts.partition(".")[0]),
    )
    return ts, await emu.deliver_event(wrapped)
