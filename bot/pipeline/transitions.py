"""The review loop as a pure state table: what a trigger does to a session.

``decide(session, event, may_approve=…)`` returns a decision value — generate, advance, answer,
note, or refuse with the plain words to show — and the job flows carry it out. Nothing here
does I/O, so every stage, status and trigger is covered by a table test
(``tests/unit/test_transitions.py``).

    status (current stage)   Approve        Regenerate     Redo (items)   Retry          reply
    starting / generating /  refuse (busy)  refuse (busy)  refuse (busy)  refuse (busy)  answer
      regenerating
    awaiting_review          → next stage   → regenerate   → redo item    refuse         answer
    failed (v = 0)           refuse         refuse         refuse         → generate     answer¹
    failed (v ≥ 1)           → next stage   → regenerate   → redo item    → re-run²      answer
    queued (not built)       refuse         refuse         refuse         refuse         note
    complete / unpostable    refuse         refuse         refuse         refuse         note

A button shown for another stage is refused ("already approved" / "stale"); so is one shown for
an older version. Approval also needs ``may_approve`` (the approval rules) and, for a stage with
items, every item made; under a quorum rule an approval (or spend confirmation) short of the
count is a ``Vote``, and a second one by the same person is refused.
¹ A reply that plainly asks for a new version ("try again", "regenerate
the story") retries a failed first generation. ² Retry re-runs what failed (``failed_op``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.pipeline import review as say
from bot.pipeline.approvals import current_votes
from bot.pipeline.models import Session, Stage, Status
from bot.pipeline.stages import definition, next_stage

BUSY = (Status.STARTING, Status.GENERATING, Status.REGENERATING)
AT_REST = (Status.AWAITING_REVIEW, Status.FAILED)


class Act(StrEnum):
    APPROVE = "approve"
    REGENERATE = "regenerate"
    REDO = "redo"
    RETRY = "retry"
    REPLY = "reply"
    CONFIRM = "confirm"  # video: spend on the plan shown
    CANCEL = "cancel"  # video: don't spend (a plan), or stop spending (a render)


class Op(StrEnum):
    """What a generation does: the first version, a new version, or one item of a version."""

    GENERATE = "generate"
    REGENERATE = "regenerate"
    REDO = "redo"
    RENDER = "render"  # video: render the confirmed plan (a plan is what the others make)


@dataclass(frozen=True)
class Event:
    act: Act
    user_id: str
    stage: Stage | None = None  # the stage a button was shown for (None: a thread reply)
    version: int = 0  # the version a button was shown for
    item: int | None = None  # Redo: which item
    wants_regenerate: bool = False  # a reply that plainly asks for a new version


@dataclass(frozen=True)
class Refuse:
    text: str


@dataclass(frozen=True)
class Generate:
    stage: Stage
    op: Op
    item: int | None = None


@dataclass(frozen=True)
class Advance:
    """Approve ``stage`` at ``version`` and move on to ``to`` (generated, or queued if this
    version of Storyloop doesn't make it)."""

    stage: Stage
    version: int
    to: Stage
    to_status: Status


@dataclass(frozen=True)
class Vote:
    """Record one approval (``act`` approve) or spend confirmation (``act`` confirm) towards
    a quorum that one more person's would not yet complete."""

    stage: Stage
    version: int
    act: str


@dataclass(frozen=True)
class Answer:
    """Answer the thread's new feedback with the LLM (in the current stage's terms)."""

    stage: Stage


@dataclass(frozen=True)
class Note:
    """Answer a reply with fixed words: there is nothing the LLM could change."""

    text: str


@dataclass(frozen=True)
class Stop:
    """Cancel the video plan, or the render under way (deleting its remote jobs)."""

    stage: Stage


Decision = Refuse | Generate | Advance | Vote | Answer | Note | Stop


def decide(
    s: Session, e: Event, *, may_approve: bool, items: int = 0, missing: tuple[int, ...] = ()
) -> Decision:
    """What ``e`` does to ``s``. ``items``: how many items the current version has (Redo's
    range); ``missing``: the items of the current version that couldn't be made."""
    if e.act is Act.REPLY:
        return _reply(s, e)
    if e.act is Act.APPROVE and not may_approve:
        return Refuse(say.only_approvers(s))
    if e.stage is not None and e.stage is not s.stage:
        if s.approval(e.stage) is not None:
            return Refuse(say.already_approved(s, e.stage))
        return Refuse(say.stale_stage(s))
    stage = definition(s.stage)
    if stage is None or s.status is Status.UNPOSTABLE:
        return Refuse(say.session_done(s) if s.stage is Stage.COMPLETE else say.unknown_session())
    if not stage.available or s.status is Status.QUEUED:
        return Refuse(say.stage_unavailable(s))
    if s.stage is Stage.VIDEO:
        return _video(s, e, may_approve=may_approve, items=items)
    if e.act in (Act.CONFIRM, Act.CANCEL):
        return Refuse(say.stale_stage(s))
    if s.status in BUSY:
        return Refuse(say.nothing_to_retry(s) if e.act is Act.RETRY else say.busy(s))
    if e.act is Act.RETRY:
        return _retry(s, e)
    if s.version == 0 or s.status not in AT_REST:
        return Refuse(say.not_ready(s))
    if e.version != s.version:
        if e.act is Act.APPROVE:
            return Refuse(say.outdated_approve(s, e.version))
        return Refuse(say.outdated(s, e.version))
    if e.act is Act.APPROVE:
        if missing:
            return Refuse(say.incomplete(s, list(missing)))
        return _vote_or(s, e, s.version, "approve", _advance(s))
    if e.act is Act.REDO:
        if stage.item is None:
            return Refuse(say.not_redoable(s))
        if e.item is None or not 1 <= e.item <= items:
            return Refuse(say.no_such_item(s, e.item or 0, items))
        return Generate(s.stage, Op.REDO, e.item)
    return Generate(s.stage, Op.REGENERATE)


def _vote_or(s: Session, e: Event, version: int, act: str, then: Decision) -> Decision:
    """Under a quorum rule, an approval short of the count is a vote; one person counts once."""
    needed = s.policy.votes_needed
    votes = current_votes(s, s.stage, version, act=act)
    if any(v.user_id == e.user_id for v in votes):
        return Refuse(say.already_voted(s, act, len(votes), needed))
    if len(votes) + 1 < needed:
        return Vote(s.stage, version, act)
    return then


def _advance(s: Session) -> Advance:
    to = next_stage(s.stage)
    found = definition(to)
    if to is Stage.COMPLETE:
        return Advance(s.stage, s.version, to, Status.DONE)
    to_status = Status.GENERATING if found is not None and found.available else Status.QUEUED
    return Advance(s.stage, s.version, to, to_status)


def _video(s: Session, e: Event, *, may_approve: bool, items: int) -> Decision:
    """The video stage: a plan (with its cost) is confirmed before anything is spent; a render
    can be cancelled; the finished video is reviewed like every stage (Redo names a scene, and
    asks for a new plan)."""
    if e.act is Act.CONFIRM:
        if not may_approve:
            return Refuse(say.only_approvers(s))
        if s.status is Status.AWAITING_CONFIRMATION and e.version == s.plan:
            return _vote_or(s, e, s.plan, "confirm", Generate(Stage.VIDEO, Op.RENDER))
        if s.status in BUSY:
            return Refuse(say.already_rendering(s))
        if e.version != s.plan:
            return Refuse(say.outdated_plan(s, e.version))
        return Refuse(say.nothing_to_confirm(s))
    if e.act is Act.CANCEL:
        if e.version != s.plan:
            return Refuse(say.outdated_plan(s, e.version))
        if s.status in (Status.AWAITING_CONFIRMATION, *BUSY):
            return Stop(Stage.VIDEO)
        return Refuse(say.nothing_to_cancel(s))
    if s.status in BUSY:
        return Refuse(say.nothing_to_retry(s) if e.act is Act.RETRY else say.busy(s))
    if e.act is Act.RETRY:
        if s.status is Status.FAILED and s.failed_op == Op.RENDER:
            return Generate(Stage.VIDEO, Op.RENDER)  # go on with the jobs already paid for
        if s.status in (Status.FAILED, Status.CANCELLED):
            return Generate(Stage.VIDEO, Op.REGENERATE if s.version else Op.GENERATE)
        return Refuse(say.nothing_to_retry(s))
    if s.status is Status.AWAITING_CONFIRMATION:
        return Refuse(say.confirm_first(s))
    if s.version == 0 or s.status not in AT_REST:
        return Refuse(say.not_ready(s))
    if e.version != s.version:
        if e.act is Act.APPROVE:
            return Refuse(say.outdated_approve(s, e.version))
        return Refuse(say.outdated(s, e.version))
    if e.act is Act.APPROVE:
        return _vote_or(s, e, s.version, "approve", _advance(s))
    if e.act is Act.REDO:
        if e.item is None or not 1 <= e.item <= items:
            return Refuse(say.no_such_item(s, e.item or 0, items))
        return Generate(Stage.VIDEO, Op.REDO, e.item)
    return Generate(Stage.VIDEO, Op.REGENERATE)


def _retry(s: Session, e: Event) -> Decision:
    if s.status is not Status.FAILED or e.version != s.version:
        return Refuse(say.nothing_to_retry(s))
    if s.version == 0:
        return Generate(s.stage, Op.GENERATE)
    if s.failed_op == Op.REDO and s.failed_item is not None:
        return Generate(s.stage, Op.REDO, s.failed_item)
    return Generate(s.stage, Op.REGENERATE)


def _reply(s: Session, e: Event) -> Decision:
    stage = definition(s.stage)
    if stage is None or not stage.available or s.status in (Status.QUEUED, Status.UNPOSTABLE):
        return Note(say.after_approval(s))
    if e.wants_regenerate and s.status is Status.FAILED and s.version == 0:
        return Generate(s.stage, Op.GENERATE)  # "try again" after a failed first version
    if e.wants_regenerate and s.status in AT_REST and s.version > 0:
        return Generate(s.stage, Op.REGENERATE)
    return Answer(s.stage)
