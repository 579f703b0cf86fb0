"""Stage 3: the storyboard — a shot list from the approved story and images, shown in the thread
(split across messages when long) and attached as a Markdown file to take elsewhere.
"""

from __future__ import annotations

import json
import logging

from bot.jobs.context import FlowContext
from bot.jobs.delivery import deliver
from bot.jobs.model import Deferred, Job
from bot.jobs.stages.base import (
    approved_images,
    approved_story,
    fail_stage,
    review_state,
    show_message,
)
from bot.llm.client import LLMError
from bot.pipeline import stage_drafts, stage_prompts
from bot.pipeline.artifacts import StoryboardVersion
from bot.pipeline.models import Session, Stage, Status, TurnRole, Usage
from bot.pipeline.transitions import Op
from bot.slack import blocks
from bot.slack.uploads import UploadRefused
from storage.repository import Writes

log = logging.getLogger(__name__)
STAGE = Stage.STORYBOARD


class StoryboardStage:
    stage = STAGE

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx

    async def generate(self, job: Job, s: Session, op: Op, item: int | None) -> None:
        ctx = self.ctx
        n = s.version + 1
        progress = f"{STAGE}:v{n}:progress"
        await show_message(ctx, job, s, progress, blocks.storyboard_progress(s, n))
        if job.eager:
            raise Deferred
        history = await ctx.repo.history(s)
        upto = len(history)
        new_feedback = [t for t in history[s.incorporated_until : upto] if t.role is TurnRole.USER]
        story = await approved_story(self.ctx, s)
        images = await approved_images(self.ctx, s)
        current = await self.version(s, s.version) if s.version else None
        step = f"storyboard:v{n}"
        cached = await ctx.repo.cached_llm(job.id, step)
        if cached:
            data = json.loads(cached)
            draft = stage_drafts.StoryboardDraft.model_validate(data["draft"])
            usage = Usage.model_validate(data["usage"])
        else:
            messages = stage_prompts.storyboard_messages(
                s, story, images, current, new_feedback, s.requested_changes
            )
            try:
                draft, usage = await ctx.llm.structured(messages, stage_drafts.StoryboardDraft)
            except LLMError as exc:
                log.warning("storyboard failed for %s: %s", s.id, exc)
                await self._fail(job, s, n, exc.user_message, op)
                return
            await ctx.repo.cache_llm(
                job.id, step, json.dumps({"draft": draft.model_dump(), "usage": usage.model_dump()})
            )
        ctx.crash.reach("after_storyboard_llm")
        version = StoryboardVersion(
            number=n,
            shots=stage_drafts.to_shots(
                draft,
                story=story,
                image_names=[i.spec.name for i in images.images],
                target_s=s.duration_s,
            ),
            usage=usage,
            feedback_ts=tuple(t.ts for t in new_feedback),
            summary_of_changes=draft.summary_of_changes if current is not None else "",
            created_at=ctx.clock(),
        )
        steps = [f"progress:{STAGE}:{n}", f"review:{STAGE}:{n}", "card"]
        if n > 1:
            steps.insert(2, f"review:{STAGE}:{n - 1}")
        s = await ctx.commit(
            job,
            s,
            version=n,
            status=Status.AWAITING_REVIEW,
            usage=s.usage + usage,
            incorporated_until=upto,
            answered_until=max(s.answered_until, upto)
            if op is not Op.GENERATE
            else s.answered_until,
            active_job=None,
            active_item=None,
            failure=None,
            failed_op=None,
            failed_item=None,
            writes=Writes()
            .add_artifact(s, STAGE, n, version.model_dump_json())
            .forget_llm_result(job.id, step)
            .mark_done(job.id, {"team": s.team_id, "session": s.id, "deliver": steps}),
        )
        ctx.crash.reach("after_commit")
        await deliver(ctx, job, s, steps)

    async def show(self, job: Job, s: Session, number: int) -> Session:
        """The Markdown file first (once), then the shot list's messages, buttons on the last."""
        ctx = self.ctx
        version = await self.version(s, number)
        if version is None or s.thread_ts is None:
            return s
        slot = f"{STAGE}:v{number}"
        if not await ctx.repo.message_ts(s, f"file:{slot}"):
            story = await approved_story(self.ctx, s)
            text = blocks.storyboard_markdown(s, story.title, version)
            try:
                await ctx.uploads.upload_once(
                    s,
                    f"file:{slot}",
                    filename=blocks.storyboard_filename(version),
                    data=text.encode("utf-8"),
                    title=f"Storyboard v{number}",
                    thread_ts=s.thread_ts,
                )
            except UploadRefused as exc:
                log.warning("storyboard file for %s not uploaded: %s", s.id, exc.error)
                await show_message(
                    ctx, job, s, f"fail:file:{slot}", blocks.failure_final(exc.user_message)
                )
        state = review_state(s, STAGE, number)
        approval = s.approval(STAGE)
        pages = blocks.storyboard_messages(
            s, version, state=state, approver=approval.user_id if approval else None
        )
        for k, page in enumerate(pages, start=1):
            await show_message(ctx, job, s, f"{slot}:p{k}", page)
        stale = await ctx.repo.message_ts(s, f"{slot}:p{len(pages) + 1}")
        if stale:
            await ctx.gateway.delete(s, stale)
        return s

    async def describe(self, s: Session) -> str:
        version = await self.version(s, s.version) if s.version else None
        return stage_prompts.render_storyboard(version) if version else "(no storyboard yet)"

    async def step(self, job: Job, s: Session, step: str) -> Session:
        return s  # no steps of its own

    async def items(self, s: Session) -> tuple[int, tuple[int, ...]]:
        version = await self.version(s, s.version) if s.version else None
        return (len(version.shots) if version else 0), ()

    async def version(self, s: Session, number: int) -> StoryboardVersion | None:
        return await self.ctx.repo.artifact(s, STAGE, number, StoryboardVersion)

    async def _fail(self, job: Job, s: Session, n: int, reason: str, op: Op) -> None:
        await fail_stage(self.ctx, job, s, reason, op=op, item=None)
