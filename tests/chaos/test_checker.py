"""The checker itself: a clean run passes, and each kind of broken promise is caught.

A short in-process run (the real app against the emulators) is checked once as it is, then the
recorded world is tampered with the way a bug would leave it — a slot posted twice, an answer
missing, a refusal sent twice, a notice gap, a session stuck mid-generation, an unescaped
broadcast — and the checker must name each one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from slack_sdk.web.async_client import AsyncWebClient

from bot.pipeline.models import Session, Status
from storage import keys
from tests.chaos.checker import Trace, check, wait_quiescent
from tests.chaos.support import chaos_env, session_slot, start_story
from tests.e2e.harness import AppUnderTest, settings_from
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator
from tests.support.redis_server import RedisServer


@pytest.fixture
async def web(emu: SlackEmulator) -> AsyncIterator[AsyncWebClient]:
    client = AsyncWebClient(token=emu.bot_token, base_url=emu.api_url)
    yield client
    session = getattr(client, "session", None)
    if session is not None:
        await session.close()


async def test_checker_passes_a_clean_run_and_catches_each_broken_promise(
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    redis: Redis,
    trace: Trace,
    web: AsyncWebClient,
) -> None:
    env = chaos_env(emu, llm, redis_server.url)
    app = await AppUnderTest(settings_from(env), redis_server.url).start()
    try:
        await emu.wait_connected()
        start, card, story = await start_story(trace)
        sid = start.session or ""
        reply = await trace.reply(card, "make it funnier")
        await emu.wait_for(lambda: session_slot(emu, sid, f"reply:{reply.ts}"), timeout=10)
        await trace.click(story, "story_regenerate", user="U0BOB")
        await emu.wait_for(lambda: session_slot(emu, sid, "notice:2"), timeout=10)
        stale = await trace.click(story, "story_approve", user="U0BOB")  # not the owner
        await emu.wait_for(lambda: [r for r in emu.responses if r.status == 200], timeout=10)
        assert await wait_quiescent(emu, redis, timeout=20)
    finally:
        await app.stop(grace_s=2)

    clean = await check(emu, redis, trace)
    clean.assert_ok()
    assert clean.outcomes == {"story-card": 1, "reply": 1, "notice": 1, "response": 1}

    # 1. The reply's answer posted twice (same session and slot in the metadata).
    answer = session_slot(emu, sid, f"reply:{reply.ts}")[0]
    await web.chat_postMessage(
        channel=answer.channel,
        thread_ts=card.ts,
        text="again",
        metadata=answer.metadata,
    )
    report = await check(emu, redis, trace)
    assert any("posted 2 times" in str(f) for f in report.duplicated), report.render()
    assert any(f.trigger is not None and f.trigger.ts == reply.ts for f in report.duplicated)

    # 2. No answer at all: both answers gone.
    for msg in session_slot(emu, sid, f"reply:{reply.ts}"):
        await web.chat_delete(channel=msg.channel, ts=msg.ts)
    report = await check(emu, redis, trace)
    assert [f.trigger.ts for f in report.lost if f.trigger] == [reply.ts], report.render()

    # 3. The refusal sent twice to the same response_url.
    url_id = (stale.response_url or "").rsplit("/", 1)[-1]
    first = next(r for r in emu.responses if r.url_id == url_id)
    emu.responses.append(first)
    report = await check(emu, redis, trace)
    assert any(f"response_url {url_id}" in str(f) for f in report.duplicated), report.render()

    # 4. A gap in the regeneration notices.
    notice = session_slot(emu, sid, "notice:2")[0]
    await web.chat_delete(channel=notice.channel, ts=notice.ts)
    report = await check(emu, redis, trace)
    assert any("notices [], expected [2]" in str(f) for f in report.findings), report.render()

    # 5. A session stuck mid-generation with nothing queued to finish it.
    raw = await redis.hget(keys.session(emu.team_id, sid), "data")
    stuck = Session.model_validate_json(raw or "").model_copy(
        update={"status": Status.REGENERATING, "active_job": "regenerate:gone"}
    )
    await redis.hset(keys.session(emu.team_id, sid), "data", stuck.model_dump_json())
    report = await check(emu, redis, trace)
    assert any("stuck in regenerating" in str(f) for f in report.findings), report.render()

    # 6. An unescaped broadcast in something the bot said.
    await web.chat_postMessage(channel="C0PUBLIC", text="hey <!channel> look")
    report = await check(emu, redis, trace)
    assert any("unescaped broadcast" in str(f) for f in report.findings), report.render()
    assert "trace (seed None):" in report.render() and "#1 /story" in report.render()
