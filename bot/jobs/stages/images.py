"""Stage 2: reference images — the LLM plans the set, the image API makes each, Slack shows them.

Each image is a paid item with its state in Redis, written *before* each step: ``submitted``
before the call (so a crash mid-call never calls again by itself: the image is reported as
interrupted and remaking it is the user's choice), ``fetched`` once the bytes are in the spool
and the cost is counted, ``uploaded`` once the file is in the thread. A replayed job continues
from there. The version — metadata only, never bytes — is committed when every item has an
outcome; the review message follows the files it refers to.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from bot.jobs.context import FlowContext
from bot.jobs.delivery import deliver
from bot.jobs.model import Deferred, Job
from bot.jobs.stages.base import (
    approved_story,
    fail_stage,
    review_state,
    show_message,
    write_spool,
)
from bot.llm.client import LLMError
from bot.media.images import ImageError
from bot.pipeline import pricing, stage_drafts, stage_prompts
from bot.pipeline import review as say
from bot.pipeline.artifacts import (
    ImageArtifact,
    ImageOutcome,
    ImageSetVersion,
    ImageSpec,
    ItemState,
    PaidItem,
)
from bot.pipeline.models import (
    Session,
    Stage,
    Status,
    Story,
    Turn,
    TurnRole,
    Usage,
)
from bot.pipeline.transitions import Op
from bot.slack import blocks
from bot.slack.uploads import UploadRefused
from storage.repository import Writes

log = logging.getLogger(__name__)
STAGE = Stage.REFERENCE_IMAGE
# After these, further calls would fail the same way (or can't be shown): stop paying.
STOPPERS = {"rate_limited", "timeout", "connection", "provider", "auth", "model", "upload"}


class ImagesStage:
    stage = STAGE

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx

    # --- the port ------------------------------------------------------------------------
    async def generate(self, job: Job, s: Session, op: Op, item: int | None) -> None:
        ctx = self.ctx
        n = s.version + 1
        progress = f"{STAGE}:v{n}:progress"
        # Its ledger record goes with the plan's cached LLM answer (or the job's next commit):
        # one round trip less. A retry before then finds the message by its metadata.
        ctx.repo.defer_records(job.id, on=True)
        try:
            await show_message(
                ctx, job, s, progress, blocks.images_progress(s, n, done=0, total=0, planning=True)
            )
        finally:
            ctx.repo.defer_records(job.id, on=False)
        if job.eager:
            raise Deferred  # the progress message is up; the LLM and the images are a worker's
        history = await ctx.repo.history(s)
        upto = len(history)
        new_feedback = [t for t in history[s.incorporated_until : upto] if t.role is TurnRole.USER]
        story = await approved_story(self.ctx, s)
        current = await self.version(s, s.version) if s.version else None
        try:
            specs, usage, summary = await self._plan(
                job, s, op, item=item, story=story, current=current, history=history
            )
        except LLMError as exc:
            log.warning("image plan failed for %s: %s", s.id, exc)
            await self._fail(job, s, exc.user_message, op, item=item)
            return
        to_make = [sp for sp in specs if op is not Op.REDO or sp.index == item]
        estimate = pricing.estimate_images(
            ctx.image_prices,
            count=len(to_make),
            quality=ctx.settings.image_quality,
            size=ctx.settings.image_size,
        )
        items = await ctx.repo.items(s)
        started = any(f.startswith(f"{STAGE}:v{n}:") for f in items)
        limit = ctx.settings.daily_spend_limit_usd
        if limit is not None and not started:
            spent = await ctx.repo.spent_on(s.team_id, ctx.today())
            if spent + estimate > limit:
                await self._fail(job, s, say.over_budget(limit), op, item=item)
                return
        if s.estimate_usd != estimate:
            s = await ctx.commit(job, s, estimate_usd=estimate)
            await self._card(s)

        made: dict[int, ImageArtifact] = {}
        stopped: PaidItem | None = None
        for done, spec in enumerate(to_make):
            field = f"{STAGE}:v{n}:{spec.index}"
            state = items.get(field)
            if state is None and stopped is not None:
                state = PaidItem(
                    state=ItemState.FAILED,
                    failure=f"Not made: stopped after an earlier error. {stopped.failure or ''}",
                    failure_code="stopped",
                )
                await ctx.repo.set_item(s, field, state, fence=job.fence)
            elif state is None:
                await show_message(
                    ctx,
                    job,
                    s,
                    progress,
                    blocks.images_progress(s, n, done=done, total=len(to_make)),
                    best_effort=True,
                )
                state = await self._make(job, s, field, spec)
            elif state.state is ItemState.SUBMITTED:
                # We crashed (or lost the lease) while the call was out: it may have been
                # billed. Calling again is the user's decision, not ours.
                state = PaidItem(
                    state=ItemState.FAILED,
                    failure=(
                        "Storyloop was interrupted while this image was being made, so it may "
                        "have been billed without arriving. Retry makes it again (a new paid "
                        "call)."
                    ),
                    failure_code="interrupted",
                )
                await ctx.repo.set_item(s, field, state, fence=job.fence)
            if state.state is ItemState.FETCHED:
                state = await self._upload(job, s, field, spec, n=n, item=state)
            if state.state is ItemState.FAILED and (state.failure_code or "") in STOPPERS:
                stopped = stopped or state
            made[spec.index] = _artifact(spec, state, n)
        run = _Run(
            n, op, item, specs, current, usage, summary, upto, tuple(t.ts for t in new_feedback)
        )
        await self._finish(job, s, run, made)

    async def show(self, job: Job, s: Session, number: int) -> Session:
        version = await self.version(s, number)
        if version is None:
            return s
        state = review_state(s, STAGE, number)
        approval = s.approval(STAGE)
        msg = blocks.images_review(
            s, version, state=state, approver=approval.user_id if approval else None
        )
        await show_message(self.ctx, job, s, f"{STAGE}:v{number}", msg)
        return s

    async def describe(self, s: Session) -> str:
        version = await self.version(s, s.version) if s.version else None
        return stage_prompts.render_image_set(version) if version else "(no images yet)"

    async def step(self, job: Job, s: Session, step: str) -> Session:
        return s  # no steps of its own

    async def items(self, s: Session) -> tuple[int, tuple[int, ...]]:
        version = await self.version(s, s.version) if s.version else None
        if version is None:
            return 0, ()
        missing = tuple(i.spec.index for i in version.images if i.outcome is not ImageOutcome.MADE)
        return len(version.images), missing

    async def version(self, s: Session, number: int) -> ImageSetVersion | None:
        return await self.ctx.repo.artifact(s, STAGE, number, ImageSetVersion)

    # --- steps ---------------------------------------------------------------------------
    async def _plan(
        self,
        job: Job,
        s: Session,
        op: Op,
        *,
        item: int | None,
        story: Story,
        current: ImageSetVersion | None,
        history: list[Turn],
    ) -> tuple[tuple[ImageSpec, ...], Usage, str]:
        """The set to make (cached per job, so a replay never asks the LLM twice)."""
        ctx = self.ctx
        step = f"images:v{s.version + 1}:plan"
        cached = await ctx.repo.cached_llm(job.id, step)
        if cached:
            data = json.loads(cached)
            specs = tuple(ImageSpec.model_validate(x) for x in data["specs"])
            return specs, Usage.model_validate(data["usage"]), str(data["summary"])
        if op is Op.REDO and current is not None and item is not None:
            changes = stage_prompts.changes_for_item(history[s.stage_started_turn :], item)
            messages = stage_prompts.image_redo_messages(s, story, current, item, changes)
            redo, usage = await ctx.llm.structured(messages, stage_drafts.ImageRedoDraft)
            new = stage_drafts.to_redo_spec(
                redo, index=item, others=[i.spec for i in current.images if i.spec.index != item]
            )
            specs = tuple(new if i.spec.index == item else i.spec for i in current.images)
            summary = redo.summary_of_changes
        else:
            feedback = [t for t in history[s.incorporated_until :] if t.role is TurnRole.USER]
            messages = stage_prompts.image_plan_messages(
                s,
                story,
                current,
                feedback,
                s.requested_changes,
                max_images=ctx.settings.max_images,
            )
            plan, usage = await ctx.llm.structured(messages, stage_drafts.ImagePlanDraft)
            specs = stage_drafts.to_image_specs(plan, max_images=ctx.settings.max_images)
            summary = plan.summary_of_changes if current is not None else ""
        await ctx.repo.cache_llm(
            job.id,
            step,
            json.dumps(
                {
                    "specs": [sp.model_dump(mode="json") for sp in specs],
                    "usage": usage.model_dump(),
                    "summary": summary,
                }
            ),
        )
        return specs, usage, summary

    async def _make(self, job: Job, s: Session, field: str, spec: ImageSpec) -> PaidItem:
        """One paid call: recorded as submitted first, never repeated by us."""
        ctx = self.ctx
        await ctx.repo.set_item(s, field, PaidItem(state=ItemState.SUBMITTED), fence=job.fence)
        try:
            image = await ctx.images.generate(spec.prompt)
        except ImageError as exc:
            failed = PaidItem(
                state=ItemState.FAILED, failure=exc.user_message, failure_code=exc.code
            )
            await ctx.repo.set_item(s, field, failed, fence=job.fence)
            return failed
        cost = pricing.image_cost(ctx.image_prices, image.usage)
        path = self._spool_path(s, field)
        write_spool(path, image.data)
        fetched = PaidItem(state=ItemState.FETCHED, cost_usd=cost, spool=str(path))
        # The cost is counted with the item's new state, in one round trip.
        spend = (ctx.today(), f"{s.id}:{field}", cost)
        ctx.metrics.spent("image", cost)  # paid: counted even if the lease is lost now
        await ctx.repo.set_item(s, field, fetched, fence=job.fence, spend=spend)
        ctx.crash.reach("after_image")
        return fetched

    async def _upload(
        self, job: Job, s: Session, field: str, spec: ImageSpec, *, n: int, item: PaidItem
    ) -> PaidItem:
        ctx = self.ctx
        assert s.thread_ts is not None
        path = Path(item.spool) if item.spool else None
        if path is None or not path.exists():
            lost = item.model_copy(
                update={
                    "state": ItemState.FAILED,
                    "failure": (
                        "The image was made but lost before it reached Slack (Storyloop "
                        "restarted on another machine). Retry makes it again (a new paid call)."
                    ),
                    "failure_code": "lost",
                }
            )
            await ctx.repo.set_item(s, field, lost, fence=job.fence)
            return lost
        try:
            file_id = await ctx.uploads.upload_once(
                s,
                f"file:{field}",
                filename=blocks.image_filename(spec, n),
                data=path.read_bytes(),
                title=blocks.image_file_title(spec),
                thread_ts=s.thread_ts,
                record=False,  # recorded below with the item's new state: one round trip
            )
        except UploadRefused as exc:
            refused = item.model_copy(
                update={
                    "state": ItemState.FAILED,
                    "failure": exc.user_message,
                    "failure_code": "upload",
                }
            )
            await ctx.repo.set_item(s, field, refused, fence=job.fence)
            return refused
        uploaded = item.model_copy(update={"state": ItemState.UPLOADED, "file_id": file_id})
        slot = f"file:{field}"
        shared = await ctx.repo.set_item(
            s, field, uploaded, fence=job.fence, record=(slot, file_id)
        )
        if shared != file_id:
            # The slot already named another file (an attempt that shared it and recorded it,
            # then died before its item's state): that one is the image; the item says so.
            uploaded = uploaded.model_copy(update={"file_id": shared})
            await ctx.repo.set_item(s, field, uploaded, fence=job.fence)
        ctx.crash.reach("after_upload")
        return uploaded

    async def _finish(
        self, job: Job, s: Session, run: _Run, made: dict[int, ImageArtifact]
    ) -> None:
        ctx = self.ctx
        cost = round(sum(a.cost_usd for a in made.values()), 6)
        images = tuple(
            made.get(sp.index) or _kept(run.current, sp) or _missing(sp, run.n) for sp in run.specs
        )
        if not any(a.outcome is ImageOutcome.MADE for a in made.values()):
            first = next((a.failure for a in made.values() if a.failure), None)
            await self._fail(
                job,
                s,
                first or "No image could be made.",
                run.op,
                item=run.item,
                spent=cost,
                usage=run.usage,
            )
            return
        version = ImageSetVersion(
            number=run.n,
            images=images,
            usage=run.usage,
            cost_usd=cost,
            feedback_ts=run.feedback_ts,
            summary_of_changes=run.summary,
            redo_of=run.item if run.op is Op.REDO else None,
            created_at=ctx.clock(),
        )
        n = run.n
        steps = [f"progress:{STAGE}:{n}", f"review:{STAGE}:{n}", "card"]
        if n > 1:
            steps.insert(2, f"review:{STAGE}:{n - 1}")
        s = await ctx.commit(
            job,
            s,
            version=n,
            status=Status.AWAITING_REVIEW,
            usage=s.usage + run.usage,
            spent_usd=round(s.spent_usd + cost, 6),
            estimate_usd=None,
            incorporated_until=run.upto,
            answered_until=(
                max(s.answered_until, run.upto) if run.op is not Op.GENERATE else s.answered_until
            ),
            active_job=None,
            active_item=None,
            failure=None,
            failed_op=None,
            failed_item=None,
            writes=Writes()
            .add_artifact(s, STAGE, n, version.model_dump_json())
            .forget_items(s)
            .forget_llm_result(job.id, f"images:v{n}:plan")
            .mark_done(job.id, {"team": s.team_id, "session": s.id, "deliver": steps}),
        )
        ctx.crash.reach("after_commit")
        self._clear_spool(s, n)
        await deliver(ctx, job, s, steps)

    async def _fail(
        self,
        job: Job,
        s: Session,
        reason: str,
        op: Op,
        *,
        item: int | None,
        spent: float = 0.0,
        usage: Usage | None = None,
    ) -> None:
        await fail_stage(self.ctx, job, s, reason, op=op, item=item, spent=spent, usage=usage)
        self._clear_spool(s, s.version + 1)

    async def _card(self, s: Session) -> None:
        if s.card_at:
            with contextlib.suppress(Exception):
                await self.ctx.gateway.update(
                    s, s.card_at, blocks.session_card(s), best_effort=True
                )

    def _spool_path(self, s: Session, field: str) -> Path:
        safe = field.replace(":", "_")
        return self.ctx.spool / s.team_id / s.id / f"{safe}.png"

    def _clear_spool(self, s: Session, n: int) -> None:
        folder = self.ctx.spool / s.team_id / s.id
        for path in folder.glob(f"{STAGE}_v{n}_*"):
            with contextlib.suppress(OSError):
                path.unlink()


@dataclass(frozen=True)
class _Run:
    """One generation of a set: which version, what was asked, and what it started from."""

    n: int
    op: Op
    item: int | None
    specs: tuple[ImageSpec, ...]
    current: ImageSetVersion | None
    usage: Usage
    summary: str
    upto: int
    feedback_ts: tuple[str, ...]


def _artifact(spec: ImageSpec, item: PaidItem, n: int) -> ImageArtifact:
    made = item.state is ItemState.UPLOADED
    return ImageArtifact(
        spec=spec,
        outcome=ImageOutcome.MADE if made else ImageOutcome.FAILED,
        file_id=item.file_id if made else None,
        cost_usd=item.cost_usd,
        made_in=n,
        failure=None if made else item.failure,
        failure_code=None if made else item.failure_code,
    )


def _kept(current: ImageSetVersion | None, spec: ImageSpec) -> ImageArtifact | None:
    """A Redo keeps every image but the one remade, as it was (and costs nothing again)."""
    if current is None:
        return None
    return current.image(spec.index)


def _missing(spec: ImageSpec, n: int) -> ImageArtifact:
    return ImageArtifact(
        spec=spec,
        outcome=ImageOutcome.FAILED,
        made_in=n,
        failure="Not made.",
        failure_code="missing",
    )
