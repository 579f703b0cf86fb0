"""Showing committed state in Slack. Every step is idempotent, so it can be replayed.

A job's final commit records which of these steps belong to it (its done marker); a job
re-delivered after a crash replays exactly those and nothing else.
"""

from __future__ import annotations

import logging

from bot.jobs.context import FlowContext
from bot.jobs.model import Deferred, Job
from bot.pipeline.models import Session, Stage, Status
from bot.slack import blocks
from bot.slack.blocks import StoryState
from bot.slack.gateway import NotPostable, SlackDeliveryError

log = logging.getLogger(__name__)


async def deliver(ctx: FlowContext, job: Job, session: Session, steps: list[str]) -> None:
    """Show ``steps`` in order. The eager lane shows only the first (the first visible change)
    and leaves the rest — re-rendering whole stories is CPU the listener needs for acks — to
    the worker, which replays the job's done marker."""
    s = session
    if job.eager and len(steps) > 1:
        await deliver(ctx, job, s, steps[:1])
        raise Deferred
    for step in steps:
        try:
            s = await _step(ctx, job, s, step)
        except (SlackDeliveryError, NotPostable) as exc:
            # Slack refused one view of the state; the state itself is committed and safe.
            log.error("delivery step %s for session %s failed: %s", step, s.id, exc)
    ctx.crash.reach("after_deliver")


async def _step(ctx: FlowContext, job: Job, s: Session, step: str) -> Session:
    gw = ctx.gateway
    if step == "card" and s.thread_ts:
        await gw.update(s, s.thread_ts, blocks.session_card(s))
    elif step == "story":
        s = await show_story(ctx, job, s)
    elif step.startswith("notice:"):
        number = int(step.partition(":")[2])
        version = await ctx.repo.version(s, number)
        if version is not None:
            await gw.post_once(
                s,
                step,
                blocks.story_updated_notice(version),
                thread_ts=s.thread_ts,
                recover=job.recover,
            )
    elif step == "approved" and s.approved_by and s.approved_version:
        await gw.post_once(
            s,
            step,
            blocks.approved_notice(s.approved_by, s.approved_version),
            thread_ts=s.thread_ts,
            recover=job.recover,
            # The eager lane just committed the approval under its lease: nobody has posted it.
            fresh=job.eager,
        )
    elif step == "failure" and s.failure and s.version > 0:
        # A failed regeneration: the story is back in review; the failure gets its own message.
        await gw.post_once(
            s,
            f"fail:{job.id}",
            blocks.failure_message(s, s.failure, retry_version=s.version),
            thread_ts=s.thread_ts,
            recover=job.recover,
        )
    return s


async def show_story(ctx: FlowContext, job: Job, s: Session) -> Session:
    """Make the story message (and its continuation pages) show the session's current state."""
    if s.story_message_ts is None:
        return s
    if s.version == 0:
        if s.status is Status.FAILED and s.failure:
            msg = blocks.failure_message(s, s.failure, retry_version=0)
        else:
            msg = blocks.generating_placeholder(s, regenerating=False)
        await ctx.gateway.update(s, s.story_message_ts, msg)
        return s
    version = await ctx.repo.version(s, s.version)
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
