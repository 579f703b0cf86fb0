"""The gateway with the shared rate budget: the real gateway and slack_sdk client against the
Slack emulator, the real budget on a real redis-server. A progress edit with no room is skipped
(Slack never sees it); a result waits its turn, then goes — unless its job lost the lease
meanwhile."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from slack_sdk.web.async_client import AsyncWebClient

from bot.pipeline.models import Session
from bot.slack import blocks
from bot.slack.gateway import LeaseLost, SlackGateway, lease_guard
from storage.budget import Bucket, RedisRateBudget
from storage.scripts import Scripts
from tests.emulators.slack import SlackEmulator
from tests.unit.test_stream_answers import DictLedger

ROOMY = Bucket(100.0, 100, 0)


@pytest.fixture
async def emu() -> AsyncIterator[SlackEmulator]:
    emulator = SlackEmulator()
    emulator.echo_bot_events = False
    await emulator.start()
    yield emulator
    await emulator.stop()


def gateway(emu: SlackEmulator, redis: Redis, channel: Bucket) -> SlackGateway:
    client = AsyncWebClient(token=emu.bot_token, base_url=emu.api_url, retry_handlers=[])
    budget = RedisRateBudget(Scripts(redis), channel=channel, updates=ROOMY, max_wait_s=5)
    return SlackGateway(client, DictLedger(), budget=budget)


def session(emu: SlackEmulator) -> Session:
    return Session(
        id="s1",
        team_id=emu.team_id,
        channel_id="C0PUBLIC",
        owner_id="U0ALICE",
        prompt="a story",
        duration_s=30,
        created_at=0.0,
        updated_at=0.0,
    )


def updates(emu: SlackEmulator) -> int:
    return len(emu.calls_to("chat.update"))


async def test_a_progress_edit_without_room_is_skipped_and_a_result_still_goes(
    emu: SlackEmulator, redis: Redis
) -> None:
    gw = gateway(emu, redis, Bucket(0.001, 3, 1))
    s = session(emu)
    msg = blocks.generating_placeholder(s, regenerating=False)
    ts = await gw.post_once(s, "story", msg, thread_ts=None, fresh=True)  # 2 tokens left
    await gw.update(s, ts, msg, best_effort=True)  # 2 ≥ 1 + reserve: made; 1 left
    await gw.update(s, ts, msg, best_effort=True)  # only the reserve left: skipped
    assert updates(emu) == 1
    await gw.update(s, ts, msg)  # a result takes the reserve
    assert updates(emu) == 2


async def test_a_result_waits_its_turn_then_checks_the_lease(
    emu: SlackEmulator, redis: Redis
) -> None:
    gw = gateway(emu, redis, Bucket(0.8, 1, 0))  # a turn every 1.25 s
    s = session(emu)
    msg = blocks.generating_placeholder(s, regenerating=False)
    ts = await gw.post_once(s, "story", msg, thread_ts=None, fresh=True)  # the one token

    async def still_ours() -> bool:
        return True

    async def lost() -> bool:
        return False

    token = lease_guard.set(still_ours)
    try:
        began = time.monotonic()
        await gw.update(s, ts, msg)  # waits ~1.25 s for its token, then goes
        assert time.monotonic() - began >= 1.0
        assert updates(emu) == 1
    finally:
        lease_guard.reset(token)
    token = lease_guard.set(lost)
    try:
        with pytest.raises(LeaseLost):
            await gw.update(s, ts, msg)  # another worker took the session while it waited
        assert updates(emu) == 1
    finally:
        lease_guard.reset(token)
