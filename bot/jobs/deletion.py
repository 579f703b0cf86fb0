"""`/story delete`: remove a session's data, run by a worker under the session's lease.

The worker takes the lease even from a generation that holds it (``Repository.seize``): that
job is fenced out — its next commit, fenced write or lease renewal fails and it stops; paid
work it already started is not undone. Then, in an order a crash can resume at any point:
the notice in the thread (posted while the delivery ledger still exists, so a replay finds
it), the session out of the indexes, the data erased and a contentless tombstone left (who,
when, where the card is), the spool files removed, the card edited, the deleter told. A
replay after the erase finds the tombstone with its own job id and finishes the rest.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from typing import TYPE_CHECKING, Any

from bot.jobs.model import Job
from bot.pipeline import deletion as say
from bot.pipeline.models import Session
from bot.pipeline.triggers import DeleteSession
from bot.slack import blocks, deletion_blocks
from bot.slack.gateway import NotPostable, SlackDeliveryError

if TYPE_CHECKING:
    from bot.jobs.context import FlowContext

log = logging.getLogger(__name__)
NOTICE_SLOT = "deleted"


async def delete_session(ctx: FlowContext, job: Job, t: DeleteSession) -> None:
    ctx.crash.reach("delete_seized")
    s = await ctx.repo.get(t.team_id, t.session_id)
    if s is None:
        left = await ctx.repo.tombstone(t.team_id, t.session_id)
        if left is not None and left.get("job") == job.id:
            await _finish(ctx, job, t, left)  # erased before a crash: finish the rest
        else:
            await _answer(ctx, job, t, say.no_such_session())
        return
    admin = t.user_id != s.owner_id and await ctx.gateway.is_admin(t.user_id)
    if not say.may_delete(s, t.user_id, is_admin=admin):
        await _answer(ctx, job, t, say.not_allowed())
        return
    if s.thread_ts:
        try:
            await ctx.gateway.post_once(
                s,
                NOTICE_SLOT,
                deletion_blocks.deleted_notice(t.user_id),
                thread_ts=s.thread_ts,
                recover=job.recover,
            )
        except (NotPostable, SlackDeliveryError) as exc:
            log.warning("could not post the deletion notice of %s: %s", s.id, exc)
    ctx.crash.reach("delete_noticed")
    await ctx.repo.unindex(s)
    ctx.crash.reach("delete_unindexed")
    gone: dict[str, Any] = {
        "by": t.user_id,
        "at": ctx.clock(),
        "job": job.id,
        "channel": s.channel_id,
        "card_ts": s.card_at,
    }
    await ctx.repo.erase(s, fence=job.fence, tombstone=gone)
    ctx.crash.reach("delete_erased")
    await _finish(ctx, job, t, gone)


async def _finish(ctx: FlowContext, job: Job, t: DeleteSession, gone: dict[str, Any]) -> None:
    """After the erase: the spool files, the card, the deleter's answer."""
    folder = ctx.spool / t.team_id / t.session_id
    await asyncio.to_thread(shutil.rmtree, folder, ignore_errors=True)
    card_ts = gone.get("card_ts")
    if card_ts:
        where = _where(t, gone)
        try:
            await ctx.gateway.update(where, str(card_ts), deletion_blocks.deleted_card(gone["by"]))
        except SlackDeliveryError as exc:
            log.warning("could not mark the card of deleted session %s: %s", t.session_id, exc)
    await _answer(ctx, job, t, say.deleted_done())


def _where(t: DeleteSession, gone: dict[str, Any]) -> Session:
    """The session's channel and id, for the gateway, once nothing else of it is left."""
    at = float(gone.get("at") or 0.0)
    return Session(
        id=t.session_id,
        team_id=t.team_id,
        channel_id=str(gone.get("channel") or t.channel_id),
        owner_id=str(gone.get("by") or t.user_id),
        prompt="",
        duration_s=1,
        created_at=at,
        updated_at=at,
    )


async def _answer(ctx: FlowContext, job: Job, t: DeleteSession, text: str) -> None:
    """The one answer the deleter gets (the notice in the thread is everyone's); marked done
    first, for the reason ``Flows.refuse`` gives."""
    await ctx.repo.mark_done(job.id, {"deliver": []})
    await ctx.gateway.ephemeral(
        channel_id=t.channel_id,
        user_id=t.user_id,
        msg=blocks.ephemeral(text, trusted=True),
        response_url=t.response_url,
    )
