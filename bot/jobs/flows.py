"""The review loop: what each trigger does to a session, run by a worker under the session lease.

Each flow first checks state (so a replay after a crash does only what is left), commits with
compare-and-set, then delivers. Refusals are polite ephemerals; every trigger ends in exactly one
visible outcome.
"""

from __future__ import annotations

import json
import logging

from bot.jobs.context import FlowContext
from bot.jobs.delivery import deliver
from bot.jobs.generation import fail, generate
from bot.jobs.model import Deferred, Job
from bot.llm.client import LLMError
from bot.pipeline import prompts
from bot.pipeline import review as say
from bot.pipeline.drafts import FeedbackAnswer
from bot.pipeline.intent import wants_regenerate
from bot.pipeline.models import Session, Stage, Status, Turn, TurnRole, Usage
from bot.pipeline.stages import next_stage
from bot.pipeline.triggers import Approve, Feedback, Regenerate, Retry, StartSession
from bot.slack import blocks
from bot.slack.gateway import NotPostable, SlackDeliveryError
from storage.repository import Writes

log = logging.getLogger(__name__)
GENERATING = (Status.STARTING, Status.GENERATING, Status.REGENERATING)


class Flows:
    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx

    async def run(self, job: Job) -> None:
        t = job.trigger
        if isinstance(t, StartSession):
            await self.start(job, t)
        elif isinstance(t, Feedback):
            await self.feedback(job, t)
        else:
            await self.click(job, t)

    # --- helpers ----------------------------------------------------------------------------
    async def refuse(self, job: Job, t: Approve | Regenerate | Retry, text: str) -> None:
        """One polite ephemeral to the clicker, then the job is done."""
        await self.ctx.gateway.ephemeral(
            channel_id=t.channel_id,
            user_id=t.user_id,
            msg=blocks.ephemeral(text, trusted=True),
            response_url=t.response_url,
        )
        await self.ctx.repo.mark_done(job.id, {"deliver": []})

    async def resume_if_mine(self, job: Job, s: Session) -> bool:
        """A re-delivered job whose generation was interrupted picks it up where it was."""
        if s.active_job == job.id and s.status in GENERATING and s.thread_ts:
            await generate(self.ctx, job, s, regenerating=s.status is Status.REGENERATING)
            return True
        return False

    # --- /story -----------------------------------------------------------------------------
    async def start(self, job: Job, t: StartSession) -> None:
        ctx = self.ctx
        s = await job.load(ctx.repo)
        fresh_session = s is None
        if s is None:
            now = ctx.clock()
            fresh = Session(
                id=t.session_id,
                team_id=t.team_id,
                channel_id=t.channel_id,
                owner_id=t.user_id,
                prompt=t.prompt,
                tone=t.tone,
                duration_s=t.duration_s,
                active_job=job.id,
                created_at=now,
                updated_at=now,
            )
            s = await ctx.repo.commit(None, fresh, fence=job.fence)
        if s.status is Status.UNPOSTABLE:
            return
        if s.thread_ts is None:
            try:
                ts = await ctx.gateway.post_once(
                    s,
                    "card",
                    blocks.session_card(s),
                    thread_ts=None,
                    recover=job.recover,
                    fresh=fresh_session,
                )
            except NotPostable as exc:
                await ctx.commit(job, s, status=Status.UNPOSTABLE, active_job=None)
                await ctx.gateway.ephemeral(
                    channel_id=t.channel_id,
                    user_id=t.user_id,
                    msg=blocks.ephemeral(say.cant_post(exc.error), trusted=True),
                    response_url=t.response_url,
                )
                return
            s = await ctx.commit(
                job,
                s,
                thread_ts=ts,
                status=Status.GENERATING,
                writes=Writes().index_thread(s, ts),
            )
            await ctx.gateway.update(s, ts, blocks.session_card(s))
        if not await self.resume_if_mine(job, s):
            await deliver(ctx, job, s, ["story", "card"])

    # --- thread replies ---------------------------------------------------------------------
    async def feedback(self, job: Job, t: Feedback) -> None:
        ctx = self.ctx
        s = await ctx.repo.get(t.team_id, t.session_id)
        if s is None or s.thread_ts is None:
            return
        if await self.resume_if_mine(job, s):
            return
        history = await ctx.repo.history(s)
        upto = len(history)
        pending = [x for x in history[s.answered_until : upto] if x.role is TurnRole.USER]
        if not pending:
            return  # answered together with an earlier reply (coalesced)
        slot = f"reply:{pending[-1].ts}"
        if s.stage is not Stage.STORY:
            await ctx.gateway.post_once(
                s,
                slot,
                blocks.ephemeral(say.after_approval(s), trusted=True),
                thread_ts=s.thread_ts,
                recover=job.recover,
            )
            await ctx.commit(job, s, answered_until=upto)
            return
        asked = [wants_regenerate(x.text) for x in pending]
        if all(asked) and self._regenerable(s):
            await self._regenerate(job, s)
            return
        answer, usage = await self._answer(job, s, history, pending)
        if answer is None:
            await ctx.gateway.post_once(
                s,
                slot,
                blocks.ephemeral(say.no_answer(), trusted=True),
                thread_ts=s.thread_ts,
                recover=job.recover,
            )
            await ctx.commit(job, s, answered_until=upto)
            return
        authors = list(dict.fromkeys(x.user_id for x in pending if x.user_id))
        await ctx.gateway.post_once(
            s,
            slot,
            blocks.feedback_reply(answer.reply, authors),
            thread_ts=s.thread_ts,
            recover=job.recover,
        )
        turn = Turn(
            role=TurnRole.ASSISTANT,
            ts=pending[-1].ts,
            text=answer.reply,
            planned_changes=tuple(answer.planned_changes),
        )
        s = await ctx.commit(
            job,
            s,
            answered_until=upto,
            usage=s.usage + usage,
            requested_changes=prompts.fold_changes(s.requested_changes, answer.planned_changes),
            writes=Writes().add_turn(s, turn).forget_llm_result(job.id, slot),
        )
        if (any(asked) or answer.wants_regenerate) and self._regenerable(s):
            await self._regenerate(job, s)

    async def _answer(
        self, job: Job, s: Session, history: list[Turn], pending: list[Turn]
    ) -> tuple[FeedbackAnswer | None, Usage]:
        ctx = self.ctx
        step = f"reply:{pending[-1].ts}"
        cached = await ctx.repo.cached_llm(job.id, step)
        if cached:
            data = json.loads(cached)
            return FeedbackAnswer.model_validate(data["answer"]), Usage.model_validate(
                data["usage"]
            )
        if job.eager:
            raise Deferred  # LLM calls are a worker's
        current = await ctx.repo.version(s, s.version) if s.version else None
        messages = prompts.feedback_messages(
            s, current.story if current else None, history[: s.answered_until], pending
        )
        try:
            answer, usage = await ctx.llm.answer_feedback(messages)
        except LLMError as exc:
            log.warning("feedback answer failed for %s: %s", s.id, exc)
            return None, Usage()
        await ctx.repo.cache_llm(
            job.id, step, json.dumps({"answer": answer.model_dump(), "usage": usage.model_dump()})
        )
        ctx.crash.reach("after_llm")
        return answer, usage

    # --- buttons ----------------------------------------------------------------------------
    @staticmethod
    def _regenerable(s: Session) -> bool:
        return (
            s.stage is Stage.STORY
            and s.status in (Status.AWAITING_REVIEW, Status.FAILED)
            and s.version > 0
        )

    async def _regenerate(self, job: Job, s: Session) -> None:
        s = await self.ctx.commit(job, s, status=Status.REGENERATING, active_job=job.id)
        await generate(self.ctx, job, s, regenerating=True)

    async def click(self, job: Job, t: Approve | Regenerate | Retry) -> None:
        s = await job.load(self.ctx.repo)
        if s is None or s.channel_id != t.channel_id:
            await self.refuse(job, t, say.unknown_session())
            return
        if await self.resume_if_mine(job, s):
            return
        if isinstance(t, Approve):
            await self.approve(job, t, s)
        elif isinstance(t, Regenerate):
            refusal = say.cannot_regenerate(s, t.version)
            if refusal:
                await self.refuse(job, t, refusal)
            else:
                await self._regenerate(job, s)
        else:
            await self.retry(job, t, s)

    async def approve(self, job: Job, t: Approve, s: Session) -> None:
        ctx = self.ctx
        refusal = say.cannot_approve(s, t.user_id, t.version, policy=ctx.settings.approval)
        if refusal:
            await self.refuse(job, t, refusal)
            return
        # The notice first: it is the quick, visible answer to the click (the eager lane posts
        # it); re-rendering the story without its buttons and the card follow.
        steps = ["approved", "story", "card"]
        upcoming = next_stage(s.stage)
        next_job = f"stage:{s.team_id}:{s.id}:{upcoming}"
        s = await ctx.commit(
            job,
            s,
            stage=upcoming,
            status=Status.QUEUED,
            approved_by=t.user_id,
            approved_version=s.version,
            active_job=None,
            writes=Writes()
            .enqueue_stage(
                upcoming,
                next_job,
                {"team_id": s.team_id, "session_id": s.id, "version": s.version},
            )
            .mark_done(job.id, {"team": s.team_id, "session": s.id, "deliver": steps}),
        )
        ctx.crash.reach("after_commit")
        await deliver(ctx, job, s, steps)

    async def retry(self, job: Job, t: Retry, s: Session) -> None:
        if s.status is not Status.FAILED or t.version != s.version or s.stage is not Stage.STORY:
            await self.refuse(job, t, say.nothing_to_retry(s))
            return
        if s.failed_op == "regenerate":
            await self._regenerate(job, s)
            return
        s = await self.ctx.commit(
            job, s, status=Status.GENERATING, active_job=job.id, failure=None, failed_op=None
        )
        await generate(self.ctx, job, s, regenerating=False)

    # --- the worker's last resort -------------------------------------------------------------
    async def give_up(self, job: Job) -> None:
        """A job failed too many times: end it visibly instead of retrying forever."""
        t = job.trigger
        s = await self.ctx.repo.get(t.team_id, t.session_id)
        reason = say.gave_up()
        if s is not None and s.active_job == job.id and s.status in GENERATING and s.thread_ts:
            op = "regenerate" if s.status is Status.REGENERATING else "generate"
            await fail(self.ctx, job, s, reason, op=op)
            return
        if isinstance(t, Feedback) and s is not None and s.thread_ts:
            try:
                await self.ctx.gateway.post_once(
                    s,
                    f"reply:{t.ts}",
                    blocks.failure_final(reason),
                    thread_ts=s.thread_ts,
                    recover=True,
                )
            except (SlackDeliveryError, NotPostable):
                # Posting in the thread is what keeps failing: tell the author privately.
                await self.ctx.gateway.ephemeral(
                    channel_id=t.channel_id,
                    user_id=t.user_id,
                    msg=blocks.ephemeral(reason),
                    thread_ts=s.thread_ts,
                )
        elif isinstance(t, Approve | Regenerate | Retry):
            await self.refuse(job, t, reason)
            return
        elif isinstance(t, StartSession):
            if s is not None and s.status is Status.STARTING:
                # Nothing was ever shown in the channel: nothing there to resume or retry.
                await self.ctx.commit(job, s, status=Status.UNPOSTABLE, active_job=None)
            await self.ctx.gateway.ephemeral(
                channel_id=t.channel_id,
                user_id=t.user_id,
                msg=blocks.ephemeral(reason),
                response_url=t.response_url,
            )
        await self.ctx.repo.mark_done(job.id, {"deliver": []})
