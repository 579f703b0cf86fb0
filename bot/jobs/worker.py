"""Durable workers: read jobs from the stream, hold the session lease, run the flow, ack.

Work for one session is serialised by its lease (fenced: every commit checks the token); work for
different sessions runs concurrently. A job is acknowledged only after its outcome is visible;
a job that keeps failing is given up visibly after ``max_deliveries``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from pydantic import ValidationError

from bot.jobs.delivery import deliver
from bot.jobs.flows import Flows
from bot.jobs.model import Job
from bot.logs import correlation_id
from storage.intake import TRIGGER
from storage.queue import JobQueue, QueuedJob
from storage.repository import CommitConflict

log = logging.getLogger(__name__)
LOCK_POLL_S = 0.05


class Worker:
    def __init__(
        self,
        queue: JobQueue,
        flows: Flows,
        *,
        concurrency: int,
        lease_s: float,
        max_deliveries: int,
    ) -> None:
        self.queue = queue
        self.flows = flows
        self.repo = flows.ctx.repo
        self.concurrency = concurrency
        self.lease_ms = int(lease_s * 1000)
        self.max_deliveries = max_deliveries
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._slots = asyncio.Semaphore(concurrency)
        self.processed = 0

    async def start(self) -> None:
        await self.queue.ensure_group()
        self._tasks = [asyncio.create_task(self._reader(i)) for i in range(self.concurrency)]
        self._tasks.append(asyncio.create_task(self._reclaimer()))

    async def stop(self, grace_s: float = 20.0) -> None:
        """Stop taking work; running jobs get ``grace_s`` to finish; the rest is reclaimed later."""
        self._stopping.set()
        _done, pending = (
            await asyncio.wait(self._tasks, timeout=grace_s) if self._tasks else (set(), set())
        )
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _reader(self, index: int) -> None:
        while not self._stopping.is_set():
            try:
                queued = await self.queue.read(block_ms=500)
            except Exception:
                log.exception("reading jobs failed; retrying")
                await asyncio.sleep(1.0)
                continue
            if queued is not None:
                async with self._slots:
                    await self.process(queued)

    async def _reclaimer(self) -> None:
        interval = max(0.2, self.lease_ms / 3000)
        while not self._stopping.is_set():
            try:
                for queued in await self.queue.reclaim(self.lease_ms):
                    log.info("reclaimed job %s (delivery %d)", queued.job_id, queued.deliveries)
                    task = asyncio.create_task(self._process_slot(queued))
                    self._tasks.append(task)
            except Exception:
                log.exception("reclaiming jobs failed; retrying")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=interval)
            self._tasks = [t for t in self._tasks if not t.done()]

    async def _process_slot(self, queued: QueuedJob) -> None:
        async with self._slots:
            await self.process(queued)

    async def process(self, queued: QueuedJob) -> None:
        token = correlation_id.set(f"{queued.job_id}#{queued.deliveries}-{uuid.uuid4().hex[:6]}")
        try:
            await self._process(queued)
        finally:
            correlation_id.reset(token)

    async def _process(self, queued: QueuedJob) -> None:
        try:
            trigger = TRIGGER.validate_python(queued.payload)
        except ValidationError:
            log.error("dropping malformed job %s", queued.job_id)
            await self.queue.ack(queued.entry_id)
            return
        team, sid = trigger.team_id, trigger.session_id
        lease = _Lease(asyncio.current_task())
        heartbeat = asyncio.create_task(self._heartbeat(queued.entry_id, team, sid, lease))
        fence = 0
        try:
            fence = await self._acquire(team, sid, heartbeat)
            if fence == 0:
                return  # another worker took the job over while we waited
            lease.fence = fence
            self.flows.ctx.crash.reach("after_claim")
            job = Job(queued.job_id, trigger, queued.entry_id, queued.deliveries, fence)
            marker = await self.repo.done(job.id)
            if marker is not None:
                await self._replay(job, marker)
            elif queued.deliveries > self.max_deliveries:
                log.error("giving up job %s after %d deliveries", job.id, queued.deliveries)
                await self.flows.give_up(job)
            else:
                await self.flows.run(job)
            await self.queue.ack(queued.entry_id)
            self.processed += 1
        except asyncio.CancelledError:
            if not lease.lost:
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            log.warning("job %s stopped: its lease was taken over while it ran", queued.job_id)
        except CommitConflict as exc:
            log.warning(
                "job %s lost its session (%s); leaving it to its new owner",
                queued.job_id,
                exc.reason,
            )
        except Exception:
            log.exception("job %s failed; it will be retried", queued.job_id)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            if fence:
                with contextlib.suppress(Exception):
                    await self.repo.release(team, sid, fence)

    async def _acquire(self, team: str, sid: str, heartbeat: asyncio.Task[None]) -> int:
        while True:
            fence = await self.repo.acquire(team, sid, self.lease_ms)
            if fence:
                return fence
            if heartbeat.done() or self._stopping.is_set():
                return 0
            await asyncio.sleep(LOCK_POLL_S)

    async def _replay(self, job: Job, marker: dict[str, Any]) -> None:
        """The job committed before a crash: replay only its delivery steps."""
        steps = [str(step) for step in marker.get("deliver") or []]
        if not steps:
            return
        s = await self.repo.get(job.trigger.team_id, job.trigger.session_id)
        if s is not None:
            await deliver(self.flows.ctx, job, s, steps)

    async def _heartbeat(self, entry_id: str, team: str, sid: str, lease: _Lease) -> None:
        """Keep the stream entry and the session lease ours while the job runs."""
        interval = self.lease_ms / 3000
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self.queue.touch(entry_id):
                    log.warning("job entry %s was taken over by another worker", entry_id)
                    return
                if lease.fence and not await self.repo.renew(team, sid, lease.fence, self.lease_ms):
                    log.warning("lease on session %s was lost; stopping the job", sid)
                    lease.lose()
                    return
            except Exception:
                log.warning("heartbeat failed; will retry", exc_info=True)


class _Lease:
    """The session lease of one running job: its fence token (0 while waiting for it)."""

    def __init__(self, owner: asyncio.Task[Any] | None) -> None:
        self.fence = 0
        self.lost = False
        self._owner = owner

    def lose(self) -> None:
        """Another worker holds the session now: stop this job before it edits anything."""
        self.lost = True
        if self._owner is not None:
            self._owner.cancel()
