"""kill -9 in the paid stages: after restart, one generation per requested image, one upload per
image, one review message — counted by the emulators, never inferred from the app's own state.

Each run makes the session ready in an in-process app, then starts a real replica process with
``STORYLOOP_CRASH_POINT`` set, clicks Approve, lets the process SIGKILL itself (``@N``: on the
N-th pass, so the crash lands part-way through a set), and starts a fresh replica with the same
data directory (the spool) and Redis.
"""

from __future__ import annotations

import asyncio
import signal

import pytest
from redis.asyncio import Redis

from bot.pipeline.models import Stage
from bot.slack.actions import StageButtonValue
from tests.chaos.checker import Trace, check, wait_quiescent
from tests.chaos.support import Replicas, chaos_env, session_slot, start_story
from tests.e2e.harness import AppUnderTest, action_ids, block_text, settings_from
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator, StoredMessage
from tests.support.redis_server import RedisServer

IMAGES = 4


def reviewable(emu: SlackEmulator, sid: str, slot: str) -> StoredMessage | None:
    found = [
        m
        for m in session_slot(emu, sid, slot)
        if {"story_approve", "story_regenerate"} & set(action_ids(m))
    ]
    return found[-1] if found else None


def schema_requests(llm: FakeLLM, name: str) -> int:
    return sum(1 for r in llm.requests if name in str(r["json"].get("response_format")))


async def ready(
    trace: Trace, env: dict[str, str], redis_url: str, *, upto: str
) -> tuple[str, StoredMessage]:
    """A session whose story (``upto="story"``) or image set is reviewable; its review message."""
    emu = trace.emu
    setup = await AppUnderTest(settings_from(env), redis_url).start()
    try:
        await emu.wait_connected()
        trigger, _card, story = await start_story(trace)
        sid = trigger.session or ""
        if upto == "story":
            return sid, story
        await trace.click(story, "story_approve")
        images = await emu.wait_for(lambda: reviewable(emu, sid, "reference_image:v1"), timeout=20)
        return sid, images
    finally:
        await setup.stop(grace_s=2)


async def crash_and_recover(
    emu: SlackEmulator,
    redis: Redis,
    replicas: Replicas,
    trace: Trace,
    env: dict[str, str],
    *,
    point: str,
    act: object,
) -> None:
    # Crash points count per process: with the eager lane the approval's commit happens in the
    # listener, so "the second commit" is only the worker's when the lane is off.
    lane = "false" if point.startswith("after_commit") else "true"
    crashing = await replicas.new("crashing", env).start(
        STORYLOOP_CRASH_POINT=point, STORYLOOP_EAGER=lane
    )
    await emu.wait_connected(timeout=20)
    acting = asyncio.create_task(act)  # type: ignore[arg-type]
    code = await crashing.wait_exit(timeout=30)
    if code is None:
        acting.cancel()
        raise AssertionError(f"never reached {point}\n{replicas.logs()}")
    assert code == -signal.SIGKILL, replicas.logs()
    await replicas.new("survivor", env).start()
    await emu.wait_connected(timeout=20)
    await asyncio.wait_for(acting, 30)


async def judged(emu: SlackEmulator, redis: Redis, replicas: Replicas, trace: Trace) -> None:
    quiet = await wait_quiescent(emu, redis, timeout=40)
    report = await check(emu, redis, trace)
    if not quiet or not report.ok:
        print(replicas.logs())
    assert quiet, report.render()
    report.assert_ok()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("point", ["after_image@2", "after_upload@2", "after_commit@2"])
async def test_kill_9_while_making_images_pays_once_per_image(
    point: str,
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    redis: Redis,
    replicas: Replicas,
    trace: Trace,
) -> None:
    """after_image: an image came back (spooled), not uploaded; after_upload: uploaded, no
    review message yet; after_commit@2: the set is committed (the first commit is the
    approval), nothing shown."""
    env = chaos_env(emu, llm, redis_server.url)
    sid, story = await ready(trace, env, redis_server.url, upto="story")
    await crash_and_recover(
        emu, redis, replicas, trace, env, point=point, act=trace.click(story, "story_approve")
    )
    review = await emu.wait_for(lambda: reviewable(emu, sid, "reference_image:v1"), timeout=30)
    await judged(emu, redis, replicas, trace)
    assert llm.images_generated == IMAGES and len(llm.image_requests) == IMAGES
    assert len({r.prompt for r in llm.image_requests}) == IMAGES  # none asked for twice
    thread = story.thread_ts or ""
    assert len(emu.files_in_thread("C0PUBLIC", thread)) == IMAGES
    assert len([f for f in emu.uploaded_files if f.thread_ts == thread]) == IMAGES
    assert len(session_slot(emu, sid, "reference_image:v1")) == 1
    assert "4 images" in block_text(review)


@pytest.mark.timeout(120)
async def test_kill_9_mid_storyboard_asks_the_llm_once(
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    redis: Redis,
    replicas: Replicas,
    trace: Trace,
) -> None:
    env = chaos_env(emu, llm, redis_server.url)
    sid, images = await ready(trace, env, redis_server.url, upto="images")
    await crash_and_recover(
        emu,
        redis,
        replicas,
        trace,
        env,
        point="after_storyboard_llm",
        act=trace.click(images, "story_approve"),
    )
    await emu.wait_for(lambda: reviewable(emu, sid, "storyboard:v1:p1"), timeout=30)
    await judged(emu, redis, replicas, trace)
    assert schema_requests(llm, "storyboard") == 1
    md = [f for f in emu.uploaded_files if f.filename.endswith(".md")]
    assert len(md) == 1
    assert llm.images_generated == IMAGES  # the storyboard costs nothing more


@pytest.mark.timeout(120)
async def test_a_call_cut_off_by_a_crash_is_never_sent_again_by_itself(
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    redis: Redis,
    replicas: Replicas,
    trace: Trace,
) -> None:
    """kill -9 while the provider is making image 1: it may bill for it, so the restarted
    worker doesn't ask again; it says so, and Retry (the user's choice) makes it."""
    env = chaos_env(emu, llm, redis_server.url)
    sid, story = await ready(trace, env, redis_server.url, upto="story")
    first = await replicas.new("first", env).start()
    await emu.wait_connected(timeout=20)
    llm.image_latency = 30.0  # image 1 is out at the provider when the replica dies
    await trace.click(story, "story_approve")
    await emu.wait_for(lambda: len(llm.image_requests) >= 1, timeout=20)
    await first.kill()
    llm.image_latency = 0.0
    await replicas.new("second", env).start()
    await emu.wait_connected(timeout=20)
    review = await emu.wait_for(lambda: reviewable(emu, sid, "reference_image:v1"), timeout=30)
    assert len(llm.image_requests) == IMAGES  # image 1 was asked for once, and only once
    text = block_text(review)
    assert "interrupted" in text and "Retry" in text
    assert "story_approve" not in action_ids(review)  # an incomplete set can't be approved
    await judged(emu, redis, replicas, trace)
    retry = StageButtonValue(session=sid, stage=Stage.REFERENCE_IMAGE, version=1, item=1)
    await trace.click(review, "stage_redo", value=retry.encode())
    await emu.wait_for(lambda: reviewable(emu, sid, "reference_image:v2"), timeout=30)
    assert len(llm.image_requests) == IMAGES + 1
