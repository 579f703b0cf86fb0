"""``is_noise``: the listener acks these before Bolt, so it must never match what
``handle_message`` would record (a human's reply in a thread)."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.messages import is_human_reply, is_noise


def body(**event: Any) -> dict[str, Any]:
    return {"type": "event_callback", "team_id": "T0TEAM", "event": {"type": "message", **event}}


HUMAN_REPLY = dict(user="U0BOB", channel="C0PUB", ts="2.0", thread_ts="1.0", text="warmer")


@pytest.mark.parametrize(
    "payload",
    [
        body(**HUMAN_REPLY),
        body(**HUMAN_REPLY, subtype="thread_broadcast"),
        body(**HUMAN_REPLY, subtype="file_share"),
        {"type": "event_callback", "event": {"type": "app_mention", "user": "U0BOB"}},
        {"type": "event_callback", "event": {"type": "app_home_opened", "user": "U0BOB"}},
        {"type": "block_actions", "actions": []},
        {"command": "/story", "text": "30s a launch"},
    ],
    ids=["reply", "broadcast", "file-share", "mention", "home", "click", "command"],
)
def test_what_a_handler_may_record_is_not_noise(payload: dict[str, Any]) -> None:
    assert not is_noise(payload)


@pytest.mark.parametrize(
    "payload",
    [
        body(**HUMAN_REPLY, bot_id="B0STORY"),  # our own posts come back as events
        body(**HUMAN_REPLY, subtype="bot_message"),
        body(subtype="message_changed", channel="C0PUB", message={"text": "edited"}),
        body(subtype="message_deleted", channel="C0PUB", previous_message={}),
        body(user="U0BOB", channel="C0PUB", ts="1.0", text="top-level chatter"),
        body(user="U0BOB", channel="C0PUB", ts="1.0", thread_ts="1.0", text="the parent"),
        body(subtype="channel_join", user="U0BOB", channel="C0PUB", ts="3.0"),
    ],
    ids=["bot-id", "bot-message", "edited", "deleted", "top-level", "parent", "join"],
)
def test_events_handle_message_drops_are_noise(payload: dict[str, Any]) -> None:
    assert is_noise(payload)
    assert not is_human_reply(payload["event"])  # the same test as the handler's
