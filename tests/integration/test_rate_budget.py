"""The shared Slack rate budget (storage/budget.py, lua/budget.lua) against a real redis-server:
burst and refill, the reserve progress edits can't touch, results queued in turn with a bounded
wait, and two replicas (two clients) drawing from one budget."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.crc import key_slot

from storage import keys
from storage.budget import Bucket, RedisRateBudget
from storage.scripts import Scripts
from tests.support.redis_server import RedisServer

SLOW = 0.001  # tokens a second: no refill worth counting during a test


CHANNEL = Bucket(SLOW, 3, 1)
UPDATES = Bucket(SLOW, 5, 2)


def budget(
    redis: Redis,
    *,
    channel: Bucket = CHANNEL,
    updates: Bucket = UPDATES,
    max_wait_s: float = 10.0,
) -> RedisRateBudget:
    return RedisRateBudget(Scripts(redis), channel=channel, updates=updates, max_wait_s=max_wait_s)


async def test_a_burst_goes_at_once_then_results_wait_and_the_bucket_refills(redis: Redis) -> None:
    b = budget(redis, channel=Bucket(10.0, 3, 1))
    waits = [await b.take("T1", "C1", "chat_postMessage", best_effort=False) for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    # Results past the burst are queued in turn: the 4th after ~1/rate, the 5th after ~2/rate.
    assert waits[3] is not None and waits[4] is not None
    assert 0 < waits[3] <= 0.1 and waits[3] + 0.05 < waits[4] <= 0.2
    await asyncio.sleep(0.6)  # debt (2) paid back and the burst (3) refilled at 10/s
    assert [await b.take("T1", "C1", "chat_postMessage", best_effort=False) for _ in range(3)] == [
        0.0
    ] * 3


async def test_progress_edits_leave_the_reserve_to_results(redis: Redis) -> None:
    b = budget(redis, channel=Bucket(SLOW, 10, 0), updates=Bucket(SLOW, 5, 2))
    edits = [await b.take("T1", "C1", "chat_update", best_effort=True) for _ in range(6)]
    # The workspace's 5 tokens: progress may take them while more than 1 + 2 (reserve) remain.
    assert edits == [0.0, 0.0, 0.0, None, None, None]
    # The reserve is there for results: the story's final edits go at once.
    assert await b.take("T1", "C1", "chat_update", best_effort=False) == 0.0
    assert await b.take("T1", "C2", "chat_update", best_effort=False) == 0.0
    # Then results wait their turn, and a progress edit is skipped, never queued.
    wait = await b.take("T1", "C3", "chat_update", best_effort=False)
    assert wait is not None and wait > 1
    assert await b.take("T1", "C3", "chat_update", best_effort=True) is None
    # Another workspace has its own budget.
    assert await b.take("T2", "C1", "chat_update", best_effort=True) == 0.0


async def test_a_progress_edit_needs_room_in_its_channel_too(redis: Redis) -> None:
    b = budget(redis, channel=Bucket(SLOW, 3, 1), updates=Bucket(SLOW, 50, 0))
    assert await b.take("T1", "C1", "chat_postMessage", best_effort=False) == 0.0
    assert await b.take("T1", "C1", "chat_update", best_effort=True) == 0.0
    # One token left in C1 (the reserve): no progress edit there; C2 still has room.
    assert await b.take("T1", "C1", "chat_update", best_effort=True) is None
    assert await b.take("T1", "C2", "chat_update", best_effort=True) == 0.0
    # A post takes nothing of the workspace's chat.update bucket; other calls take nothing.
    assert await b.take("T1", "C1", "chat_getPermalink", best_effort=False) == 0.0
    state = await redis.hgetall(keys.budget_updates("T1"))
    assert round(float(state["tokens"]), 2) == 48.0  # 50 less two edits
    assert await redis.ttl(keys.budget_updates("T1")) > 0


async def test_a_result_waits_at_most_max_wait(redis: Redis) -> None:
    b = budget(redis, channel=Bucket(1.0, 1, 0), max_wait_s=2.0)
    waits = [await b.take("T1", "C1", "chat_postMessage", best_effort=False) for _ in range(6)]
    assert waits[0] == 0.0
    assert [round(w or 0, 1) for w in waits[1:]] == [1.0, 2.0, 2.0, 2.0, 2.0]
    # Past the max the debt doesn't deepen: the waits stop growing and the bucket recovers.
    state = await redis.hgetall(keys.budget_channel("T1", "C1"))
    assert float(state["tokens"]) >= -2.0


async def test_two_replicas_share_one_budget(redis: Redis, redis_server: RedisServer) -> None:
    clients = [Redis.from_url(redis_server.url), Redis.from_url(redis_server.url)]
    try:
        replicas = [
            budget(c, channel=Bucket(SLOW, 100, 0), updates=Bucket(SLOW, 20, 4)) for c in clients
        ]

        async def run(b: RedisRateBudget, n: int) -> list[float | None]:
            return [
                await b.take("T1", f"C{i % 5}", "chat_update", best_effort=True) for i in range(n)
            ]

        seen = await asyncio.gather(run(replicas[0], 30), run(replicas[1], 30))
        granted = sum(1 for w in [*seen[0], *seen[1]] if w == 0.0)
        # 20 tokens, 4 kept back for results: together the replicas made 16 progress edits (not
        # 16 each).
        assert granted == 16
        assert all(w in (0.0, None) for w in [*seen[0], *seen[1]])
        # What is left is there for either replica's results.
        assert await replicas[1].take("T1", "C9", "chat_update", best_effort=False) == 0.0
    finally:
        for c in clients:
            await c.aclose()


def test_a_workspace_s_buckets_share_its_slot() -> None:
    named = [keys.budget_updates("T1"), keys.budget_channel("T1", "C1"), keys.session("T1", "s")]
    assert len({key_slot(k.encode()) for k in named}) == 1
