"""End-to-end fixtures: the Slack emulator, the fake LLM, and the real app between them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.e2e.harness import AppUnderTest, app_env, settings_from
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator
from tests.support.redis_server import RedisServer


@pytest.fixture
async def emu() -> AsyncIterator[SlackEmulator]:
    emulator = SlackEmulator()
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture(params=["socket"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def app(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, redis: Redis, mode: str
) -> AsyncIterator[AppUnderTest]:
    env = app_env(emu, llm, redis_server.url, mode=mode)
    running = await AppUnderTest(settings_from(env), redis_server.url).start()
    if mode == "socket":
        await emu.wait_connected()
        emu.mode = "socket"
    else:
        emu.mode = "http"
        emu.events_url = running.events_url
    yield running
    await running.stop(grace_s=2)
