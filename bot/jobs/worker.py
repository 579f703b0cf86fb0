"""Durable workers: read jobs from the stream, hold the session lease, run the flow, ack.

Work for one session is serialised by its lease (fenced: every commit checks the token); work for
different sessions runs concurrently. A job is acknowledged only after its outcome is visible;
a job that keeps failing is given up visibly after ``max_deliveries``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from pydantic import ValidationError

from bot.jobs.delivery import deliver
from bot.jobs.flows import Flows
from bot.jobs.home import HomePublisher
from bot.jobs.model import Job
from bot.logs import correlation_id, session_id, team_id
from bot.metrics import Metrics
from bot.pipeline.triggers import TriggerKind
from bot.slack.gateway import LeaseLost, NotInstalled, SlackGateway, lease_guard
from storage.intake import TRIGGER
from storage.queue import JobQueue, QueuedJob
from storage.repository import CommitConflict, EagerState

log = logging.getLogger(__name__)
LOCK_POLL_S = 0.05
START_PATIENCE_S = 60.0  # how long a starting worker waits for Redis
READERS = 2  # concurrent XREADGROUP calls per replica; jobs themselves run in their own tasks


class Worker:
    def __init__(
        self,
        queue: JobQueue,
        flows: Flows,
        *,
        concurrency: int,
        lease_s: float,
        max_deliveries: int,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.queue = queue
        self.flows = flows
        self.repo = flows.ctx.repo
        self.concurrency = concurrency
        self.lease_ms = int(lease_s * 1000)
        self.max_deliveries = max_deliveries
        self._stopping = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(concurrency)
        self.processed = 0
        self.home: HomePublisher | None = None

    async def start(self) -> None:
        # Started during a Redis failover (after a crash, say), wait for it rather than exit.
        await self.queue.ensure_group(patience_s=START_PATIENCE_S)
        self._loops = [asyncio.create_task(self._reader()) for _ in range(READERS)]
        self._loops.append(asyncio.create_task(self._reclaimer()))
        self.home = HomePublisher.for_context(self.flows.ctx)  # the App Home (bot/jobs/home.py)
        if self.home is not None:
            self._loops.append(asyncio.create_task(self.home.run(self._stopping)))

    def alive(self) -> bool:
        """Started, not stopping, and none of its readers or its reclaimer has died."""
        return (
            bool(self._loops)
            and not self._stopping.is_set()
            and not any(task.done() for task in self._loops)
        )

    async def stop(self, grace_s: float = 20.0) -> None:
        """Stop taking work; running jobs get ``grace_s`` to finish; the rest is reclaimed later."""
        self._stopping.set()
        if not self._loops:
            return  # never started (a listener-only runtime)
        _done, stuck = await asyncio.wait(self._loops, timeout=1.0)  # a read blocks ≤ 0.5 s
        for task in stuck:
            task.cancel()  # waiting for a slot: holds no job
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._running:
            _done, pending = await asyncio.wait(set(self._running), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _spawn(self, queued: QueuedJob) -> None:
        """Run a job in its own task; the slot taken for it is given back when it ends."""
        task = asyncio.create_task(self.process(queued))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        task.add_done_callback(lambda _t: self._slots.release())

    async def _reader(self) -> None:
        """Take a slot, then the next new job: never more jobs in hand than slots."""
        while not self._stopping.is_set():
            await self._slots.acquire()
            if self._stopping.is_set():
                self._slots.release()
                return
            try:
                queued = await self.queue.read(block_ms=500)
            except Exception:
                self._slots.release()
                log.exception("reading jobs failed; retrying")
                await asyncio.sleep(1.0)
                continue
            if queued is None:
                self._slots.release()
            else:
                self._spawn(queued)

    async def _reclaimer(self) -> None:
        """Take over jobs whose worker stopped renewing them, as slots allow."""
        interval = max(0.2, self.lease_ms / 3000)
        while not self._stopping.is_set():
            try:
                # Claim only as many as we have free slots for: the reclaimer never waits.
                free = self.concurrency - len(self._running) - READERS
                for queued in (
                    await self.queue.reclaim(self.lease_ms, count=free) if free > 0 else []
                ):
                    log.info("reclaimed job %s (delivery %d)", queued.job_id, queued.deliveries)
                    self.metrics.reclaimed.inc()
                    await self._slots.acquire()
                    self._spawn(queued)
            except Exception:
                log.exception("reclaiming jobs failed; retrying")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=interval)

    async def process(self, queued: QueuedJob) -> None:
        token = correlation_id.set(f"{queued.job_id}#{queued.deliveries}-{uuid.uuid4().hex[:6]}")
        # Every log line of the job names its workspace and session (LOG_FORMAT=json).
        team_token = team_id.set(_str_or_none(queued.payload.get("team_id")))
        session_token = session_id.set(_str_or_none(queued.payload.get("session_id")))
        start = time.perf_counter()
        outcome = "interrupted"  # cancelled at shutdown: the job stays pending
        try:
            outcome = await self._process(queued)
        finally:
            self.metrics.job(outcome, time.perf_counter() - start)
            session_id.reset(session_token)
            team_id.reset(team_token)
            correlation_id.reset(token)

    async def _process(self, queued: QueuedJob) -> str:
        """Run one delivery of a job; returns its outcome (the ``storyloop_jobs`` label)."""
        try:
            trigger = TRIGGER.validate_python(queued.payload)
        except ValidationError:
            log.error("dropping malformed job %s", queued.job_id)
            await self.queue.ack(queued.entry_id)
            return "malformed"
        team, sid = trigger.team_id, trigger.session_id
        outcome = "retry"
        lease = _Lease(asyncio.current_task())
        heartbeat = asyncio.create_task(self._heartbeat(queued.entry_id, team, sid, lease))
        fence = 0
        try:
            if trigger.kind is TriggerKind.DELETE:
                # A delete doesn't wait for a render holding the session: it fences it out.
                fence = await self.repo.seize(team, sid, self.lease_ms)
            else:
                # A job the eager lane runs first: its lease is the lane's until the lane
                # hands it over (a post or two away), so the first claim would be refused.
                wait = queued.laned and queued.deliveries == 1
                fence = await self._acquire(team, sid, queued.job_id, heartbeat, wait=wait)
            if fence == 0:
                return "lost"  # another worker took the job over while we waited
            lease.fence = fence
            lease_guard.set(lambda: self.repo.holds(team, sid, fence))
            if isinstance(self.flows.ctx.gateway, SlackGateway):
                try:
                    await self.flows.ctx.gateway.for_workspace(team)  # OAuth: its token
                except NotInstalled:
                    # Uninstalled or its token revoked since the job was recorded: there is no
                    # token to do it or to tell anyone with, and retrying can't bring one back.
                    log.warning("dropping job %s: the workspace is not installed", queued.job_id)
                    await self.queue.ack(queued.entry_id)
                    return "not_installed"
            self.flows.ctx.crash.reach("after_claim")
            marker = await self.repo.done(queued.job_id)
            eager = await self.repo.eager_state(team, queued.job_id) if marker is None else None
            job = Job(
                queued.job_id,
                trigger,
                queued.entry_id,
                # An eager attempt that never handed over counts as a delivery: it may have
                # posted before it died, so this one looks in Slack first (Job.recover).
                queued.deliveries + (1 if eager is EagerState.RUNNING else 0),
                fence,
                shown=eager is EagerState.SHOWN,
            )
            outcome = "done"
            if marker is not None:
                outcome = "replayed"
                await self._replay(job, marker)
            elif queued.deliveries > self.max_deliveries:
                outcome = "gave_up"
                log.error("giving up job %s after %d deliveries", job.id, queued.deliveries)
                try:
                    await self.flows.give_up(job)
                except (CommitConflict, LeaseLost):
                    raise
                except Exception:
                    # Even telling the user failed: still end the job, never loop forever.
                    log.exception("could not report giving up job %s", job.id)
            else:
                await self.flows.run(job)
            # Acknowledged and the lease given back in one round trip, with the delivery
            # records the job kept for it: nothing to release below.
            lost = await self.queue.finish(
                queued.entry_id,
                team,
                sid,
                fence,
                job_id=job.id,
                ledger_ttl_s=self.flows.ctx.settings.session_ttl_days * 86400,
            )
            fence = 0
            await self._take_back(team, sid, lost)
            self.processed += 1
        except asyncio.CancelledError:
            if not lease.lost:
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            log.warning("job %s lost its session (taken over while it ran)", queued.job_id)
            outcome = "lost"
        except LeaseLost:
            log.warning("job %s lost its session (taken over during a wait)", queued.job_id)
            outcome = "lost"
        except CommitConflict as exc:
            outcome = "lost"
            log.warning(
                "job %s lost its session (%s); leaving it to its new owner",
                queued.job_id,
                exc.reason,
            )
        except Exception:
            log.exception("job %s failed; it will be retried", queued.job_id)
            outcome = "retry"
        finally:
            # The flag, not only the cancel, ends the heartbeat: a cancel that lands inside a
            # Redis call can be turned into a timeout and swallowed, leaving a heartbeat that
            # renews the lease of a finished job forever.
            lease.finished = True
            heartbeat.cancel()
            await asyncio.wait({heartbeat}, timeout=2.0)
            with contextlib.suppress(Exception):
                # Records the job still kept (it stopped before its finish wrote them), and
                # from now on none kept back: a post still in flight records at once.
                await self._take_back(team, sid, await self.repo.close_job(queued.job_id))
            self.repo.end_job()
            if fence:
                with contextlib.suppress(Exception):
                    await self.repo.release(team, sid, fence)
        return outcome

    async def _acquire(
        self, team: str, sid: str, job_id: str, heartbeat: asyncio.Task[None], *, wait: bool
    ) -> int:
        if wait:
            await asyncio.sleep(LOCK_POLL_S)
        while True:
            fence = await self.repo.acquire(team, sid, self.lease_ms, job_id=job_id)
            if fence:
                return fence
            if heartbeat.done() or self._stopping.is_set():
                return 0
            await asyncio.sleep(LOCK_POLL_S)

    async def _take_back(self, team: str, sid: str, lost: list[tuple[str, str]]) -> None:
        """A slot another attempt had already recorded: the message this job posted for it is
        a second one, deleted (as ``SlackGateway.post_once`` does when its record loses)."""
        s = await self.repo.get(team, sid) if lost else None
        if s is None:
            return
        for slot, ts in lost:
            log.warning("slot %s was posted by another attempt; deleting ours", slot)
            with contextlib.suppress(Exception):
                await self.flows.ctx.gateway.delete(s, ts)

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
        while not lease.finished:
            await asyncio.sleep(interval)
            if lease.finished:
                return
            try:
                if not await self.queue.touch(entry_id):
                    log.warning("job entry %s was taken over by another worker", entry_id)
                    lease.lose()
                    return
                if lease.fence and not await self.repo.renew(team, sid, lease.fence, self.lease_ms):
                    log.warning("lease on session %s was lost; stopping the job", sid)
                    lease.lose()
                    return
            except Exception:
                log.warning("heartbeat failed; will retry", exc_info=True)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class _Lease:
    """The session lease of one running job: its fence token (0 while waiting for it)."""

    def __init__(self, owner: asyncio.Task[Any] | None) -> None:
        self.fence = 0
        self.lost = False
        self.finished = False
        self._owner = owner

    def lose(self) -> None:
        """Another worker holds the session now: stop this job before it edits anything."""
        self.lost = True
        if self._owner is not None:
            self._owner.cancel()
