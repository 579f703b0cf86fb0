"""`/story delete <link or id>`: name the session, record the delete durably, ack.

Who may delete is decided by the worker (the creator, or a workspace admin per ``users.info``),
like every other right: the handler only finds which session the person named.
"""

from __future__ import annotations

import asyncio
import logging

from slack_bolt.async_app import AsyncAck

from bot.pipeline import deletion as say
from bot.pipeline.deletion import ById, ByThread, DeleteRequest, Unreadable
from bot.pipeline.triggers import DeleteSession
from bot.services import HandlerServices
from handlers import replies

log = logging.getLogger(__name__)
LOOKUP_TIMEOUT_S = 1.0  # the thread index read before the intake; the ack is due in 3 s


async def handle_delete(
    ack: AsyncAck,
    request: DeleteRequest,
    services: HandlerServices,
    *,
    team_id: str,
    channel_id: str,
    user_id: str,
    trigger_id: str,
    response_url: str | None,
) -> None:
    """Record a `/story delete`."""
    if isinstance(request, Unreadable):
        await ack(response_type="ephemeral", text=request.message)
        return
    session_id: str | None = None
    if isinstance(request, ById):
        session_id = request.session_id
    elif isinstance(request, ByThread) and services.repo is not None:
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                session_id = await services.repo.session_for_thread(
                    team_id, request.channel_id, request.thread_ts
                )
        except Exception:
            log.exception("thread lookup failed for a delete")
            await ack(response_type="ephemeral", text=replies.UNAVAILABLE)
            return
    if session_id is None:
        await ack(response_type="ephemeral", text=say.no_such_session())
        return
    trigger = DeleteSession(
        team_id=team_id,
        channel_id=channel_id,
        user_id=user_id,
        session_id=session_id,
        command_id=trigger_id,
        response_url=response_url,
    )
    if not await services.record(trigger):
        await ack(response_type="ephemeral", text=replies.UNAVAILABLE)
        return
    await ack(response_type="ephemeral", text=say.deleting())
