"""HTTP mode acks noise (``message`` events that can't be feedback: our own posts and edits
coming back, edits, joins) before Bolt; the signature is still checked first, and nothing is
recorded either way. Socket Mode's fast path runs under every e2e flow (each post echoes)."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from tests.e2e.harness import AppUnderTest
from tests.e2e.test_hostile_inputs import post_raw, queued, snapshot
from tests.emulators import slack_payloads as payloads
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator, sign

CHANNEL = "C0PUBLIC"


def echo_body(emu: SlackEmulator) -> bytes:
    """Our own post coming back as a thread message event (what most deliveries are)."""
    event = {
        "type": "message",
        "user": emu.bot_user_id,
        "bot_id": "B0STORYLOOP",
        "text": "Story v1: a bottle",
        "ts": "1767229999.000200",
        "thread_ts": "1767225600.000100",
        "channel": CHANNEL,
        "channel_type": "channel",
        "event_ts": "1767229999.000200",
        "team": emu.team_id,
    }
    payload = payloads.event_callback(
        event,
        team_id=emu.team_id,
        app_id=emu.app_id,
        bot_user_id=emu.bot_user_id,
        event_id="Ev0ECHO0001",
        event_time=int(time.time()),
    )
    return payloads.encode_http_body("events_api", payload)[0]


@pytest.mark.parametrize("mode", ["http"], indirect=True)
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "forged"])
async def test_noise_is_acked_after_the_signature_check_and_records_nothing(
    emu: SlackEmulator, llm: FakeLLM, redis: Redis, app: AppUnderTest, signed: bool
) -> None:
    body = echo_body(emu)
    now = int(time.time())
    secret = emu.signing_secret if signed else "not-the-signing-secret"
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": str(now),
        "X-Slack-Signature": sign(secret, now, body),
    }
    status, _text = await post_raw(app.events_url, body, headers)
    assert status == (200 if signed else 401)
    await asyncio.sleep(0.2)
    assert await snapshot(redis) == {}
    assert await queued(redis) == 0
    assert emu.bot_messages() == [] and llm.requests == []


@pytest.mark.parametrize("mode", ["socket"], indirect=True)
async def test_socket_mode_acks_noise_frames_without_bolt_and_records_nothing(
    emu: SlackEmulator, llm: FakeLLM, redis: Redis, app: AppUnderTest
) -> None:
    """Our own post coming back over Socket Mode is acked straight from the parsed frame
    (``bot/runtime.py: FrameClient``): an empty ack with its envelope id, nothing recorded —
    while a human's top-level message (also noise) and an edit get the same."""
    base = {"channel": CHANNEL, "channel_type": "channel", "team": emu.team_id}
    events = [
        {**base, "type": "message", "user": emu.bot_user_id, "bot_id": "B0STORYLOOP",
         "text": "Story v1", "ts": "1767229999.000200", "thread_ts": "1767225600.000100"},
        {**base, "type": "message", "user": "U0ALICE", "text": "lunch?", "ts": "1767229999.0003"},
        {**base, "type": "message", "subtype": "message_changed",
         "message": {"text": "edited", "ts": "1767229999.0003"}, "ts": "1767229999.0004"},
    ]  # fmt: skip
    for event in events:
        ack = await emu.emit_event(event)
        assert ack.ok and ack.transport == "socket"
        assert dict(ack) == {}  # an empty ack: no payload, nothing to show
    await asyncio.sleep(0.2)
    assert await snapshot(redis) == {}
    assert await queued(redis) == 0
    assert emu.bot_messages() == [] and llm.requests == []
