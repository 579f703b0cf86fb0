"""The eager lane: the listener shows a trigger's first change itself, right after the ack.

Here the listener runs with no job worker at all, and the worker is a separate runtime started
and stopped by the test, so what appears before it runs can only come from the listener.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis

from bot.app import build_runtime
from bot.pipeline.models import Stage, Status
from storage import keys
from tests.e2e.harness import (
    AppUnderTest,
    action_ids,
    app_env,
    block_text,
    by_slot,
    settings_from,
)
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator, StoredMessage
from tests.support.redis_server import RedisServer


@asynccontextmanager
async def listener_only(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer
) -> AsyncIterator[AppUnderTest]:
    env = app_env(emu, llm, redis_server.url, mode="socket")
    app = await AppUnderTest(settings_from(env), redis_server.url).start(worker=False)
    await emu.wait_connected()
    emu.mode = "socket"
    try:
        yield app
    finally:
        await app.stop(grace_s=2)


@asynccontextmanager
async def worker_only(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer
) -> AsyncIterator[None]:
    """A replica's job worker with no Slack listener."""
    env = app_env(emu, llm, redis_server.url, mode="http")
    rt = build_runtime(settings_from(env), redis_server.url)
    await rt.worker.start()
    try:
        yield
    finally:
        await rt.worker.stop(grace_s=2)
        await rt.close()


def updates_of(emu: SlackEmulator, ts: str) -> list[str]:
    return [
        str(c.params.get("text", ""))
        for c in emu.calls_to("chat.update")
        if c.ok and c.params.get("ts") == ts
    ]


async def wait_story(emu: SlackEmulator, story: StoredMessage, what: str) -> StoredMessage:
    return (
        await emu.wait_for(
            lambda: [
                m
                for m in [emu.message(story.channel, story.ts)]
                if m is not None and what in block_text(m) and "story_approve" in action_ids(m)
            ],
            timeout=10,
        )
    )[0]


async def test_listener_shows_first_changes_and_the_worker_goes_on(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, redis: Redis
) -> None:
    async with listener_only(emu, llm, redis_server) as app:
        assert app.runtime is not None and app.runtime.eager is not None
        repo = app.runtime.worker.repo

        # /story: card and "Generating your story…" with no worker running anywhere.
        ack = await emu.slash_command("30s eco water bottle launch")
        assert ack.ok
        card = (await emu.wait_for(lambda: by_slot(emu, "card"), timeout=2))[0]
        story = (await emu.wait_for(lambda: by_slot(emu, "story"), timeout=2))[0]
        assert story.thread_ts == card.ts and "Generating your story" in block_text(story)
        team, sid = emu.team_id, str((story.metadata or {})["event_payload"]["session"])
        await emu.wait_for(lambda: app.runtime and app.runtime.eager.deferred == 1, timeout=2)  # type: ignore[union-attr]
        s = await repo.get(team, sid)
        assert s is not None and s.status is Status.GENERATING and s.version == 0
        assert s.story_message_ts == story.ts and s.thread_ts == card.ts
        # Handed back, reserved for this job's worker (a reply can't slip in before it).
        job_id = f"start:{team}:{sid}"
        assert await redis.get(keys.lock(team, sid)) == f"handoff:{job_id}"
        await asyncio.sleep(0.3)
        assert len(llm.requests) == 0  # the LLM call is left to a worker

        # A worker finishes the job from the stream, without re-showing the placeholder.
        async with worker_only(emu, llm, redis_server):
            await wait_story(emu, story, "Story v1")
        assert all(
            "Generating your story" not in t or "so far" in t for t in updates_of(emu, story.ts)
        )
        assert len(by_slot(emu, "card")) == 1 and len(by_slot(emu, "story")) == 1

        # Regenerate: "Regenerating…" from the listener; the rewrite waits for a worker.
        shown = emu.message(story.channel, story.ts)
        assert shown is not None
        before = len(llm.requests)
        await emu.click(shown, "story_regenerate")
        await emu.wait_for(
            lambda: "Regenerating" in block_text(emu.message(story.channel, story.ts)), timeout=2
        )
        s = await repo.get(team, sid)
        assert s is not None and s.status is Status.REGENERATING
        await asyncio.sleep(0.3)
        assert len(llm.requests) == before
        async with worker_only(emu, llm, redis_server):
            v2 = await wait_story(emu, story, "Story v2")
        assert len([t for t in updates_of(emu, story.ts) if "Regenerating" in t]) >= 1

        # Approve: the listener commits it and posts the notice at once; re-rendering the story
        # without its buttons (and the card) is CPU it leaves to the worker.
        await emu.click(v2, "story_approve")
        await emu.wait_for(lambda: by_slot(emu, "approved"), timeout=2)
        s = await repo.get(team, sid)
        assert s is not None and s.stage is Stage.REFERENCE_IMAGE and s.approved_version == 2
        await asyncio.sleep(0.3)
        assert "story_approve" in action_ids(emu.message(story.channel, story.ts))
        async with worker_only(emu, llm, redis_server):
            await emu.wait_for(
                lambda: action_ids(emu.message(story.channel, story.ts)) == [], timeout=5
            )
            # The worker goes on with the next stage: it plans the images and makes them.
            await emu.wait_for(lambda: by_slot(emu, "reference_image:v1"), timeout=10)
            await emu.wait_for(lambda: _pending(redis), timeout=5)
        assert len(by_slot(emu, "approved")) == 1
        assert len(llm.requests) == before + 2  # the rewrite, then the image plan
        assert llm.images_generated == 4


async def _pending(redis: Redis) -> bool:
    """Every job on the stream was read and acknowledged."""
    groups = [g for s in keys.JOB_STREAMS for g in await redis.xinfo_groups(s)]
    return all(int(g["pending"]) == 0 and int(g.get("lag") or 0) == 0 for g in groups)


async def test_a_busy_session_is_left_to_the_worker(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, redis: Redis
) -> None:
    """The lane only runs when the intake found the session free: it never races a worker."""
    async with listener_only(emu, llm, redis_server) as app:
        assert app.runtime is not None
        repo = app.runtime.worker.repo
        await emu.slash_command("30s eco water bottle launch")
        story = (await emu.wait_for(lambda: by_slot(emu, "story"), timeout=2))[0]
        team, sid = emu.team_id, str((story.metadata or {})["event_payload"]["session"])
        async with worker_only(emu, llm, redis_server):
            shown = await wait_story(emu, story, "Story v1")
        # A worker holds the session (as while it writes a story): a click is only recorded.
        fence = await repo.acquire(team, sid, 5000)
        assert fence
        await emu.click(shown, "story_regenerate")
        await asyncio.sleep(0.5)
        assert "Regenerating" not in block_text(emu.message(story.channel, story.ts))
        s = await repo.get(team, sid)
        assert s is not None and s.status is Status.AWAITING_REVIEW
        assert await repo.holds(team, sid, fence)
        await repo.release(team, sid, fence)
        async with worker_only(emu, llm, redis_server):
            await wait_story(emu, story, "Story v2")


def _schema(request: dict[str, Any]) -> str:
    fmt = (request.get("json") or {}).get("response_format") or {}
    return str((fmt.get("json_schema") or {}).get("name", fmt.get("type", "")))


async def test_a_reply_never_slips_in_between_the_lane_and_its_worker(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, redis: Redis
) -> None:
    """The lane hands its lease to its own job's worker: a thread reply recorded meanwhile is
    answered after the story is written, not before it (with no story to talk about)."""
    async with listener_only(emu, llm, redis_server) as app:
        eager = app.runtime.eager if app.runtime else None
        assert eager is not None
        for attempt in range(1, 4):  # without the reservation, either job may win the lease
            await emu.slash_command("30s eco water bottle launch")
            n = attempt
            cards = await emu.wait_for(lambda n=n: by_slot(emu, "card")[n - 1 :], timeout=2)
            await emu.wait_for(lambda n=n: eager.deferred >= n, timeout=2)
            ts = await emu.user_posts("C0PUBLIC", "make it warmer", thread_ts=cards[0].ts)
            await asyncio.sleep(0.3)  # recorded; both jobs now wait on the stream
            before = len(llm.requests)
            async with worker_only(emu, llm, redis_server):
                await emu.wait_for(lambda ts=ts: by_slot(emu, f"reply:{ts}"), timeout=10)
            asked = [_schema(r) for r in llm.requests[before:]]
            assert asked[:2] == ["story", "feedback_reply"], asked
