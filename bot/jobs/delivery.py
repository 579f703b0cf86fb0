"""Showing committed state in Slack. Every step is idempotent, so it can be replayed.

A job's final commit records which of these steps belong to it (its done marker); a job
re-delivered after a crash replays exactly those and nothing else.
"""

from __future__ import annotations

import logging
from typing import Literal

from bot.jobs.context import FlowContext
from bot.jobs.model import Deferred, Job
from bot.pipeline.approvals import current_votes
from bot.pipeline.artifacts import ImageOutcome, ImageSetVersion
from bot.pipeline.models import Session, Stage, Status
from bot.slack import blocks
from bot.slack.blocks import Rendered, StoryState
from bot.slack.gateway import NotPostable, SlackDeliveryError
from bot.slack.version_blocks import restored_notice

log = logging.getLogger(__name__)


async def deliver(ctx: FlowContext, job: Job, session: Session, steps: list[str]) -> None:
    """Show ``steps`` in order. The eager lane shows only the first (the first visible change)
    and leaves the rest — re-rendering whole stories is CPU the listener needs for acks — to
    the worker, which replays the job's done marker."""
    s = session
    if job.eager and len(steps) > 1:
        await deliver(ctx, job, s, steps[:1])
        raise Deferred
    # Steps the job's committed done marker names are replayed by any retry, looking in Slack
    # first: their posts' ledger records can wait for the job's finish (one round trip).
    marker = None if job.eager else await ctx.repo.done(job.id)
    replayed = marker is not None and set(steps) <= set(marker.get("deliver") or [])
    ctx.repo.defer_records(job.id, on=replayed)
    later: SlackDeliveryError | None = None
    try:
        for step in steps:
            try:
                s = await _step(ctx, job, s, step)
            except (SlackDeliveryError, NotPostable) as exc:
                # Slack refused one view of the state; the state itself is committed and safe.
                log.error("delivery step %s for session %s failed: %s", step, s.id, exc)
                if isinstance(exc, SlackDeliveryError) and exc.transient:
                    later = later or exc
    finally:
        ctx.repo.defer_records(job.id, on=False)
    if later is not None and job.deliveries < ctx.settings.max_deliveries:
        # Slack was busy or unreachable for a step: the job is retried, and its replay shows
        # what is still missing (what was shown is in the ledger). The last delivery lets it
        # go, so a Slack outage can't hold a job forever.
        raise later
    ctx.crash.reach("after_deliver")


async def _step(ctx: FlowContext, job: Job, s: Session, step: str) -> Session:
    """One named delivery step. Steps name what they show, never how far a job got:
    ``card``; the story's ``story``, ``notice:{n}``, ``approved``, ``failure``; and for any
    stage ``approved:{stage}``, ``review:{stage}:{n}``, ``notice:{stage}:{n}``,
    ``progress:{stage}:{n}``, ``failure:{stage}``; ``collected`` (everything approved)."""
    gw = ctx.gateway
    kind, _, rest = step.partition(":")
    if step == "card" and s.card_at:
        links = await collected_links(ctx, s) if s.stage is Stage.COMPLETE else []
        await gw.update(s, s.card_at, blocks.session_card(s, links=links))
    elif step == "story":
        s = await show_story(ctx, job, s)
    elif kind == "notice" and rest.isdigit():
        version = await ctx.repo.version(s, int(rest))
        if version is not None:
            await gw.post_once(
                s,
                step,
                blocks.story_updated_notice(version),
                thread_ts=s.thread_ts,
                recover=job.recover,
            )
    elif kind == "vote":
        await _vote_step(ctx, job, s, step)
    elif kind == "restored":
        await _restored_step(ctx, job, s, step)
    elif kind in ("approved", "review", "progress", "failure", "notice", "collected", "complete"):
        s = await _stage_step(ctx, job, s, step)
    elif kind in ("plan", "cancelled") and Stage.VIDEO in ctx.stages:
        s = await ctx.stages[Stage.VIDEO].step(job, s, step)
    return s


async def _restored_step(ctx: FlowContext, job: Job, s: Session, step: str) -> None:
    """``restored:{stage}:{n}:{source}:{user}``: who restored which version, in the thread."""
    _, stage_name, number, source, user = [*step.split(":"), "", "", "", ""][:5]
    if stage_name not in set(Stage) or not (number.isdigit() and source.isdigit() and user):
        return
    await ctx.gateway.post_once(
        s,
        step,
        restored_notice(Stage(stage_name), user, int(source), int(number)),
        thread_ts=s.thread_ts,
        recover=job.recover,
        fresh=job.eager,  # the eager lane just committed it under its lease: nobody posted it
    )


async def _vote_step(ctx: FlowContext, job: Job, s: Session, step: str) -> None:
    """``vote:{stage}:{act}:{version}:{user}``: one approval towards a quorum, in the thread."""
    _, stage_name, act, number, user = [*step.split(":"), "", "", "", ""][:5]
    if stage_name not in set(Stage) or not number.isdigit():
        return
    stage = Stage(stage_name)
    votes = current_votes(s, stage, int(number), act=act)
    have = next((i for i, v in enumerate(votes, start=1) if v.user_id == user), None)
    if have is None:
        return  # the count moved on (a new version); the card shows where it stands
    await ctx.gateway.post_once(
        s,
        step,
        blocks.vote_notice(stage, act, int(number), user, have=have, needed=s.policy.votes_needed),
        thread_ts=s.thread_ts,
        recover=job.recover,
    )


async def _stage_step(ctx: FlowContext, job: Job, s: Session, step: str) -> Session:
    kind, _, rest = step.partition(":")
    stage_name, _, number = rest.partition(":")
    stage = Stage(stage_name) if stage_name in set(Stage) else Stage.STORY
    gw = ctx.gateway
    if kind == "approved":
        approval = s.approval(stage)
        if approval is None:
            return s
        await gw.post_once(
            s,
            "approved" if stage is Stage.STORY else step,  # the story's slot predates the rest
            blocks.approved_notice(
                stage, approval.user_id, approval.version, co_approvers=approval.co_approvers
            ),
            thread_ts=s.thread_ts,
            recover=job.recover,
            # The eager lane just committed the approval under its lease: nobody has posted it.
            fresh=job.eager,
        )
    elif kind == "review" and number.isdigit():
        work = ctx.stages.get(stage)
        if work is not None:
            s = await work.show(job, s, int(number))
    elif kind == "progress" and number.isdigit():
        known = await ctx.repo.message_ts(s, f"{stage}:v{number}:progress")
        if known:
            await gw.update(s, known, await _progress_done(ctx, s, stage, int(number)))
    elif kind == "notice" and number.isdigit():
        await gw.post_once(
            s,
            step,
            blocks.stage_updated_notice(stage, int(number), ""),
            thread_ts=s.thread_ts,
            recover=job.recover,
        )
    elif kind == "failure" and s.failure:
        failure = (
            blocks.video_failure(s, s.failure, retry_plan=s.plan)
            if stage is Stage.VIDEO
            else blocks.stage_failure(s, s.failure, stage=stage, retry_version=s.version)
        )
        await gw.post_once(s, f"fail:{job.id}", failure, thread_ts=s.thread_ts, recover=job.recover)
    elif kind == "collected":
        await gw.post_once(
            s,
            "collected",
            blocks.collected(s, await collected_links(ctx, s)),
            thread_ts=s.thread_ts,
            recover=job.recover,
        )
    elif kind == "complete":
        await gw.post_once(
            s,
            "complete",
            blocks.session_complete(s, await collected_links(ctx, s)),
            thread_ts=s.thread_ts,
            recover=job.recover,
        )
    return s


async def _progress_done(ctx: FlowContext, s: Session, stage: Stage, n: int) -> Rendered:
    if stage is Stage.REFERENCE_IMAGE:
        version = await ctx.repo.artifact(s, stage, n, ImageSetVersion)
        if version is None:
            return blocks.images_progress_done(n, made=0, total=0)
        made = sum(1 for i in version.images if i.outcome is ImageOutcome.MADE and i.made_in == n)
        remade = sum(1 for i in version.images if i.made_in == n)
        return blocks.images_progress_done(n, made=made, total=remade)
    if stage is Stage.VIDEO:
        ended: Literal["done", "cancelled", "failed"] = "done"
        if s.status is Status.CANCELLED:
            ended = "cancelled"
        elif s.status is Status.FAILED:
            ended = "failed"
        return blocks.video_progress_done(n, state=ended, spent_usd=s.spent_usd)
    return blocks.storyboard_progress_done(n)


async def collected_links(ctx: FlowContext, s: Session) -> list[tuple[str, str | None]]:
    """Everything approved so far, each with a link to where it is in the thread."""
    links: list[tuple[str, str | None]] = []
    for approval in s.approvals:
        if approval.stage is Stage.STORY:
            label, slot = f"Story v{approval.version}", "story"
        elif approval.stage is Stage.REFERENCE_IMAGE:
            version = await ctx.repo.artifact(s, approval.stage, approval.version, ImageSetVersion)
            count = len(version.images) if version else 0
            label = f"Reference images v{approval.version} — {count} files"
            slot = f"{approval.stage}:v{approval.version}"
        elif approval.stage is Stage.STORYBOARD:
            label = f"Storyboard v{approval.version} — storyboard-v{approval.version}.md"
            slot = f"{approval.stage}:v{approval.version}:p1"
        else:
            label = f"Video v{approval.version} — video-v{approval.version}.mp4"
            slot = f"{approval.stage}:v{approval.version}"
        ts = await ctx.repo.message_ts(s, slot)
        links.append((label, await ctx.gateway.permalink(s, ts) if ts else None))
    return links


async def show_story(ctx: FlowContext, job: Job, s: Session) -> Session:
    """Make the story message (and its continuation pages) show the session's current state."""
    if s.story_message_ts is None:
        return s
    number = s.version_of(Stage.STORY)  # after approval the session's version is a later stage's
    if number == 0:
        if s.status is Status.FAILED and s.failure:
            msg = blocks.failure_message(s, s.failure, retry_version=0)
        else:
            msg = blocks.generating_placeholder(s, regenerating=False)
        await ctx.gateway.update(s, s.story_message_ts, msg)
        return s
    version = await ctx.repo.version(s, number)
    if version is None:
        return s
    state: StoryState
    if s.stage is not Stage.STORY:
        state = "approved"
    elif s.status is Status.REGENERATING:
        state = "regenerating"
    else:
        state = "review"
    pages = blocks.story_messages(s, version, state=state, approved_by=s.approved_by)
    extra = await ctx.gateway.sync_pages(
        s, f"story:v{version.number}", pages, first_ts=s.story_message_ts, recover=job.recover
    )
    if extra != s.extra_message_ts:
        fresh = await ctx.repo.get(s.team_id, s.id)
        if fresh is not None:
            s = await ctx.commit(job, fresh, extra_message_ts=extra)
    return s
