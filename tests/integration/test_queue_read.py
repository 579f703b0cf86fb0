"""Reading the sharded job queue on one server: one blocking XREADGROUP over every shard's
stream, and every job it hands over is returned (COUNT is per stream, so one read may take a
job from several shards at once — none may be left stranded in the pending list)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from storage import keys
from storage.queue import JobQueue
from tests.support.redis_server import RedisServer


async def _enqueue(redis: Redis, index: int, job_id: str) -> None:
    payload = {"kind": "start", "team_id": "T1", "session_id": job_id}
    await redis.xadd(keys.shard_stream(index), {"id": job_id, "job": json.dumps(payload)})


async def test_one_read_takes_jobs_of_several_shards_and_returns_every_one(redis: Redis) -> None:
    queue = JobQueue(redis, "c1")
    await queue.ensure_group()
    for index in (0, 5, 11):
        await _enqueue(redis, index, f"job-{index}")
    got = [await queue.read(block_ms=100) for _ in range(3)]
    assert sorted(j.job_id for j in got if j is not None) == ["job-0", "job-11", "job-5"]
    assert await queue.read(block_ms=50) is None
    pending = [await redis.xpending(s, keys.JOBS_GROUP) for s in keys.JOB_STREAMS]
    assert sum(int(p["pending"]) for p in pending) == 3  # each handed over, none twice
    for job in got:
        assert job is not None
        await queue.ack(job.entry_id)
    pending = [await redis.xpending(s, keys.JOBS_GROUP) for s in keys.JOB_STREAMS]
    assert sum(int(p["pending"]) for p in pending) == 0


async def test_a_blocked_reader_wakes_for_a_job_on_any_shard(redis: Redis) -> None:
    queue = JobQueue(redis, "c1")
    await queue.ensure_group()
    reader = asyncio.create_task(queue.read(block_ms=5000))
    await asyncio.sleep(0.2)
    began = time.monotonic()
    await _enqueue(redis, 7, "late")
    job = await asyncio.wait_for(reader, 2)
    assert job is not None and job.job_id == "late"
    assert time.monotonic() - began < 0.5, "woken by the job, not by a poll"


async def test_a_worker_starting_while_redis_is_down_waits_for_it(tmp_path: Path) -> None:
    """A replica restarted during a failover (seen in the cluster fault loop: its worker exited
    on 'connection refused' and the queue went unread) sets the queue up once Redis is back."""
    server = RedisServer(tmp_path / "late", appendonly=False)  # its port, nothing there yet
    client = Redis.from_url(server.url, decode_responses=True)
    queue = JobQueue(client, "w1")
    with pytest.raises(RedisConnectionError):
        await queue.ensure_group()  # no patience: fails at once, as before
    waiting = asyncio.create_task(queue.ensure_group(patience_s=30))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    server.start()
    try:
        await asyncio.wait_for(waiting, 20)
        groups = await client.xinfo_groups(keys.JOB_STREAMS[0])
        assert [g["name"] for g in groups] == [keys.JOBS_GROUP]
    finally:
        await client.aclose()
        server.stop()
