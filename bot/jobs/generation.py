"""Writing a version of the story: placeholder, streamed progress, commit, show.

Re-entrant: a job re-delivered after a crash finds the placeholder by its slot, reuses a cached
LLM answer, and a commit that already happened is visible through the job's done marker.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence

from bot.jobs.context import FlowContext
from bot.jobs.delivery import deliver
from bot.jobs.model import Deferred, Job
from bot.llm.client import LLMError
from bot.pipeline import prompts
from bot.pipeline.drafts import StoryDraft, to_story
from bot.pipeline.models import Session, Status, StoryVersion, TurnRole, Usage
from bot.slack import blocks
from bot.slack.gateway import SlackDeliveryError
from storage.repository import Writes

log = logging.getLogger(__name__)
_TITLE = re.compile(r'"title"\s*:\s*"((?:[^"\\]|\\.)*)"')


class ProgressReporter:
    """Edits the placeholder with a live status, at most once per interval (Slack rate limits)."""

    def __init__(self, ctx: FlowContext, job: Job, session: Session, *, regenerating: bool) -> None:
        self.ctx = ctx
        self.job = job
        self.session = session
        self.regenerating = regenerating
        self.started = ctx.clock()
        self.last = self.started
        self.updates = 0

    async def __call__(self, parts: Sequence[str]) -> None:
        now = self.ctx.clock()
        if (
            now - self.last < self.ctx.settings.progress_interval_s
            or not self.session.story_message_ts
        ):
            return
        self.last = now
        text = "".join(parts)  # only when an edit is due: per chunk this would be quadratic
        match = _TITLE.search(text)
        title = match.group(1) if match else None
        msg = blocks.generating_placeholder(
            self.session,
            regenerating=self.regenerating,
            title=title,
            chars=len(text),
            elapsed_s=now - self.started,
        )
        try:
            ours = await self.ctx.repo.holds(self.session.team_id, self.session.id, self.job.fence)
        except Exception as exc:
            # Redis out for a moment: skip this edit. Raised from here, it would end the LLM's
            # answer (the client's retries would ask for it again); the commit that follows
            # has its own retries and its fence.
            log.info("progress edit skipped: could not check the lease (%s)", type(exc).__name__)
            return
        if not ours:
            return  # paused past our lease: another worker owns this message now
        try:
            await self.ctx.gateway.update(
                self.session, self.session.story_message_ts, msg, best_effort=True
            )
            self.updates += 1
        except SlackDeliveryError:
            # Rate limited (or Slack hiccup): show progress less often for a while.
            self.last = now + 4 * self.ctx.settings.progress_interval_s


async def generate(
    ctx: FlowContext, job: Job, session: Session, *, regenerating: bool, answers: bool = False
) -> None:
    """Write version ``session.version + 1`` and show it, or fail visibly with Retry.

    ``answers``: the new version is the answer to the thread's new replies (a regeneration, or a
    reply asking to try a failed first story again), so they count as answered."""
    s = session
    placeholder = blocks.generating_placeholder(s, regenerating=regenerating)
    if s.story_message_ts is None:
        ts = await ctx.gateway.post_once(
            s, "story", placeholder, thread_ts=s.thread_ts, recover=job.recover
        )
        ctx.crash.reach("after_placeholder_post")
        s = await ctx.commit(job, s, story_message_ts=ts)
    elif not job.shown:
        await ctx.gateway.update(s, s.story_message_ts, placeholder)
    if job.eager:
        raise Deferred  # the placeholder is up; the LLM call is a worker's
    assert s.story_message_ts is not None

    history = await ctx.repo.history(s)
    upto = len(history)
    new_feedback = [t for t in history[s.incorporated_until : upto] if t.role is TurnRole.USER]
    current = await ctx.repo.version(s, s.version) if s.version else None
    number = s.version + 1
    step = f"story:v{number}"
    cached = await ctx.repo.cached_llm(job.id, step)
    if cached:
        data = json.loads(cached)
        draft, usage = StoryDraft.model_validate(data["draft"]), Usage.model_validate(data["usage"])
    else:
        messages = prompts.story_messages(
            s, current.story if current else None, new_feedback, s.requested_changes
        )
        try:
            draft, usage = await ctx.llm.write_story(
                messages, ProgressReporter(ctx, job, s, regenerating=regenerating)
            )
        except LLMError as exc:
            log.warning("story generation failed for %s: %s", s.id, exc)
            await fail(
                ctx, job, s, exc.user_message, op="regenerate" if regenerating else "generate"
            )
            return
        await ctx.repo.cache_llm(
            job.id,
            step,
            json.dumps({"draft": draft.model_dump(), "usage": usage.model_dump()}),
        )
    ctx.crash.reach("after_llm")

    version = StoryVersion(
        number=number,
        story=to_story(draft, s.duration_s),
        usage=usage,
        feedback_ts=tuple(t.ts for t in new_feedback),
        summary_of_changes=draft.summary_of_changes if regenerating else "",
        created_at=ctx.clock(),
    )
    steps = ["story", "card"] + ([f"notice:{number}"] if regenerating else [])
    s = await ctx.commit(
        job,
        s,
        version=number,
        status=Status.AWAITING_REVIEW,
        usage=s.usage + usage,
        incorporated_until=upto,
        answered_until=max(s.answered_until, upto) if regenerating or answers else s.answered_until,
        active_job=None,
        failure=None,
        failed_op=None,
        writes=Writes()
        .add_version(s, version)
        .forget_llm_result(job.id, step)
        .mark_done(job.id, {"team": s.team_id, "session": s.id, "deliver": steps}),
    )
    ctx.crash.reach("after_commit")
    await deliver(ctx, job, s, steps)


async def fail(ctx: FlowContext, job: Job, session: Session, reason: str, *, op: str) -> None:
    """Record a failed generation and say so in plain words, with a Retry button."""
    s = await ctx.commit(
        job,
        session,
        status=Status.FAILED,
        failure=reason,
        failed_op=op,
        active_job=None,
        writes=Writes().mark_done(
            job.id,
            {
                "team": session.team_id,
                "session": session.id,
                "deliver": ["story", "card", "failure"],
            },
        ),
    )
    await deliver(ctx, job, s, ["story", "card", "failure"])
