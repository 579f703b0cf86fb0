"""The one way Storyloop talks to the Slack Web API.

Posting is idempotent (placeholder-then-update): every post has a *slot* named by what it is
for; its ts is recorded in Redis and the message carries the slot in its metadata. A replayed
job finds the ts (or, after a crash between post and record, finds the message in Slack by its
metadata) and edits instead of posting twice. 429s honour Retry-After (SDK handler); connection
errors on a post are resolved by looking for the message before posting again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.pipeline.models import Session
from bot.slack.blocks import Rendered
from bot.slack.streams import AnswerStreams, StreamedAnswer
from bot.slack.tokens import TokenSource

log = logging.getLogger(__name__)

METADATA_EVENT = "storyloop_delivery"
MAX_FALLBACK_TEXT = 3000  # chat.update rejects text over 4,000 characters
NOT_POSTABLE = {
    "channel_not_found",
    "is_archived",
    "restricted_action",
    "method_not_supported_for_channel_type",
    "not_in_channel",
    "cannot_reply_to_message",
}
_TRANSIENT = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)
ATTEMPTS = 3


class MessageLedger(Protocol):
    """Where the gateway remembers what it posted: delivery slot → Slack message ts (or an
    upload's file id). Storage implements it; the gateway needs nothing else of storage."""

    async def message_ts(self, session: Session, slot: str) -> str | None: ...

    async def record_message(self, session: Session, slot: str, ts: str) -> str:
        """Record ``ts`` for ``slot`` unless one was recorded first; returns the winner."""
        ...

    async def note_message(self, session: Session, slot: str, value: str) -> None:
        """Overwrite ``slot``'s entry."""
        ...


class RateBudget(Protocol):
    """Slack's rate limits as one budget shared by all replicas (``storage/budget.py``)."""

    async def take(
        self, team_id: str, channel_id: str, method: str, *, best_effort: bool
    ) -> float | None:
        """Seconds to wait before calling ``method`` (0: now); None: skip this progress edit."""
        ...


class NotPostable(Exception):
    """The app cannot post in this channel (not a member of a private channel, a DM, …)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class SlackDeliveryError(Exception):
    """A Slack call failed; already logged with context.

    ``transient``: Slack was unreachable, erring (5xx) or still rate limiting after our waits —
    the same call can work later, so a job whose result was committed is retried to show it
    (``bot/jobs/delivery.py``) rather than leaving the thread without it.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def _busy(exc: SlackApiError) -> bool:
    """Rate limited past our waits, or Slack's own error: worth trying again later."""
    status = int(exc.response.status_code)
    return status == 429 or status >= 500


class LeaseLost(Exception):
    """While we waited (a 429's Retry-After), another worker took the session over: stop."""


Guard = Callable[[], Awaitable[bool]]
# Set by the worker for the job running in this task: "do we still own the session?"
lease_guard: ContextVar[Guard | None] = ContextVar("lease_guard", default=None)
MAX_RATE_LIMIT_WAITS = 5
# OAuth mode: the client holding the token of the workspace the job in this task serves.
workspace_client: ContextVar[AsyncWebClient | None] = ContextVar("workspace_client", default=None)
GUARD_AFTER_WAIT_S = 1.0  # a budget wait this long re-checks the lease before the call


def _text(msg: Rendered) -> str:
    return msg.text[:MAX_FALLBACK_TEXT]


class NotInstalled(Exception):
    """OAuth mode: the workspace has no installation (uninstalled, or its tokens revoked)."""


class SlackGateway:
    def __init__(
        self,
        client: AsyncWebClient,
        ledger: MessageLedger,
        tokens: TokenSource | None = None,
        budget: RateBudget | None = None,
    ) -> None:
        self._client = client
        self.ledger = ledger
        self.tokens = tokens  # None: one workspace, one token (SLACK_BOT_TOKEN)
        self._clients: dict[str, AsyncWebClient] = {}
        self.budget = budget

    @property
    def client(self) -> AsyncWebClient:
        """The client for the workspace this task serves (``for_workspace``), else the one."""
        return workspace_client.get() or self._client

    async def for_workspace(self, team_id: str) -> None:
        """Make this task's Slack calls use ``team_id``'s token (OAuth mode; else nothing).

        A ContextVar rather than a parameter: every call of the job, down to uploads and
        streams, goes through ``client`` already, and tasks the job starts inherit it.
        """
        if self.tokens is None:
            return
        token = await self.tokens.token(team_id)
        if token is None:
            raise NotInstalled(team_id)
        client = self._clients.get(token)
        if client is None:
            base = self._client
            client = AsyncWebClient(
                token=token,
                base_url=base.base_url,
                timeout=base.timeout,
                session=base.session,
                retry_handlers=base.retry_handlers,
            )
            self._clients = {**self._clients, token: client}
        workspace_client.set(client)

    async def _admit(self, session: Session, method: str, *, best_effort: bool = False) -> bool:
        """Take ``method``'s token from the shared budget: False means skip (a progress edit
        with no room); a result waits its turn, then goes on only if we still own the job."""
        if self.budget is None:
            return True
        wait = await self.budget.take(
            session.team_id, session.channel_id, method, best_effort=best_effort
        )
        if wait is None:
            return False
        if wait > 0:
            await asyncio.sleep(wait)
            guard = lease_guard.get()
            if wait >= GUARD_AFTER_WAIT_S and guard is not None and not await guard():
                raise LeaseLost(method)
        return True

    async def call(self, method: str, *, wait_on_429: bool = True, **kwargs: Any) -> Any:
        """One Web API call; on 429 wait Retry-After, then go on only if we still own the job."""
        for _ in range(MAX_RATE_LIMIT_WAITS):
            try:
                return await getattr(self.client, method)(**kwargs)
            except SlackApiError as exc:
                if exc.response.status_code != 429 or not wait_on_429:
                    raise
                delay = float(exc.response.headers.get("Retry-After", 1) or 1)
                log.info("%s rate limited; waiting %.1f s", method, delay)
                await asyncio.sleep(min(delay, 60.0))
                guard = lease_guard.get()
                if guard is not None and not await guard():
                    raise LeaseLost(method) from None
        return await getattr(self.client, method)(**kwargs)

    async def post_once(
        self,
        session: Session,
        slot: str,
        msg: Rendered,
        *,
        thread_ts: str | None,
        recover: bool = False,
        fresh: bool = False,
    ) -> str:
        """Post the message for ``slot`` unless it was posted before; returns its ts.

        ``fresh``: the caller created the session a moment ago under its lease, so nothing can
        have been posted for it yet (saves a Redis round trip before a session's first post).
        """
        known = None if fresh else await self.ledger.message_ts(session, slot)
        if known:
            return known
        if recover:
            found = await self._find_posted(session, slot, thread_ts)
            if found:
                return await self.ledger.record_message(session, slot, found)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                # Shielded: if this job is stopped (its lease was lost) while the post is in
                # flight, the post still completes here and, if it lost the race, is deleted.
                return await asyncio.shield(self._post_and_record(session, slot, msg, thread_ts))
            except _TRANSIENT as exc:
                log.warning("chat.postMessage for %s failed (%s); checking Slack", slot, exc)
                await asyncio.sleep(0.2 * attempt)
                found = await self._find_posted(session, slot, thread_ts)
                if found:
                    return await self.ledger.record_message(session, slot, found)
        raise SlackDeliveryError(f"could not post {slot}", transient=True)

    async def _post_and_record(
        self, session: Session, slot: str, msg: Rendered, thread_ts: str | None
    ) -> str:
        ts = await self._post(session, slot, msg, thread_ts=thread_ts)
        winner = await self.ledger.record_message(session, slot, ts)
        if winner != ts:
            # Another worker posted this slot while we were paused mid-post: take ours back.
            log.warning("slot %s was posted by another worker; deleting ours", slot)
            await self.delete(session, ts)
        return winner

    async def _post(
        self,
        session: Session,
        slot: str,
        msg: Rendered,
        *,
        thread_ts: str | None,
        may_join: bool = True,
    ) -> str:
        kwargs: dict[str, Any] = {
            "channel": session.channel_id,
            "text": _text(msg),
            "blocks": msg.blocks,
            "metadata": {
                "event_type": METADATA_EVENT,
                "event_payload": {"session": session.id, "slot": slot},
            },
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        await self._admit(session, "chat_postMessage")
        try:
            resp = await self.call("chat_postMessage", **kwargs)
        except SlackApiError as exc:
            error = str(exc.response.get("error", ""))
            if error == "not_in_channel" and may_join and await self.join(session.channel_id):
                return await self._post(session, slot, msg, thread_ts=thread_ts, may_join=False)
            if error in NOT_POSTABLE:
                raise NotPostable(error) from None
            log.error("chat.postMessage %s in %s failed: %s", slot, session.channel_id, error)
            raise SlackDeliveryError(error, transient=_busy(exc)) from None
        return str(resp["ts"])

    async def _find_posted(self, session: Session, slot: str, thread_ts: str | None) -> str | None:
        """Look in Slack for a message we posted for ``slot`` (crash between post and record).

        A rate limit is waited out (``call``), and a lookup that can't get through raises, so
        the job tries again later: answering "not posted" because Slack was busy would post the
        message twice (the fault loop's seed 42 did, on a 429 of ``conversations.replies``).
        Only an error that retrying can't change (a missing scope, a channel gone) lets the
        post go ahead unchecked.
        """
        try:
            if thread_ts:
                resp = await self.call(
                    "conversations_replies",
                    channel=session.channel_id,
                    ts=thread_ts,
                    include_all_metadata=True,
                    limit=200,
                )
            else:
                resp = await self.call(
                    "conversations_history",
                    channel=session.channel_id,
                    include_all_metadata=True,
                    limit=100,
                )
        except _TRANSIENT as exc:
            log.warning("could not look for %s in Slack (%s); trying again later", slot, exc)
            raise SlackDeliveryError(
                f"could not check whether {slot} was posted", transient=True
            ) from None
        except SlackApiError as exc:
            if _busy(exc):
                log.warning("could not look for %s in Slack (%s); trying again later", slot, exc)
                raise SlackDeliveryError(
                    f"could not check whether {slot} was posted", transient=True
                ) from None
            log.warning("could not look for %s in Slack: %s", slot, exc.response.get("error"))
            return None
        messages: list[dict[str, Any]] = resp.get("messages") or []
        for message in messages:
            meta = message.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            if (
                meta.get("event_type") == METADATA_EVENT
                and payload.get("session") == session.id
                and payload.get("slot") == slot
            ):
                return str(message["ts"])
        return None

    async def join(self, channel_id: str) -> bool:
        try:
            await self.call("conversations_join", channel=channel_id)
        except SlackApiError as exc:
            log.info("could not join %s: %s", channel_id, exc.response.get("error"))
            return False
        return True

    async def update(
        self,
        session: Session,
        ts: str,
        msg: Rendered,
        *,
        best_effort: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Edit a message we own (idempotent, so transient failures are simply retried).

        ``best_effort`` (live progress): a rate limit is not waited out — the edit is skipped,
        so a busy workspace slows the progress display, never the story; nor is it made when
        the shared rate budget has no room beyond what results need. ``metadata``: give
        the message its slot's metadata too (a streamed answer, which had none).
        """
        extra = {"metadata": metadata} if metadata else {}
        for attempt in range(1, ATTEMPTS + 1):
            if not await self._admit(session, "chat_update", best_effort=best_effort):
                log.debug("progress edit of %s skipped: no room in the rate budget", ts)
                return
            try:
                await self.call(
                    "chat_update",
                    wait_on_429=not best_effort,
                    channel=session.channel_id,
                    ts=ts,
                    text=_text(msg),
                    blocks=msg.blocks,
                    **extra,
                )
                return
            except _TRANSIENT as exc:
                log.warning("chat.update %s failed (%s), attempt %d", ts, exc, attempt)
                if best_effort:
                    break
                await asyncio.sleep(0.2 * attempt)
            except SlackApiError as exc:
                error = exc.response.get("error")
                if not best_effort:
                    log.error("chat.update %s in %s failed: %s", ts, session.channel_id, error)
                raise SlackDeliveryError(str(error), transient=_busy(exc)) from None
        raise SlackDeliveryError(f"could not update {ts}", transient=True)

    def delivery_metadata(self, session: Session, slot: str) -> dict[str, Any]:
        """The metadata every delivered message carries (what ``_find_posted`` looks for)."""
        return {
            "event_type": METADATA_EVENT,
            "event_payload": {"session": session.id, "slot": slot},
        }

    @functools.cached_property
    def answers(self) -> AnswerStreams:
        """Thread answers shown as they are written (``bot/slack/streams.py``)."""
        return AnswerStreams(self)

    async def open_answer(
        self,
        session: Session,
        slot: str,
        *,
        recipient_id: str,
        after_ts: str,
        draft: Callable[[str], Rendered],
        stream: bool = True,
        recover: bool = False,
        earlier: Sequence[str] = (),
        reach: Callable[[str], None] | None = None,
    ) -> StreamedAnswer:
        """An answer message shown while it is written: streamed, or edited (``streams``)."""
        return await self.answers.open(
            session,
            slot,
            recipient_id=recipient_id,
            after_ts=after_ts,
            draft=draft,
            stream=stream,
            recover=recover,
            earlier=earlier,
            reach=reach,
        )

    async def sync_pages(
        self,
        session: Session,
        slot: str,
        pages: Sequence[Rendered],
        *,
        first_ts: str,
        recover: bool,
    ) -> tuple[str, ...]:
        """Show a multi-message story: page 1 edits ``first_ts``; the rest get their own slots."""
        await self.update(session, first_ts, pages[0])
        extra: list[str] = []
        for index, page in enumerate(pages[1:], start=2):
            page_slot = f"{slot}:p{index}"
            ts = await self.post_once(
                session, page_slot, page, thread_ts=session.thread_ts, recover=recover
            )
            await self.update(session, ts, page)
            extra.append(ts)
        for stale in session.extra_message_ts:
            if stale not in extra:
                await self.delete(session, stale)
        return tuple(extra)

    async def permalink(self, session: Session, ts: str) -> str | None:
        """A link to one of the session's messages (None if Slack won't say)."""
        try:
            resp = await self.call("chat_getPermalink", channel=session.channel_id, message_ts=ts)
        except (SlackApiError, *_TRANSIENT) as exc:
            log.info("no permalink for %s: %s", ts, exc)
            return None
        link = resp.get("permalink")
        return str(link) if isinstance(link, str) else None

    async def group_members(self, group_id: str) -> frozenset[str]:
        """A user group's members (``usergroups.users.list``); empty when Slack won't say."""
        try:
            resp = await self.call("usergroups_users_list", usergroup=group_id)
        except (SlackApiError, *_TRANSIENT) as exc:
            log.warning("could not list the members of %s: %s", group_id, exc)
            return frozenset()
        users = resp.get("users") or []
        return frozenset(str(u) for u in users if isinstance(u, str))

    async def is_admin(self, user_id: str) -> bool:
        """A workspace admin or owner (``users.info``, needs ``users:read``); False when Slack
        won't say."""
        try:
            resp = await self.call("users_info", user=user_id)
        except (SlackApiError, *_TRANSIENT) as exc:
            log.warning("could not look up %s: %s", user_id, exc)
            return False
        user = resp.get("user") or {}
        return bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))

    async def delete(self, session: Session, ts: str) -> None:
        try:
            await self.call("chat_delete", channel=session.channel_id, ts=ts)
        except SlackApiError as exc:
            if exc.response.get("error") != "message_not_found":
                log.warning("chat.delete %s failed: %s", ts, exc.response.get("error"))

    async def ephemeral(
        self,
        *,
        channel_id: str,
        user_id: str,
        msg: Rendered,
        thread_ts: str | None = None,
        response_url: str | None = None,
    ) -> None:
        """Tell one person something only they should see (best effort, never raises)."""
        try:
            if response_url and response_url.startswith(("https://", "http://")):
                hook = AsyncWebhookClient(response_url)
                await hook.send(
                    text=_text(msg),
                    blocks=msg.blocks,
                    response_type="ephemeral",
                    replace_original=False,
                )
                return
            await self.call(
                "chat_postEphemeral",
                channel=channel_id,
                user=user_id,
                text=_text(msg),
                blocks=msg.blocks,
                thread_ts=thread_ts,
            )
        except (SlackApiError, *_TRANSIENT) as exc:
            log.warning("ephemeral to %s in %s failed: %s", user_id, channel_id, exc)
