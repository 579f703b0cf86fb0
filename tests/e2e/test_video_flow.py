"""Stage 4 end to end: the storyboard approved → a plan with its cost → confirmed → clips made
by the video-jobs emulator (real MP4s) → joined with a voice-over by ffmpeg → one MP4 in the
thread → Redo a scene (a new estimate, confirmed again) → Approve → the session is complete.

Every paid call is counted by the emulator: one create per confirmed clip, one speech call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bot.pipeline.models import Stage, Status
from bot.slack.actions import StageButtonValue
from tests.e2e.harness import AppUnderTest, action_ids, app_env, block_text, by_slot, settings_from
from tests.e2e.test_stages_flow import CHANNEL, approve_story, refusals, reviewed, value
from tests.emulators.media_files import probe
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator, StoredMessage
from tests.support.redis_server import RedisServer

VIDEO_ENV = {"STORYLOOP_VIDEO_SIZE": "320x180", "STORYLOOP_PROGRESS_INTERVAL": "0.2"}


@pytest.fixture
async def video_app(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, mode: str
) -> AsyncIterator[AppUnderTest]:
    llm.video_queue_s, llm.video_render_s, llm.video_poll_after_ms = 0.05, 0.2, 50
    env = app_env(emu, llm, redis_server.url, mode=mode, **VIDEO_ENV)
    running = await AppUnderTest(settings_from(env), redis_server.url).start()
    if mode == "socket":
        await emu.wait_connected()
        emu.mode = "socket"
    else:
        emu.mode, emu.events_url = "http", running.events_url
    yield running
    await running.stop(grace_s=2)


async def to_plan(emu: SlackEmulator) -> tuple[StoredMessage, str, StoredMessage]:
    """Approve the story, the images and the storyboard: the video plan is shown."""
    card, sid, images = await approve_story(emu)
    await emu.click(images.ts, "story_approve")
    board = await reviewed(emu, "storyboard:v1:p")
    await emu.click(board.ts, "story_approve")
    plan = await emu.wait_for(
        lambda: [m for m in by_slot(emu, "video:plan:1", channel=CHANNEL) if action_ids(m)],
        timeout=15,
    )
    return card, sid, plan[0]


def video_files(emu: SlackEmulator, card: StoredMessage) -> list[str]:
    return [
        f.filename for f in emu.files_in_thread(CHANNEL, card.ts) if f.filename.endswith(".mp4")
    ]


@pytest.mark.parametrize("mode", ["socket", "http"], indirect=True)
async def test_confirm_render_redo_and_approve_the_video(
    emu: SlackEmulator, llm: FakeLLM, video_app: AppUnderTest
) -> None:
    card, sid, plan = await to_plan(emu)

    # 1. Nothing is paid before a confirmation; the plan says what it will cost.
    text = block_text(plan)
    assert "Video plan" in text and "Estimated cost" in text and "320x180" in text
    assert action_ids(plan) == ["video_confirm", "video_cancel"]
    assert llm.video_creates == [] and llm.speech_requests == []
    await emu.wait_for(
        lambda: "waiting for confirmation" in block_text(emu.message(CHANNEL, card.ts))
    )
    # Someone the approval rules don't allow is refused; nothing is spent.
    await emu.click(plan.ts, "video_confirm", user="U0BOB")
    await emu.wait_for(lambda: refusals(emu, "Only", "confirm spending"))
    assert llm.video_creates == []

    # 2. Confirm: the clips are made (one create each), joined with the voice-over, shown.
    await emu.click(plan.ts, "video_confirm")
    review = await emu.wait_for(
        lambda: [m for m in by_slot(emu, "video:v1", channel=CHANNEL) if action_ids(m)],
        timeout=60,
    )
    clips = len(llm.video_creates)
    assert clips >= 2 and all(c.has_input_reference for c in llm.video_creates)
    assert len(llm.speech_requests) == 1
    names = video_files(emu, card)
    assert "video-v1.mp4" in names and len(names) == clips + 1  # the video and each clip
    final = next(f for f in emu.files_in_thread(CHANNEL, card.ts) if f.filename == "video-v1.mp4")
    info = probe(final.bytes)
    assert abs(info["duration"] - 30) <= 3 and info["width"] == 320 and info["has_audio"]
    assert "Video v1" in block_text(review[0]) and "stage_redo" in action_ids(review[0])

    # 3. Redo scene 2: a new estimate first, then one scene's clips only.
    redo = StageButtonValue(session=sid, stage=Stage.VIDEO, version=1, item=2).encode()
    await emu.click(review[0].ts, "stage_redo", value=redo)
    plan2 = await emu.wait_for(
        lambda: [m for m in by_slot(emu, "video:plan:2", channel=CHANNEL) if action_ids(m)],
        timeout=15,
    )
    assert "redo of scene 2" in block_text(plan2[0])
    assert len(llm.video_creates) == clips  # nothing spent before the confirmation
    # A confirmation of the outdated plan is refused politely.
    await emu.click(plan2[0].ts, "video_confirm", value=value(sid, Stage.VIDEO, 1))
    await emu.wait_for(lambda: refusals(emu, "plan 1", "plan is 2"))
    # Two confirmations at once: one render, one polite refusal.
    await asyncio.gather(*(emu.click(plan2[0].ts, "video_confirm") for _ in range(2)))
    review2 = await emu.wait_for(
        lambda: [m for m in by_slot(emu, "video:v2", channel=CHANNEL) if action_ids(m)],
        timeout=60,
    )
    assert len(llm.video_creates) == clips + 1  # scene 2 is one clip at 30 s
    await emu.wait_for(
        lambda: refusals(emu, "already being rendered") or refusals(emu, "no video plan")
    )
    assert len(llm.speech_requests) == 1  # the voice-over is kept

    # 4. Approve: the session is complete.
    await emu.click(review2[0].ts, "story_approve")
    complete = await emu.wait_for(lambda: by_slot(emu, "complete", channel=CHANNEL), timeout=10)
    assert "Session complete" in block_text(complete[0]) and "Video v2" in block_text(complete[0])
    await emu.wait_for(lambda: "Complete" in block_text(emu.message(CHANNEL, card.ts)))
    # The card links every approved artifact.
    await emu.wait_for(lambda: "|Video v2" in block_text(emu.message(CHANNEL, card.ts)))
    card_text = block_text(emu.message(CHANNEL, card.ts))
    assert "|Story v1" in card_text and "|Storyboard v1" in card_text
    session = await video_app.session(emu.team_id, sid)
    assert session is not None and session.stage is Stage.COMPLETE
    assert session.status is Status.DONE and session.spent_usd > 0
    assert emu.unescaped_broadcasts() == []


async def test_cancel_while_rendering_stops_and_deletes_the_remote_jobs(
    emu: SlackEmulator, llm: FakeLLM, video_app: AppUnderTest
) -> None:
    card, sid, plan = await to_plan(emu)
    llm.video_render_s = 30.0  # still rendering when Cancel comes
    await emu.click(plan.ts, "video_confirm")
    await emu.wait_for(lambda: len(llm.video_creates) >= 2, timeout=20)
    progress = await emu.wait_for(
        lambda: [m for m in by_slot(emu, "video:v1:progress", channel=CHANNEL) if action_ids(m)],
        timeout=10,
    )
    await emu.click(progress[0].ts, "video_cancel")
    notice = await emu.wait_for(lambda: by_slot(emu, "cancelled:", channel=CHANNEL, prefix=True))
    assert "Video cancelled by <@U0ALICE>" in block_text(notice[0])
    await emu.wait_for(lambda: len(llm.video_deletes) >= 1, timeout=10)
    session = await video_app.session(emu.team_id, sid)
    assert session is not None and session.status is Status.CANCELLED
    assert video_files(emu, card) == []
    # A new plan is one click away; nothing is spent until it is confirmed.
    created = len(llm.video_creates)
    retry = [m for m in by_slot(emu, "cancelled:", channel=CHANNEL, prefix=True) if action_ids(m)]
    await emu.click(retry[0].ts, "story_retry")
    await emu.wait_for(lambda: by_slot(emu, "video:plan:2", channel=CHANNEL), timeout=10)
    assert len(llm.video_creates) == created


async def test_a_clip_refused_by_the_content_policy_names_the_scene(
    emu: SlackEmulator, llm: FakeLLM, video_app: AppUnderTest
) -> None:
    _card, _sid, plan = await to_plan(emu)
    llm.enqueue_video_fault("policy")
    await emu.click(plan.ts, "video_confirm")
    failed = await emu.wait_for(
        lambda: by_slot(emu, "fail:", channel=CHANNEL, prefix=True), timeout=60
    )
    text = block_text(failed[0])
    # Clips are made concurrently: whichever came first was refused; its scene is named.
    assert "Scene " in text and "safety system" in text and "story_retry" in action_ids(failed[0])
    created = len(llm.video_creates)
    # Retry doesn't remake the refused clip by itself: it offers a new plan to confirm.
    await emu.click(failed[0].ts, "story_retry")
    await emu.wait_for(lambda: by_slot(emu, "video:plan:2", channel=CHANNEL), timeout=10)
    assert len(llm.video_creates) == created


async def test_a_failed_download_is_downloaded_again_never_generated_again(
    emu: SlackEmulator, llm: FakeLLM, video_app: AppUnderTest
) -> None:
    _card, _sid, plan = await to_plan(emu)
    # The first clip's bytes won't come: the provider client's 4 read attempts all fail.
    llm.enqueue_video_fault("download_fail", count=4)
    await emu.click(plan.ts, "video_confirm")
    failed = await emu.wait_for(
        lambda: by_slot(emu, "fail:", channel=CHANNEL, prefix=True), timeout=90
    )
    assert "story_retry" in action_ids(failed[0])
    created = len(llm.video_creates)
    downloads = len(llm.video_downloads)
    # The clip is made and paid for: Retry fetches it again, nothing is generated again.
    await emu.click(failed[0].ts, "story_retry")
    await emu.wait_for(
        lambda: [m for m in by_slot(emu, "video:v1", channel=CHANNEL) if action_ids(m)],
        timeout=90,
    )
    assert len(llm.video_creates) == created
    assert len(llm.video_downloads) > downloads


async def test_a_video_over_the_upload_limit_is_explained(
    emu: SlackEmulator, llm: FakeLLM, video_app: AppUnderTest
) -> None:
    card, _sid, plan = await to_plan(emu)
    emu.max_file_bytes = 60_000  # room for each clip, not for the whole video
    await emu.click(plan.ts, "video_confirm")
    failed = await emu.wait_for(
        lambda: by_slot(emu, "fail:", channel=CHANNEL, prefix=True), timeout=90
    )
    assert "larger than this workspace allows" in block_text(failed[0])
    assert "video-v1.mp4" not in video_files(emu, card)


async def test_the_daily_limit_refuses_a_render_before_anything_is_spent(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, redis: Redis
) -> None:
    """(``redis``: a clean Redis — the limit counts the workspace's whole day.)"""
    llm.video_queue_s, llm.video_render_s = 0.05, 0.2
    env = app_env(
        emu, llm, redis_server.url, mode="socket", STORYLOOP_DAILY_SPEND_LIMIT_USD="1", **VIDEO_ENV
    )
    running = await AppUnderTest(settings_from(env), redis_server.url).start()
    try:
        await emu.wait_connected()
        emu.mode = "socket"
        _card, _sid, plan = await to_plan(emu)  # the images (≈ $0.20) fit under $1
        await emu.click(plan.ts, "video_confirm")  # ≈ $4.50 of video doesn't
        failed = await emu.wait_for(
            lambda: by_slot(emu, "fail:", channel=CHANNEL, prefix=True), timeout=30
        )
        assert "daily spending limit" in block_text(failed[0])
        assert llm.video_creates == []
    finally:
        await running.stop(grace_s=2)
