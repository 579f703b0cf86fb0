"""The stages phase: sessions driven from the story through images, storyboard and video.

Each session: ``/story`` → Approve → images v1 → a reply about image 2 → Redo image 2 (v2) →
"regenerate the images" (v3) → Approve → storyboard v1 → Approve → the video plan → Confirm →
video v1 → Approve (complete). That is 4 + 1 + 4 = 9 images requested by the user, so paid
image calls per session must be 9, and one video job per planned clip. The figures: paid calls
(counted by the emulators), cost through the storyboard and per finished video, Redis bytes per
session through the storyboard (``MEMORY USAGE`` of every key the session owns, measured before
the video) against the 64 KB bound, Slack calls, and the time from Confirm to the video shown.
The emulator's video jobs are scaled down (0.2 s queued, 1 s rendering).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from redis.asyncio import Redis

from bench.load import channel_for, prompt_for, user_for
from bench.metrics import key_category
from bench.observe import BenchEmulator
from bench.procs import start_storyloop
from bot.pipeline.artifacts import VideoVersion
from bot.pipeline.models import Session, Stage
from bot.slack.actions import StageButtonValue
from storage import keys
from tests.e2e.harness import action_ids, by_slot, session_of

REQUESTED_IMAGES = 4 + 1 + 4  # v1, Redo of one image, Regenerate of the set
BYTES_BOUND = 64 * 1024
REVIEW = {"story_approve", "story_regenerate"}


def _reviewable(emu: BenchEmulator, channel: str, slot: str) -> Any:
    prefix = slot.endswith(":p")
    found = [
        m for m in by_slot(emu, slot, channel=channel, prefix=prefix) if REVIEW & set(action_ids(m))
    ]
    return found[-1] if found else None


async def _wait(emu: BenchEmulator, channel: str, slot: str, timeout: float) -> Any:
    return await emu.wait_for(lambda: _reviewable(emu, channel, slot), timeout=timeout)


async def one_session(emu: BenchEmulator, index: int, timeout: float) -> dict[str, Any]:
    channel, user = channel_for(index), user_for(index)
    emu.ensure_channel(channel)
    marks: dict[str, float] = {}
    start = time.monotonic()
    await emu.slash_command(f"30s {prompt_for(index)}", user=user, channel=channel)
    story = await emu.wait_for(
        lambda: [
            m for m in by_slot(emu, "story", channel=channel) if "story_approve" in action_ids(m)
        ],
        timeout=timeout,
    )
    story = story[0]
    sid = session_of(story) or ""
    marks["story"] = time.monotonic() - start
    t0 = time.monotonic()
    await emu.click(story, "story_approve", user=user)
    images = await _wait(emu, channel, "reference_image:v1", timeout)
    marks["images_v1"] = time.monotonic() - t0
    await emu.user_posts(channel, "make image 2 brighter", user=user, thread_ts=story.thread_ts)
    await emu.wait_for(
        lambda: by_slot(emu, "reply:", channel=channel, prefix=True), timeout=timeout
    )
    redo = StageButtonValue(session=sid, stage=Stage.REFERENCE_IMAGE, version=1, item=2)
    await emu.click(images, "stage_redo", user=user, value=redo.encode())
    await _wait(emu, channel, "reference_image:v2", timeout)
    await emu.user_posts(channel, "regenerate the images", user=user, thread_ts=story.thread_ts)
    images = await _wait(emu, channel, "reference_image:v3", timeout)
    t0 = time.monotonic()
    await emu.click(images, "story_approve", user=user)
    board = await _wait(emu, channel, "storyboard:v1:p", timeout)
    marks["storyboard_v1"] = time.monotonic() - t0
    await emu.click(board, "story_approve", user=user)
    plan = await emu.wait_for(
        lambda: [
            m
            for m in by_slot(emu, "video:plan:1", channel=channel)
            if "video_confirm" in action_ids(m)
        ],
        timeout=timeout,
    )
    marks["through_storyboard"] = time.monotonic() - start
    t0 = time.monotonic()
    await emu.click(plan[0], "video_confirm", user=user)
    video = await _wait(emu, channel, "video:v1", timeout)
    marks["confirm_to_video"] = time.monotonic() - t0
    await emu.click(video, "story_approve", user=user)
    await emu.wait_for(lambda: by_slot(emu, "complete", channel=channel), timeout=timeout)
    marks["total"] = time.monotonic() - start
    return {"index": index, "session": sid, "channel": channel, "seconds": marks}


async def session_bytes(redis: Redis, sid: str, channel: str) -> tuple[int, Counter[str]]:
    """MEMORY USAGE of every key that belongs to the session: its own keys, and the keys named
    by its channel (thread index, reply dedupe keys, done markers of its jobs) — the same rule
    as the redis phase (bench/metrics.py)."""
    total, by_kind = 0, Counter[str]()
    async for key in redis.scan_iter(match="sl:*", count=1000):
        if sid in key or f":{channel}:" in key:
            size = int(await redis.memory_usage(key, samples=0) or 0)
            total += size
            by_kind[key_category(key)] += size
    return total, by_kind


async def phase_stages(
    llm: Any,
    redis_url: str,
    *,
    sessions: int,
    log_dir: Any,
    extra_env: dict[str, str],
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Run ``sessions`` concurrent sessions through the stages; returns the figures."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    await redis.flushall()
    await llm.reset()
    await llm.configure(0.0, None)
    emu = await BenchEmulator().start()
    running = None
    try:
        running = await start_storyloop(
            emu,
            llm.base_url,
            redis_url,
            mode="socket",
            replicas=1,
            log_dir=log_dir,
            extra_env=extra_env,
            tag="storyloop-stages",
        )
        began = time.monotonic()
        runs = await asyncio.gather(
            *(one_session(emu, 900_000 + k, timeout) for k in range(sessions)),
            return_exceptions=True,
        )
        wall = time.monotonic() - began
        done = [r for r in runs if isinstance(r, dict)]
        stats = await llm.stats()
        per: list[dict[str, Any]] = []
        kinds: Counter[str] = Counter()
        for r in done:
            raw = await redis.hget(keys.session(emu.team_id, r["session"]), "data")
            s = Session.model_validate_json(raw) if raw else None
            size, by_kind = await session_bytes(redis, r["session"], r["channel"])
            kinds.update(by_kind)
            video_raw = await redis.hget(keys.versions(emu.team_id, r["session"]), "video:1")
            video = VideoVersion.model_validate_json(video_raw) if video_raw else None
            spent = s.spent_usd if s else 0.0
            per.append(
                {
                    **r,
                    "spent_usd": spent,
                    "video_usd": video.cost_usd if video else None,
                    "redis_bytes": size,
                }
            )
        calls: dict[str, int] = {}
        for call in emu.calls:
            calls[call.method] = calls.get(call.method, 0) + 1
        n = max(1, len(done))
        bytes_ = [p["redis_bytes"] for p in per]
        return {
            "sessions": sessions,
            "completed": len(done),
            "errors": [repr(r)[:200] for r in runs if not isinstance(r, dict)],
            "wall_s": round(wall, 1),
            "script": "story → Approve → images v1 → reply → Redo image 2 → regenerate → "
            "Approve → storyboard → Approve",
            "images_requested_per_session": REQUESTED_IMAGES,
            "image_calls_per_session": round(int(stats.get("image_requests", 0)) / n, 2),
            "images_made_per_session": round(int(stats.get("images", 0)) / n, 2),
            "cost_usd_per_session": round(sum(p["spent_usd"] or 0 for p in per) / n, 4),
            "cost_usd_per_video": round(sum(p["video_usd"] or 0 for p in per) / n, 4),
            "video_calls_per_session": round(int(stats.get("video_creates", 0)) / n, 2),
            "speech_calls_per_session": round(int(stats.get("speech_requests", 0)) / n, 2),
            "redis_bytes_per_session": round(sum(bytes_) / n),
            "redis_bytes_max": max(bytes_, default=0),
            "redis_bytes_bound": BYTES_BOUND,
            "redis_bytes_by_kind": {k: round(v / n) for k, v in kinds.most_common()},
            "slack_calls_per_session": {k: round(v / n, 1) for k, v in sorted(calls.items())},
            "seconds": {
                k: round(sum(p["seconds"][k] for p in per) / n, 2)
                for k in (
                    "story",
                    "images_v1",
                    "storyboard_v1",
                    "through_storyboard",
                    "confirm_to_video",
                    "total",
                )
            }
            if per
            else {},
            "per_session": per,
        }
    finally:
        if running is not None:
            await running.stop()
        await emu.stop()
        await redis.aclose()
