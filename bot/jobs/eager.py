"""The eager lane: the listener shows a trigger's first change itself, right after the ack.

A recorded trigger waits on the jobs stream for a worker: a durable hop, a free job slot and
the session lease stand between the click and anything the user sees. For the part of a job
that is cheap — the session card and its placeholder, "Regenerating…", an approval and its
notice, a polite refusal — that wait is most of the time to the first visible change. So when
the intake script finds the session free it takes the lease in the same round trip, and the
listener runs the job at once, in its own loop, up to the first LLM call or past the first
delivery step (``Deferred``: re-rendering a whole story is CPU the listener needs for acks);
then it hands the lease back and the worker carries on from the committed state. Jobs are
re-entrant (that is how a crash is recovered), so the worker does only what is left; a job the
lane finished (a refusal) is done when the worker sees it.

Nothing here is needed for correctness: if the listener dies mid-way the lease runs out
(``EAGER_LEASE_S``) and the worker does the job from the stream, as it does when the session was
busy at intake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from bot.jobs.flows import Flows
from bot.jobs.model import Deferred, Job
from bot.logs import correlation_id, session_id, team_id
from bot.pipeline.models import Session
from bot.pipeline.triggers import Trigger
from bot.slack.gateway import LeaseLost, SlackGateway, lease_guard
from storage import jobview
from storage.repository import CommitConflict, EagerState

log = logging.getLogger(__name__)
EAGER_LEASE_S = 10.0  # the cheap part of a job takes milliseconds; a stuck one frees the session


class EagerLane:
    def __init__(self, flows: Flows, *, lease_s: float) -> None:
        self.flows = flows
        self.repo = flows.ctx.repo
        self.lease_ms = int(min(lease_s, EAGER_LEASE_S) * 1000)
        self._running: set[asyncio.Task[None]] = set()
        self.deferred = 0

    def start(
        self, trigger: Trigger, fence: int, session: Session | None, *, created: bool = False
    ) -> None:
        """Run ``trigger``'s job now, under the lease (``fence``) the intake script took, from
        the ``session`` the script read with it (``created``: the script wrote it: a new one)."""
        task = asyncio.create_task(self._run(trigger, fence, session, created))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Let running lanes finish; a cancelled one leaves its job to the workers."""
        if not self._running:
            return
        _done, pending = await asyncio.wait(set(self._running), timeout=grace_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _run(
        self, trigger: Trigger, fence: int, session: Session | None, created: bool
    ) -> None:
        token = correlation_id.set(f"{trigger.job_id}#eager")
        team, sid = trigger.team_id, trigger.session_id
        team_id.set(team)  # this task's own context: its log lines name workspace and session
        session_id.set(sid)
        lease_guard.set(lambda: self.repo.holds(team, sid, fence))
        job = Job(
            trigger.job_id, trigger, "", 0, fence, eager=True, session=session, created=created
        )
        state = EagerState.RUNNING  # failed part-way: the worker looks for what it posted
        try:
            if isinstance(self.flows.ctx.gateway, SlackGateway):
                await self.flows.ctx.gateway.for_workspace(team)  # OAuth: the workspace's token
            await self.flows.run(job)  # done here: a refusal, or nothing postable
            state = EagerState.HANDED
        except Deferred:
            state = EagerState.SHOWN
            self.deferred += 1
        except (CommitConflict, LeaseLost) as exc:
            log.info("eager lane stopped (%s); the workers take the job", exc)
        except Exception:
            log.exception("eager lane failed; the workers take the job")
        finally:
            with contextlib.suppress(Exception):
                lost = await self.repo.handoff(
                    team, sid, fence, job.id, state, reserve_ms=self.lease_ms
                )
                await self._take_back(team, sid, lost.lost)
            correlation_id.reset(token)

    async def _take_back(self, team: str, sid: str, lost: list[tuple[str, str]]) -> None:
        """A slot another attempt had already recorded: the message the lane posted for it is
        a second one, deleted (as ``SlackGateway.post_once`` does when its record loses)."""
        view = jobview.current(team, sid)
        if not lost or view is None or view.session is None:
            return
        for slot, ts in lost:
            log.warning("slot %s was posted by another attempt; deleting ours", slot)
            await self.flows.ctx.gateway.delete(view.session, ts)
