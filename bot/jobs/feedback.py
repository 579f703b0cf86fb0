"""Thread replies: the LLM answers a thread's new feedback, in the current stage's terms, or the
state table turns a reply that plainly asks for it into a new version.

Replies that arrive while an answer is being written are answered together (coalesced): the
answer covers every reply since the last one answered.

The answer appears as the LLM writes it (``Chat.open_answer``: Slack's chat streaming, or
throttled edits where a workspace can't stream) in the one message of its slot; a replay, or
the job that answers a cut-off answer's reply together with later ones, finishes that message
instead of starting another.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from bot.jobs.context import FlowContext
from bot.jobs.model import Deferred, Job
from bot.jobs.ports import AnswerDraft
from bot.llm.client import LLMError
from bot.pipeline import prompts, slots, stage_prompts
from bot.pipeline import review as say
from bot.pipeline.drafts import FeedbackAnswer
from bot.pipeline.intent import wants_regenerate
from bot.pipeline.models import Session, Stage, Turn, TurnRole, Usage
from bot.pipeline.transitions import Act, Event, Generate, Note, decide
from bot.pipeline.triggers import Feedback
from bot.slack import blocks
from storage.repository import CommitConflict, Writes

if TYPE_CHECKING:
    from bot.jobs.flows import Flows

log = logging.getLogger(__name__)


async def answer_replies(flows: Flows, job: Job, t: Feedback) -> None:
    """Answer a thread's new replies with the LLM (or carry out what they plainly ask)."""
    ctx = flows.ctx
    s = await ctx.repo.get(t.team_id, t.session_id)
    if s is None or s.thread_ts is None:
        return
    if await flows.resume_if_mine(job, s):
        return
    history = await ctx.repo.history(s)
    upto = len(history)
    waiting = [i for i in range(s.answered_until, upto) if history[i].role is TurnRole.USER]
    pending = [history[i] for i in waiting]
    if not pending:
        return  # answered together with an earlier reply (coalesced)
    slot = slots.reply(pending[-1].ts)
    asked = [wants_regenerate(x.text) for x in pending]
    d = decide(s, Event(Act.REPLY, t.user_id, wants_regenerate=all(asked)), may_approve=False)
    if isinstance(d, Generate) and s.version and waiting[-1] < s.incorporated_until:
        # The current version was written from these very replies (they came in while it was
        # being made): a rewrite now would take the same words again. Say so instead.
        d = Note(say.already_included(s.version))
    if isinstance(d, Note):
        await ctx.gateway.post_once(
            s,
            slot,
            blocks.ephemeral(d.text, trusted=True),
            thread_ts=s.thread_ts,
            recover=job.recover,
        )
        await ctx.commit(job, s, answered_until=upto, last=True)
        return
    if isinstance(d, Generate):
        await flows.carry_out(job, s, d)
        return
    authors = list(dict.fromkeys(x.user_id for x in pending if x.user_id))
    shown = await ctx.gateway.open_answer(
        s,
        slot,
        recipient_id=pending[-1].user_id or t.user_id,
        after_ts=pending[0].ts,
        draft=lambda text: blocks.feedback_reply_draft(text, authors),
        stream=ctx.settings.stream_answers,
        recover=job.recover,
        earlier=[slots.reply(x.ts) for x in pending[:-1]],
        reach=ctx.crash.reach,
    )
    answer, usage = await _answer(ctx, job, s, history, pending, shown=shown)
    if answer is None:
        await shown.finish(blocks.ephemeral(say.no_answer(), trusted=True))
        await ctx.commit(job, s, answered_until=upto, last=True)
        return
    await shown.finish(blocks.feedback_reply(answer.reply, authors))
    turn = Turn(
        role=TurnRole.ASSISTANT,
        ts=pending[-1].ts,
        text=answer.reply,
        planned_changes=tuple(answer.planned_changes),
        targets=tuple(sorted({n for n in answer.targets if 0 < n <= 100})),
        stage=s.stage,
    )
    rewrite = any(asked) or answer.wants_regenerate  # a new version may follow the answer
    s = await ctx.commit(
        job,
        s,
        answered_until=upto,
        usage=s.usage + usage,
        requested_changes=prompts.fold_changes(s.requested_changes, answer.planned_changes),
        writes=Writes().add_turn(s, turn).forget_llm_result(job.id, slot),
        last=not rewrite,
    )
    if rewrite:
        again = decide(s, Event(Act.REPLY, t.user_id, wants_regenerate=True), may_approve=False)
        if isinstance(again, Generate):
            await flows.carry_out(job, s, again)


async def _answer(
    ctx: FlowContext,
    job: Job,
    s: Session,
    history: list[Turn],
    pending: list[Turn],
    *,
    shown: AnswerDraft,
) -> tuple[FeedbackAnswer | None, Usage]:
    """The answer (cached if an earlier attempt got it: one LLM call per answer where it can
    be), streamed into ``shown`` as the LLM writes it."""
    step = slots.reply(pending[-1].ts)
    cached = await ctx.repo.cached_llm(job.id, step)
    if cached:
        data = json.loads(cached)
        return FeedbackAnswer.model_validate(data["answer"]), Usage.model_validate(data["usage"])
    if job.eager:
        raise Deferred  # LLM calls are a worker's
    # What was said before the new feedback in this stage: every turn up to the answered
    # mark, and the answers given since (an answer is appended after replies that came in
    # while it was being written, so it can sit past the mark).
    upto = len(history)
    context = history[s.stage_started_turn : s.answered_until] + [
        t for t in history[s.answered_until : upto] if t.role is TurnRole.ASSISTANT
    ]
    if s.stage is Stage.STORY:
        current = await ctx.repo.version(s, s.version) if s.version else None
        messages = prompts.feedback_messages(
            s, current.story if current else None, context, pending
        )
    else:
        artifact = await ctx.stages[s.stage].describe(s)
        messages = stage_prompts.stage_feedback_messages(s, s.stage, artifact, context, pending)
    # The answer's message is recorded with the cached answer below, one round trip for both
    # (or, if the LLM fails, by the job's finish). A retry before then finds the message by
    # the slot's stream mark, set at intake (bot/pipeline/slots.py), or by its metadata.
    ctx.repo.defer_records(job.id, on=True)
    try:
        answer, usage = await ctx.llm.stream_feedback(messages, shown.show)
    except LLMError as exc:
        log.warning("feedback answer failed for %s: %s", s.id, exc)
        return None, Usage()
    finally:
        ctx.repo.defer_records(job.id, on=False)
    lost = await ctx.repo.cache_llm(
        job.id, step, json.dumps({"answer": answer.model_dump(), "usage": usage.model_dump()})
    )
    if lost:
        # Another attempt recorded this answer's slot first: it owns the session now (this
        # job's lease is gone), and the message this one streamed is a second answer.
        for slot, ts in lost:
            log.warning("slot %s was begun by another attempt; deleting ours", slot)
            await ctx.gateway.delete(s, ts)
        raise CommitConflict("the answer's slot was recorded by another attempt")
    ctx.crash.reach("after_llm")
    return answer, usage
