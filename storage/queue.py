"""The jobs stream: a Redis Stream read by a consumer group, with leases via idle time.

A job stays pending until acknowledged. A live worker keeps its entries fresh (XCLAIM JUSTID
resets idle time without counting a delivery); entries of a crashed worker go idle and are
reclaimed with XAUTOCLAIM by any live worker after the lease. The delivery count bounds retries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from storage import keys


@dataclass(frozen=True)
class QueuedJob:
    entry_id: str
    job_id: str
    payload: dict[str, Any]
    deliveries: int


@dataclass(frozen=True)
class QueueStats:
    """The stream at one moment: jobs not yet done, those held by a worker, the oldest's age."""

    depth: int
    pending: int
    oldest_age_s: float


class JobQueue:
    def __init__(self, redis: Redis, consumer: str) -> None:
        self.redis = redis
        self.consumer = consumer

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(keys.JOBS_STREAM, keys.JOBS_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    @staticmethod
    def _decode(entry_id: str, fields: dict[str, str], deliveries: int) -> QueuedJob:
        payload = json.loads(fields["job"])
        if "sid" in fields and not payload.get("session_id"):
            payload["session_id"] = fields["sid"]
        return QueuedJob(entry_id, fields["id"], payload, deliveries)

    async def read(self, block_ms: int) -> QueuedJob | None:
        """Next new job for this consumer (first delivery), or None after ``block_ms``."""
        try:
            found: Any = await self.redis.xreadgroup(
                keys.JOBS_GROUP, self.consumer, {keys.JOBS_STREAM: ">"}, count=1, block=block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()
            return None
        for _stream, entries in found or []:
            for entry_id, fields in entries:
                return self._decode(entry_id, fields, 1)
        return None

    async def reclaim(self, min_idle_ms: int, count: int = 10) -> list[QueuedJob]:
        """Take over jobs whose worker stopped renewing them (crash, kill -9, SIGSTOP)."""
        result = await self.redis.xautoclaim(
            keys.JOBS_STREAM, keys.JOBS_GROUP, self.consumer, min_idle_ms, "0-0", count=count
        )
        entries = result[1]
        jobs = []
        for entry_id, fields in entries:
            if not fields:
                continue
            jobs.append(self._decode(entry_id, fields, await self.deliveries(entry_id)))
        return jobs

    async def deliveries(self, entry_id: str) -> int:
        info = await self.redis.xpending_range(
            keys.JOBS_STREAM, keys.JOBS_GROUP, min=entry_id, max=entry_id, count=1
        )
        return int(info[0]["times_delivered"]) if info else 1

    async def touch(self, entry_id: str) -> bool:
        """Renew our claim on a running job; False if another worker has taken it over."""
        info = await self.redis.xpending_range(
            keys.JOBS_STREAM, keys.JOBS_GROUP, min=entry_id, max=entry_id, count=1
        )
        if not info or info[0]["consumer"] != self.consumer:
            return False
        claimed = await self.redis.xclaim(
            keys.JOBS_STREAM, keys.JOBS_GROUP, self.consumer, 0, [entry_id], justid=True
        )
        return bool(claimed)

    async def stats(self) -> QueueStats:
        """One round trip (for a metrics scrape, never the hot path). Done jobs are deleted
        from the stream (``ack``), so its length is what is left to do; the oldest entry's id
        is its enqueue time, measured against Redis's own clock."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(keys.JOBS_STREAM)
        pipe.xrange(keys.JOBS_STREAM, count=1)
        pipe.xpending(keys.JOBS_STREAM, keys.JOBS_GROUP)
        pipe.time()
        depth, first, summary, now = await pipe.execute(raise_on_error=False)
        for result in (depth, first, now):
            if isinstance(result, Exception):
                raise result
        # No group yet (an error here): nothing is pending.
        pending = 0 if isinstance(summary, Exception) else int(summary.get("pending") or 0)
        oldest_age_s = 0.0
        if first:
            enqueued_ms = int(str(first[0][0]).split("-", 1)[0])
            now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
            oldest_age_s = max(0.0, (now_ms - enqueued_ms) / 1000)
        return QueueStats(int(depth), pending, oldest_age_s)

    async def ack(self, entry_id: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.xack(keys.JOBS_STREAM, keys.JOBS_GROUP, entry_id)
        pipe.xdel(keys.JOBS_STREAM, entry_id)
        await pipe.execute()
