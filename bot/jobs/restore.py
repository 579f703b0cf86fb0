"""Restore: an earlier version of the current stage becomes the newest one again.

Run by a worker (or the eager lane) under the session lease, like every click. The pure
decision (``bot/pipeline/versions.py``) refuses in plain words — busy, moved on since the modal
was drawn, a version that doesn't exist or is the current one, another session's button — so
a restore racing a regenerate has one winner and the other gets a polite answer. Otherwise
version N+1 is committed (compare-and-set, with the job's done marker) as a copy of the chosen
one: no LLM call, no paid call, no upload of paid media — the copy points at the files already
in the thread. It is shown the way the stage shows a new version (the story edited in place;
a later stage's review message posted, the one it replaces marked superseded), after a thread
notice saying who restored what. Quorum votes are per version, so they start afresh by
themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.jobs.delivery import deliver
from bot.jobs.model import Job
from bot.pipeline.models import Stage, Status
from bot.pipeline.transitions import Refuse
from bot.pipeline.triggers import Restore
from bot.pipeline.versions import (
    MODELS,
    AnyVersion,
    RestoreRequest,
    RestoreTo,
    decide_restore,
    restored_copy,
)
from storage.repository import Writes

if TYPE_CHECKING:
    from bot.jobs.flows import Flows


def restore_steps(d: RestoreTo, user_id: str) -> list[str]:
    """The notice first (the quick, visible answer the eager lane posts), then the version shown
    as the stage shows a new one, the replaced version superseded, and the card."""
    notice = f"restored:{d.stage}:{d.number}:{d.source}:{user_id}"
    if d.stage is Stage.STORY:
        return [notice, "story", "card"]
    return [notice, f"review:{d.stage}:{d.number}", f"review:{d.stage}:{d.previous}", "card"]


async def restore(flows: Flows, job: Job, t: Restore) -> None:
    ctx = flows.ctx
    s = await job.load(ctx.repo)
    source: AnyVersion | None = None
    if (
        s is not None
        and t.session_id == t.modal_session
        and s.channel_id == t.channel_id
        and t.stage is s.stage
        and 1 <= t.version <= s.version
    ):
        found = await ctx.repo.artifact(s, t.stage.value, t.version, MODELS[t.stage])
        source = found if isinstance(found, AnyVersion) else None
    request = RestoreRequest(
        team_id=t.team_id,
        channel_id=t.channel_id,
        user_id=t.user_id,
        session_id=t.session_id,
        modal_session=t.modal_session,
        stage=t.stage,
        version=t.version,
        current=t.current,
    )
    d = decide_restore(s, request, found=source is not None)
    if isinstance(d, Refuse):
        await flows.refuse(job, t, d.text)
        return
    assert s is not None and source is not None
    copy = restored_copy(source, number=d.number, by=t.user_id, at=ctx.clock())
    steps = restore_steps(d, t.user_id)
    s = await ctx.commit(
        job,
        s,
        version=d.number,
        status=Status.AWAITING_REVIEW,
        failure=None,
        failed_op=None,
        failed_item=None,
        estimate_usd=None,
        active_job=None,
        active_item=None,
        writes=Writes()
        .add_artifact(s, d.stage.value, d.number, copy.model_dump_json())
        .mark_done(job.id, {"team": s.team_id, "session": s.id, "deliver": steps}),
    )
    ctx.crash.reach("after_commit")
    await deliver(ctx, job, s, steps)
