"""The job queue: one Redis Stream per shard (``keys.JOB_STREAMS``), each read by a consumer group,
with leases via idle time.

A job stays pending until acknowledged. A live worker keeps its entries fresh (XCLAIM JUSTID
resets idle time without counting a delivery); entries of a crashed worker go idle and are
reclaimed with XAUTOCLAIM by any live worker after the lease. The delivery count bounds retries.

Why one stream per shard: a job is enqueued by the same Lua script that dedupes it and takes its
session's lease (intake.lua, commit.lua), so its stream must sit in the slot of its workspace's
keys (see storage/keys.py). On a Redis Cluster the streams are spread over the primaries like the
workspaces. A multi-stream XREADGROUP is refused across slots, so on a cluster a reader takes the
streams one by one: a quick non-blocking pass over all of them (starting where its last pass
stopped, so no shard is favoured), then a short blocking read on one; a job waits at most about
``POLL_MS`` for a reader that is blocked on another shard. On one server (standalone, or
Sentinel's primary) a reader blocks on all the streams in one XREADGROUP: no polling, no wait.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import RedisCluster
from redis.exceptions import (
    ClusterError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from storage import jobview, keys
from storage.connection import Client
from storage.scripts import Scripts

log = logging.getLogger(__name__)

# Redis can't answer now, but will (a restart, a cluster failover: CLUSTERDOWN, TRYAGAIN, a
# slot without a primary yet).
_UNAVAILABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterError,
    TryAgainError,
    RedisClusterException,
    OSError,
)

POLL_MS = 100  # the longest a reader blocks on one shard before looking at the others again


@dataclass(frozen=True)
class QueuedJob:
    """``entry_id`` is the job's place in the queue, ``{shard}/{stream entry id}``: opaque to
    callers, who hand it back to ``touch`` and ``ack``."""

    entry_id: str
    job_id: str
    payload: dict[str, Any]
    deliveries: int
    # The listener's eager lane took the session's lease for this job at intake (intake.lua):
    # on a first delivery the lease is still the lane's for a moment, so a claim can wait.
    laned: bool = False


@dataclass(frozen=True)
class QueueStats:
    """The streams at one moment: jobs not yet done, those held by a worker, the oldest's age."""

    depth: int
    pending: int
    oldest_age_s: float


def _place(entry_id: str) -> tuple[str, str]:
    return keys.job_entry(entry_id)


class JobQueue:
    def __init__(self, redis: Client, consumer: str) -> None:
        self.redis = redis
        self.consumer = consumer
        self._scripts = Scripts(redis)
        self._turn = itertools.count()
        # One server (standalone or Sentinel's primary) takes one blocking XREADGROUP over
        # every shard's stream; only a cluster, where one command can't span slots, polls.
        self._one_server = not isinstance(redis, RedisCluster)
        # COUNT applies per stream: one read may deliver a job from several shards at once.
        # They are this consumer's now (in the group's pending list), so they wait here.
        self._taken: collections.deque[QueuedJob] = collections.deque()

    async def ensure_group(self, *, patience_s: float = 0.0) -> None:
        """Create the consumer group on every shard's stream (idempotent).

        ``patience_s``: keep trying that long while Redis can't be reached — a worker that
        starts during a failover (a primary just killed, its replica not yet promoted) waits
        for it instead of exiting and leaving the queue unread."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience_s
        delay = 0.2
        for stream in keys.JOB_STREAMS:
            while True:
                try:
                    await self.redis.xgroup_create(stream, keys.JOBS_GROUP, id="0", mkstream=True)
                    break
                except _UNAVAILABLE:
                    if loop.time() >= deadline:
                        raise
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
                    break
                log.warning("Redis can't be reached to set up the job queue; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    @staticmethod
    def _decode(index: int, entry_id: str, fields: dict[str, str], deliveries: int) -> QueuedJob:
        payload = json.loads(fields["job"])
        if "sid" in fields and not payload.get("session_id"):
            payload["session_id"] = fields["sid"]
        laned = fields.get("lane") == "1"
        return QueuedJob(f"{index}/{entry_id}", fields["id"], payload, deliveries, laned)

    async def _read_one(self, index: int, block_ms: int | None) -> QueuedJob | None:
        stream = keys.shard_stream(index)
        try:
            found: Any = await self.redis.xreadgroup(
                keys.JOBS_GROUP, self.consumer, {stream: ">"}, count=1, block=block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()
            return None
        for _stream, entries in found or []:
            for entry_id, fields in entries:
                return self._decode(index, entry_id, fields, 1)
        return None

    async def _read_all(self, block_ms: int) -> QueuedJob | None:
        """One blocking read over every shard's stream (a single server): no polling."""
        if self._taken:
            return self._taken.popleft()
        try:
            found: Any = await self.redis.xreadgroup(
                keys.JOBS_GROUP,
                self.consumer,
                dict.fromkeys(keys.JOB_STREAMS, ">"),
                count=1,
                block=block_ms,
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()
            return None
        for stream, entries in found or []:
            index = keys.JOB_STREAMS.index(str(stream))
            self._taken.extend(self._decode(index, i, fields, 1) for i, fields in entries)
        return self._taken.popleft() if self._taken else None

    async def read(self, block_ms: int) -> QueuedJob | None:
        """Next new job for this consumer (first delivery), or None after about ``block_ms``."""
        if self._one_server:
            return await self._read_all(block_ms)
        deadline = time.monotonic() + block_ms / 1000
        while True:
            start = next(self._turn) % keys.SHARDS
            for step in range(keys.SHARDS):
                job = await self._read_one((start + step) % keys.SHARDS, None)
                if job is not None:
                    return job
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                return None
            job = await self._read_one(start, min(left_ms, POLL_MS))
            if job is not None:
                return job

    async def reclaim(self, min_idle_ms: int, count: int = 10) -> list[QueuedJob]:
        """Take over jobs whose worker stopped renewing them (crash, kill -9, SIGSTOP)."""
        jobs: list[QueuedJob] = []
        for index, stream in enumerate(keys.JOB_STREAMS):
            if len(jobs) >= count:
                break
            result = await self.redis.xautoclaim(
                stream, keys.JOBS_GROUP, self.consumer, min_idle_ms, "0-0", count=count - len(jobs)
            )
            for entry_id, fields in result[1]:
                if not fields:
                    continue
                place = f"{index}/{entry_id}"
                jobs.append(self._decode(index, entry_id, fields, await self.deliveries(place)))
        return jobs

    async def deliveries(self, entry_id: str) -> int:
        stream, raw = _place(entry_id)
        info = await self.redis.xpending_range(stream, keys.JOBS_GROUP, min=raw, max=raw, count=1)
        return int(info[0]["times_delivered"]) if info else 1

    async def touch(self, entry_id: str) -> bool:
        """Renew our claim on a running job; False if another worker has taken it over."""
        stream, raw = _place(entry_id)
        info = await self.redis.xpending_range(stream, keys.JOBS_GROUP, min=raw, max=raw, count=1)
        if not info or info[0]["consumer"] != self.consumer:
            return False
        claimed = await self.redis.xclaim(
            stream, keys.JOBS_GROUP, self.consumer, 0, [raw], justid=True
        )
        return bool(claimed)

    async def stats(self) -> QueueStats:
        """One pipeline over every shard's stream (for a metrics scrape, never the hot path).
        Done jobs are deleted from the streams (``ack``), so their length is what is left to
        do; the oldest entry's id is its enqueue time, measured against Redis's own clock."""
        now = await self.redis.time()
        now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in keys.JOB_STREAMS:
                pipe.xlen(stream)
                pipe.xrange(stream, count=1)
                pipe.xpending(stream, keys.JOBS_GROUP)
            results = await pipe.execute(raise_on_error=False)
        depth = pending = 0
        oldest_ms: int | None = None
        for length, first, summary in zip(results[0::3], results[1::3], results[2::3], strict=True):
            for result in (length, first):
                if isinstance(result, Exception):
                    raise result
            depth += int(length)
            # No group yet (an error here): nothing is pending.
            if not isinstance(summary, Exception):
                pending += int(summary.get("pending") or 0)
            if first:
                enqueued_ms = int(str(first[0][0]).split("-", 1)[0])
                oldest_ms = enqueued_ms if oldest_ms is None else min(oldest_ms, enqueued_ms)
        age_s = 0.0 if oldest_ms is None else max(0.0, (now_ms - oldest_ms) / 1000)
        return QueueStats(depth, pending, age_s)

    async def ack(self, entry_id: str) -> None:
        stream, raw = _place(entry_id)
        # A context: it hands the MULTI's connection back (the cluster client's
        # transactional pipeline keeps it otherwise).
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(stream, keys.JOBS_GROUP, raw)
            pipe.xdel(stream, raw)
            await pipe.execute()

    async def finish(
        self,
        entry_id: str,
        team_id: str,
        session_id: str,
        fence: int,
        *,
        job_id: str = "",
        ledger_ttl_s: int = 0,
    ) -> list[tuple[str, str]]:
        """Acknowledge a finished job and give its session's lease back (if still ``fence``'s),
        in one round trip (finish.lua); ``fence`` 0: no lease to give back. The same script
        writes the delivery-ledger records the job kept for it (``Repository.defer_records``,
        kept ``ledger_ttl_s``). Only those are left when the job's last commit already
        acknowledged it (``Repository.commit(…, finish=…)``).

        Returns the (slot, ts) of each message the job posted whose slot already had another
        recorded: a second message for the slot, for the caller to delete."""
        view = jobview.current_job(job_id) if job_id else None
        records = dict(view.unflushed or {}) if view is not None else {}
        if view is not None:
            view.unflushed = None
            if view.finished and not records:
                return []
        stream, raw = _place(entry_id)
        done = view is not None and view.finished
        lost = await self._scripts.run(
            "finish",
            [stream, keys.lock(team_id, session_id), keys.messages(team_id, session_id)],
            [
                keys.JOBS_GROUP,
                "" if done else raw,
                str(fence) if fence else "",
                ledger_ttl_s,
                *jobview.record_args(records),
            ],
        )
        return jobview.lost_records(records, lost)

    async def depth(self) -> int:
        """Jobs not yet acknowledged, over every shard (acks delete entries)."""
        return sum([int(await self.redis.xlen(stream)) for stream in keys.JOB_STREAMS])
