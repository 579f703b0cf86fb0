"""The review loop: what each trigger does to a session, run by a worker under the session lease.

Each flow first checks state (so a replay after a crash does only what is left), commits with
compare-and-set, then delivers. Refusals are polite ephemerals; every trigger ends in exactly one
visible outcome.
"""

from __future__ import annotations

import logging

from bot.jobs import stages
from bot.jobs.context import FlowContext
from bot.jobs.deletion import delete_session
from bot.jobs.delivery import deliver
from bot.jobs.feedback import answer_replies
from bot.jobs.generation import fail
from bot.jobs.model import Job
from bot.jobs.restore import restore
from bot.jobs.stages.base import fail_stage
from bot.jobs.stages.video import VideoStage
from bot.pipeline import deletion, slots
from bot.pipeline import review as say
from bot.pipeline.approvals import current_votes, may_approve, needs_group_lookup
from bot.pipeline.models import Approval, Session, Stage, Status
from bot.pipeline.transitions import (
    Act,
    Advance,
    Event,
    Generate,
    Op,
    Refuse,
    Stop,
    Vote,
    decide,
)
from bot.pipeline.triggers import (
    Approve,
    Cancel,
    Click,
    Confirm,
    DeleteSession,
    Feedback,
    Redo,
    Regenerate,
    Restore,
    Retry,
    StartSession,
    TriggerKind,
)
from bot.slack import blocks
from bot.slack.gateway import NotPostable, SlackDeliveryError
from bot.slack.streams import AnswerLookupFailed
from storage.repository import Writes

log = logging.getLogger(__name__)
GENERATING = (Status.STARTING, Status.GENERATING, Status.REGENERATING)
_ACTS = {
    TriggerKind.APPROVE: Act.APPROVE,
    TriggerKind.REGENERATE: Act.REGENERATE,
    TriggerKind.RETRY: Act.RETRY,
    TriggerKind.REDO: Act.REDO,
    TriggerKind.CONFIRM: Act.CONFIRM,
    TriggerKind.CANCEL: Act.CANCEL,
}


def _approval_steps(approval: Approval) -> list[str]:
    """Showing an approval: its notice, the approved version without buttons, the card."""
    stage = approval.stage
    review = "story" if stage is Stage.STORY else f"review:{stage}:{approval.version}"
    return [f"approved:{stage}", review, "card"]


class Flows:
    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        ctx.stages = stages.build(ctx)

    async def run(self, job: Job) -> None:
        t = job.trigger
        if isinstance(t, DeleteSession):
            await delete_session(self.ctx, job, t)  # bot/jobs/deletion.py
            return
        gone = await self.ctx.repo.tombstone(t.team_id, t.session_id)
        if gone is not None:
            # Deleted (`/story delete`): a click hears so; a queued start or reply of the
            # session ends here, never bringing it back.
            # An answer it had the LLM write before the delete caught it goes too.
            await self.ctx.repo.forget_llm_results(job.id)
            if isinstance(t, Approve | Regenerate | Retry | Redo | Confirm | Cancel | Restore):
                await self.refuse(job, t, deletion.deleted_session(gone.get("by")))
            else:
                await self.ctx.repo.mark_done(job.id, {"deliver": []})
            return
        if isinstance(t, StartSession):
            await self.start(job, t)
        elif isinstance(t, Feedback):
            await self.feedback(job, t)
        elif isinstance(t, Restore):
            await restore(self, job, t)  # the Versions modal's Restore (bot/jobs/restore.py)
        else:
            await self.click(job, t)

    # --- helpers ----------------------------------------------------------------------------
    async def refuse(self, job: Job, t: Click, text: str) -> None:
        """One polite ephemeral to the clicker; the job is done.

        Marked done *before* it is sent: a ``response_url`` post can't be looked up afterwards,
        so when Redis failed after it, the retry refused a second time — in other words if the
        state had moved (fault loop, RELIABILITY row 3). Marked first, a Redis failure sends
        nothing and the retry refuses once; only a crash between the two loses the note, and
        the click changed nothing, so clicking again shows it."""
        await self.ctx.repo.mark_done(job.id, {"deliver": []})
        await self.ctx.gateway.ephemeral(
            channel_id=t.channel_id,
            user_id=t.user_id,
            msg=blocks.ephemeral(text, trusted=True),
            response_url=t.response_url,
        )

    async def resume_if_mine(self, job: Job, s: Session) -> bool:
        """A re-delivered job whose generation was interrupted picks it up where it was."""
        if s.active_job == job.id and s.status in GENERATING and s.thread_ts:
            t = job.trigger
            if isinstance(t, Approve) and s.approvals:
                # Approved, then interrupted: the approval's notice before the next stage.
                await deliver(self.ctx, job, s, _approval_steps(s.approvals[-1]))
            op = Op.REGENERATE if s.status is Status.REGENERATING else Op.GENERATE
            if s.active_item is not None:
                op = Op.REDO
            if s.active_op in set(Op):
                op = Op(s.active_op)
            await self.ctx.stages[s.stage].generate(job, s, op, s.active_item)
            return True
        return False

    async def carry_out(self, job: Job, s: Session, d: Generate) -> None:
        """Start a generation the state table decided on, under this job."""
        status = Status.REGENERATING if d.op in (Op.REGENERATE, Op.REDO) else Status.GENERATING
        s = await self.ctx.commit(
            job,
            s,
            status=status,
            active_job=job.id,
            active_item=d.item,
            active_op=d.op.value,
            failure=None,
            failed_op=None,
            failed_item=None,
        )
        await self.ctx.stages[s.stage].generate(job, s, d.op, d.item)

    # --- /story -----------------------------------------------------------------------------
    async def start(self, job: Job, t: StartSession) -> None:
        ctx = self.ctx
        s = await job.load(ctx.repo)
        fresh_session = s is None
        if s is None:
            fresh = t.new_session(default_policy=ctx.settings.approval_policy, now=ctx.clock())
            s = await ctx.repo.commit(None, fresh, fence=job.fence)
        elif job.created:
            fresh_session = True  # the intake script created it with the lane's lease
        if s.status is Status.UNPOSTABLE:
            return
        if s.thread_ts is None:
            # Posted as it will read once the commit below says GENERATING: the card's
            # "Starting…" would be replaced a few ms later by one more chat.update (and echo).
            card = blocks.session_card(s.model_copy(update={"status": Status.GENERATING}))
            try:
                ts = await ctx.gateway.post_once(
                    s,
                    "card",
                    card,
                    thread_ts=t.thread_ts,  # a mention: the card is the thread's first reply
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
            root = t.thread_ts or ts
            s = await ctx.commit(
                job,
                s,
                thread_ts=root,
                card_ts=ts if t.thread_ts else None,
                status=Status.GENERATING,
                writes=Writes().index_thread(s, root),
            )
            # A replay may have found a card an earlier attempt posted: it is brought up to date.
            if (now_card := blocks.session_card(s)) != card or not fresh_session:
                await ctx.gateway.update(s, ts, now_card)
        if not await self.resume_if_mine(job, s):
            await deliver(ctx, job, s, ["story", "card"])

    # --- thread replies ---------------------------------------------------------------------
    async def feedback(self, job: Job, t: Feedback) -> None:
        await answer_replies(self, job, t)

    # --- buttons ----------------------------------------------------------------------------
    async def click(self, job: Job, t: Click) -> None:
        ctx = self.ctx
        s = await job.load(ctx.repo)
        if s is None or s.channel_id != t.channel_id:
            await self.refuse(job, t, say.unknown_session())
            return
        if await self.resume_if_mine(job, s):
            return
        if isinstance(t, Cancel) and await ctx.repo.done(job.id) is not None:
            return  # the render it stopped already showed the cancellation for it
        work = ctx.stages.get(s.stage)
        count, missing = await work.items(s) if work is not None else (0, ())
        event = Event(
            _ACTS[t.kind],
            t.user_id,
            stage=t.stage,
            version=t.version,
            item=t.item if isinstance(t, Redo) else None,
        )
        members: frozenset[str] = frozenset()
        if event.act in (Act.APPROVE, Act.CONFIRM) and needs_group_lookup(s, t.user_id):
            assert s.policy.group is not None
            members = await ctx.gateway.group_members(s.policy.group)
        d = decide(
            s,
            event,
            may_approve=may_approve(s, t.user_id, members=members),
            items=count,
            missing=missing,
        )
        if isinstance(d, Refuse):
            await self.refuse(job, t, d.text)
        elif isinstance(d, Advance):
            await self.advance(job, t, s, d)
        elif isinstance(d, Vote):
            await self.vote(job, t, s, d)
        elif isinstance(d, Generate):
            await self.carry_out(job, s, d)
        elif isinstance(d, Stop):
            video = ctx.stages[Stage.VIDEO]
            assert isinstance(video, VideoStage)
            await video.stop(job, s, by=t.user_id, cancel_job=job.id)

    async def vote(self, job: Job, t: Click, s: Session, d: Vote) -> None:
        """One approval (or spend confirmation) towards a quorum: kept on the session for the
        version it was given for, shown in the thread and on the card."""
        ctx = self.ctx
        vote = Approval(
            stage=d.stage, version=d.version, user_id=t.user_id, at=ctx.clock(), act=d.act
        )
        kept = current_votes(s, d.stage, d.version, act=d.act)
        steps = [f"vote:{d.stage}:{d.act}:{d.version}:{t.user_id}", "card"]
        writes = Writes().mark_done(job.id, {"team": s.team_id, "session": s.id, "deliver": steps})
        s = await ctx.commit(job, s, votes=(*kept, vote), writes=writes)
        await deliver(ctx, job, s, steps)

    async def advance(self, job: Job, t: Click, s: Session, d: Advance) -> None:
        """Approve a stage: record who, when and which version; move on to the next stage."""
        ctx = self.ctx
        history_len = await ctx.repo.history_length(s)
        co = tuple(v.user_id for v in current_votes(s, d.stage, d.version, act="approve"))
        approval = Approval(
            stage=d.stage, version=d.version, user_id=t.user_id, at=ctx.clock(), co_approvers=co
        )
        generating = d.to_status is Status.GENERATING
        # The notice first: it is the quick, visible answer to the click (the eager lane posts
        # it); the approved version losing its buttons and the card follow.
        steps = _approval_steps(approval)
        if not generating:
            steps.append("complete" if d.to is Stage.COMPLETE else "collected")
        writes = Writes()
        if not generating:
            writes.mark_done(job.id, {"team": s.team_id, "session": s.id, "deliver": steps})
        s = await ctx.commit(
            job,
            s,
            stage=d.to,
            status=d.to_status,
            version=0,
            approvals=(*s.approvals, approval),
            votes=(),
            requested_changes=(),
            incorporated_until=history_len,
            stage_started_turn=history_len,
            active_job=job.id if generating else None,
            active_item=None,
            # The next stage's first set: a resumed job (the worker after the eager lane, or a
            # replay) must not take the story's last regeneration for its own.
            active_op=Op.GENERATE.value if generating else None,
            failure=None,
            failed_op=None,
            failed_item=None,
            writes=writes,
        )
        ctx.crash.reach("after_commit")
        await deliver(ctx, job, s, steps)
        if generating:
            await ctx.stages[s.stage].generate(job, s, Op.GENERATE, None)

    # --- the worker's last resort -------------------------------------------------------------
    async def give_up(self, job: Job) -> None:
        """A job failed too many times: end it visibly instead of retrying forever."""
        t = job.trigger
        s = await self.ctx.repo.get(t.team_id, t.session_id)
        reason = say.gave_up()
        if s is not None and s.active_job == job.id and s.status in GENERATING and s.thread_ts:
            op = "regenerate" if s.status is Status.REGENERATING else "generate"
            if s.stage is Stage.STORY:
                await fail(self.ctx, job, s, reason, op=op)
            else:
                await fail_stage(self.ctx, job, s, reason, op=Op(op), item=s.active_item)
            return
        if isinstance(t, Feedback) and s is not None and s.thread_ts:
            try:
                # The answer's slot may hold a half-streamed message: finish that one with
                # the failure (stopping its stream), or post the failure if nothing is there.
                answer = await self.ctx.gateway.open_answer(
                    s,
                    slots.reply(t.ts),
                    recipient_id=t.user_id,
                    after_ts=t.ts,
                    draft=lambda _text: blocks.failure_final(reason),
                    stream=False,
                    recover=True,
                    earlier=[],
                    reach=self.ctx.crash.reach,
                )
                await answer.finish(blocks.failure_final(reason))
            except (SlackDeliveryError, NotPostable, AnswerLookupFailed):
                # Posting in the thread is what keeps failing: tell the author privately.
                await self.ctx.gateway.ephemeral(
                    channel_id=t.channel_id,
                    user_id=t.user_id,
                    msg=blocks.ephemeral(reason),
                    thread_ts=s.thread_ts,
                )
        elif isinstance(t, Approve | Regenerate | Retry | Redo | Confirm | Cancel | Restore):
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
