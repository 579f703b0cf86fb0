"""What every stage's job shares: the stage port, showing a message once, the outcome commits.

A stage module (story, images, storyboard) implements :class:`StageWork`; the flows pick it by
``session.stage`` from the table in ``bot/jobs/stages/__init__.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, Protocol

from bot.jobs.context import FlowContext
from bot.jobs.delivery import deliver
from bot.jobs.model import Job
from bot.pipeline.artifacts import ImageSetVersion, StoryboardVersion
from bot.pipeline.models import Session, Stage, Status, Story, StoryVersion, Usage
from bot.pipeline.transitions import Op
from bot.slack.blocks import Rendered
from bot.slack.gateway import NotPostable, SlackDeliveryError
from storage.repository import Writes

log = logging.getLogger(__name__)
ReviewState = Literal["review", "approved", "superseded"]


class StageWork(Protocol):
    """One stage's part of the loop: make a version, show a version, describe it to the LLM."""

    stage: Stage

    async def generate(self, job: Job, s: Session, op: Op, item: int | None) -> None:
        """Make version ``s.version + 1`` (or remake ``item`` into it), commit, show it."""
        ...

    async def show(self, job: Job, s: Session, number: int) -> Session:
        """Make version ``number``'s review message(s) show its state (review, approved,
        superseded)."""
        ...

    async def describe(self, s: Session) -> str:
        """The current version as compact text, for answering feedback."""
        ...

    async def items(self, s: Session) -> tuple[int, tuple[int, ...]]:
        """The current version's item count and the items that couldn't be made."""
        ...

    async def step(self, job: Job, s: Session, step: str) -> Session:
        """A delivery step only this stage has (the video's plan and cancellation)."""
        ...


def review_state(s: Session, stage: Stage, number: int) -> ReviewState:
    """How version ``number`` of ``stage`` is shown now."""
    approved = s.approval(stage)
    if approved is not None and approved.version == number:
        return "approved"
    if (
        s.stage is stage
        and s.version == number
        and s.status
        in (
            Status.AWAITING_REVIEW,
            Status.FAILED,
        )
    ):
        return "review"
    return "superseded"


async def show_message(
    ctx: FlowContext, job: Job, s: Session, slot: str, msg: Rendered, *, best_effort: bool = False
) -> str | None:
    """Post ``slot``'s message once; later calls edit it. Returns its ts."""
    assert s.thread_ts is not None
    known = await ctx.repo.message_ts(s, slot)
    try:
        if known:
            await ctx.gateway.update(s, known, msg, best_effort=best_effort)
            return known
        return await ctx.gateway.post_once(s, slot, msg, thread_ts=s.thread_ts, recover=job.recover)
    except (SlackDeliveryError, NotPostable) as exc:
        if not best_effort:
            raise
        log.info("best-effort message %s not shown: %s", slot, exc)
        return known


async def fail_stage(
    ctx: FlowContext,
    job: Job,
    s: Session,
    reason: str,
    *,
    op: Op,
    item: int | None,
    spent: float = 0.0,
    usage: Usage | None = None,
) -> None:
    """A generation of a later stage came to nothing reviewable: say why in the thread with
    Retry. What was billed stays counted; the paid items' states go with the outcome."""
    n = s.version + 1
    steps = [f"progress:{s.stage}:{n}", f"failure:{s.stage}", "card"]
    s = await ctx.commit(
        job,
        s,
        status=Status.FAILED,
        failure=reason,
        failed_op=op.value,
        failed_item=item,
        usage=s.usage + (usage or Usage()),
        spent_usd=round(s.spent_usd + spent, 6),
        estimate_usd=None,
        active_job=None,
        active_item=None,
        writes=Writes()
        .forget_items(s)
        .mark_done(job.id, {"team": s.team_id, "session": s.id, "deliver": steps}),
    )
    await deliver(ctx, job, s, steps)


# --- what a later stage builds on: the approved versions of the stages before it -------------


async def approved_story(ctx: FlowContext, s: Session) -> Story:
    found: StoryVersion | None = await ctx.repo.version(s, s.version_of(Stage.STORY))
    if found is None:
        raise LookupError(f"session {s.id} has no approved story")
    return found.story


async def approved_images(ctx: FlowContext, s: Session) -> ImageSetVersion:
    number = s.version_of(Stage.REFERENCE_IMAGE)
    found = await ctx.repo.artifact(s, Stage.REFERENCE_IMAGE, number, ImageSetVersion)
    if found is None:
        raise LookupError(f"session {s.id} has no approved image set")
    return found


async def approved_storyboard(ctx: FlowContext, s: Session) -> StoryboardVersion:
    number = s.version_of(Stage.STORYBOARD)
    found = await ctx.repo.artifact(s, Stage.STORYBOARD, number, StoryboardVersion)
    if found is None:
        raise LookupError(f"session {s.id} has no approved storyboard")
    return found


def write_spool(path: Path, data: bytes) -> None:
    """Bytes on their way to Slack, written whole or not at all (a crash mid-write leaves no
    file a replay would take for complete)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".part")
    partial.write_bytes(data)
    partial.replace(path)
