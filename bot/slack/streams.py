"""Thread answers shown while the LLM writes them, one Slack message per answer.

Why: an answer takes seconds to write; people should watch it appear. Slack's chat streaming
(``chat.startStream`` → ``chat.appendStream`` → ``chat.stopStream``, SLACK.md §4.3 "Streaming")
does that where the workspace and app allow it; elsewhere one posted message is edited as the
text grows (throttled). Either way the message ends as a normal answer message: a
``chat.update`` gives it the blocks and the delivery metadata ``post_once`` gives every message,
so ledger recovery, the fault checker and the rest of the app see nothing special.

Exactly one message per answer, across crashes, retries and reconnects:

- Before ``chat.startStream`` the slot's *stream mark* (``{slot}:stream``) is noted in the
  ledger, and the moment it answers, its ts is recorded under the slot — before any text is
  appended — so a replay finds the message like any posted one, stops the stream if it may
  still be live, and from then on only edits it.
- The job that answers a slot's replies together with a later one (a reply came in while the
  first answer was cut off) takes over the earlier slot's streamed message the same way.
- Killed between startStream's answer and the record, the mark is there and the ts isn't: the
  thread is searched for our message after the feedback that has no metadata and no files —
  every other message the app posts carries its slot's metadata, and uploads carry files — and
  that one is adopted.

Rate tiers (per workspace and app): startStream and stopStream are Tier 2 (20+/min),
appendStream Tier 4 (100+/min). Appends go at most once per ``append_interval_s``, carrying
everything written since; a 429 on an append postpones the next by its Retry-After (the text
stays buffered; the final edit shows all of it, so nothing is lost). A 429 on startStream makes
this answer use edits rather than wait; stopStream's 429 is waited out (a streaming message
can't be edited). A workspace that refuses streaming outright (``REFUSALS``) is remembered in
this process, and its later answers go straight to edits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.pipeline.models import Session
from bot.pipeline.slots import STREAM_MARK
from bot.slack.mrkdwn import escape
from bot.slack.story_blocks import Rendered

log = logging.getLogger(__name__)

__all__ = [
    "APPEND_INTERVAL_S",
    "EDIT_INTERVAL_S",
    "REFUSALS",
    "STREAM_MARK",
    "AnswerLookupFailed",
    "AnswerStreams",
    "StreamGateway",
    "StreamedAnswer",
]

APPEND_INTERVAL_S = 1.0
EDIT_INTERVAL_S = 1.5
MARKDOWN_MAX = 12_000  # markdown_text per call
APPEND_MAX_RAW = MARKDOWN_MAX // 5  # escaped ("&" → "&amp;") it still fits one call
STREAM_BUDGET = 11_000  # stop appending past this; the final edit shows the answer, cut to fit
ATTEMPTS = 3
# startStream errors that mean this workspace or app can't stream at all (not this message, not
# now): answers there use edits from then on. Which one Slack sends for a workspace without the
# feature is undocumented; these are the candidates its other methods use.
REFUSALS = frozenset(
    {
        "not_allowed",
        "feature_not_enabled",
        "unknown_method",
        "missing_scope",
        "not_allowed_token_type",
        "method_deprecated",
        "no_permission",
        "team_access_not_granted",
    }
)
# appendStream/stopStream errors saying the stream is over (it expired, ~5 min after it
# began, or the user pressed Stop): nothing more to append; an edit still works.
_ENDED = frozenset({"message_not_in_streaming_state", "stopped_by_user"})
_TRANSIENT = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


class AnswerLookupFailed(Exception):
    """Slack couldn't be asked whether a cut-off stream already posted this answer; starting
    another could double it, so the job fails and is retried."""


class _Ledger(Protocol):
    async def message_ts(self, session: Session, slot: str) -> str | None: ...

    async def record_message(self, session: Session, slot: str, ts: str) -> str: ...

    async def note_message(self, session: Session, slot: str, value: str) -> None: ...


class StreamGateway(Protocol):
    """What this module needs of ``bot.slack.gateway.SlackGateway`` (which builds it)."""

    @property
    def client(self) -> AsyncWebClient: ...

    @property
    def ledger(self) -> _Ledger: ...

    async def call(self, method: str, *, wait_on_429: bool = True, **kwargs: Any) -> Any: ...

    async def post_once(
        self,
        session: Session,
        slot: str,
        msg: Rendered,
        *,
        thread_ts: str | None,
        recover: bool = False,
        fresh: bool = False,
    ) -> str: ...

    async def update(
        self,
        session: Session,
        ts: str,
        msg: Rendered,
        *,
        best_effort: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> None: ...

    async def delete(self, session: Session, ts: str) -> None: ...

    def delivery_metadata(self, session: Session, slot: str) -> dict[str, Any]: ...


def _error(exc: SlackApiError) -> str:
    return str(exc.response.get("error", ""))


def _retry_after(exc: SlackApiError) -> float:
    try:
        return max(1.0, float(exc.response.headers.get("Retry-After", 1) or 1))
    except (TypeError, ValueError):
        return 1.0


def _ignore(_point: str) -> None:
    return None


class AnswerStreams:
    """Opens answers (``open``) and remembers what it learnt: workspaces that can't stream,
    and who the bot is (for adopting a cut-off stream)."""

    def __init__(
        self,
        gateway: StreamGateway,
        *,
        append_interval_s: float = APPEND_INTERVAL_S,
        edit_interval_s: float = EDIT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gateway = gateway
        self.append_interval_s = append_interval_s
        self.edit_interval_s = edit_interval_s
        self.clock = clock
        self.refused: dict[str, str] = {}  # team → the error that said it can't stream
        self._me: dict[str, tuple[str, str]] = {}  # token → (bot user id, bot id)

    async def open(
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
        """The answer for ``slot``, taking over a message an earlier attempt began."""
        answer = StreamedAnswer(
            self,
            session,
            slot,
            recipient_id=recipient_id,
            after_ts=after_ts,
            draft=draft,
            stream=stream and session.team_id not in self.refused,
            recover=recover,
            reach=reach or _ignore,
        )
        await answer.resume(earlier)
        return answer

    async def orphan(self, session: Session, after_ts: str) -> str | None:
        """Our message in the thread after ``after_ts`` with no metadata and no files: a stream
        whose ts was never recorded (every other message of ours carries its slot)."""
        user_id, bot_id = await self._identity()
        try:
            resp = await self.gateway.client.conversations_replies(
                channel=session.channel_id,
                ts=session.thread_ts or after_ts,
                oldest=after_ts,
                include_all_metadata=True,
                limit=200,
            )
        except (SlackApiError, *_TRANSIENT) as exc:
            raise AnswerLookupFailed(str(exc)) from None
        for message in resp.get("messages") or []:
            ts = str(message.get("ts") or "")
            if not ts or ts == session.thread_ts or float(ts) <= float(after_ts):
                continue
            ours = (bot_id and message.get("bot_id") == bot_id) or (
                user_id and message.get("user") == user_id
            )
            if ours and not message.get("metadata") and not message.get("files"):
                return ts
        return None

    async def _identity(self) -> tuple[str, str]:
        # Per token: with OAuth each workspace has its own bot user.
        key = self.gateway.client.token or ""
        me = self._me.get(key)
        if me is None:
            try:
                resp = await self.gateway.call("auth_test")
            except (SlackApiError, *_TRANSIENT) as exc:
                raise AnswerLookupFailed(f"auth.test: {exc}") from None
            me = (str(resp.get("user_id") or ""), str(resp.get("bot_id") or ""))
            self._me = {**self._me, key: me}
        return me


class StreamedAnswer:
    """One answer on its way into Slack (``bot.jobs.ports.AnswerDraft``): ``show`` the text so
    far as often as it grows, then ``finish`` with the final message."""

    def __init__(
        self,
        streams: AnswerStreams,
        session: Session,
        slot: str,
        *,
        recipient_id: str,
        after_ts: str,
        draft: Callable[[str], Rendered],
        stream: bool,
        recover: bool,
        reach: Callable[[str], None],
    ) -> None:
        self.streams = streams
        self.gateway = streams.gateway
        self.session = session
        self.slot = slot
        self.recipient_id = recipient_id
        self.after_ts = after_ts
        self.draft = draft
        self.stream = stream
        self.recover = recover
        self.reach = reach
        self.ts: str | None = None
        self.live = False  # a stream this attempt started and appends to
        self.maybe_live = False  # an earlier attempt's stream: stop it before editing
        self.sent = ""  # raw text streamed so far
        self.latest = ""  # raw text last shown
        self.frozen = False  # no more appends (the text started over, or the stream ended)
        self.next_at = 0.0
        self.appends = 0
        self.edits = 0

    # --- taking over what an earlier attempt began ------------------------------------------
    async def resume(self, earlier: Sequence[str]) -> None:
        ledger, s = self.gateway.ledger, self.session
        known = await ledger.message_ts(s, self.slot)
        marked = bool(await ledger.message_ts(s, self.slot + STREAM_MARK))
        if known:
            self.ts, self.maybe_live = known, marked
            return
        for other in earlier:
            if not await ledger.message_ts(s, other + STREAM_MARK):
                continue
            marked = True
            began = await ledger.message_ts(s, other)
            if began:
                await self._adopt(began, f"begun for {other}")
                return
        # A mark alone doesn't mean a stream began: a reply's intake sets it before any job
        # ran (bot/pipeline/slots.py). Only an earlier attempt (``recover``) or another reply's
        # job that answered this one with it (``earlier``: this job answers several) can have
        # begun one; a first attempt answering one reply looks nowhere (no Slack call).
        if marked and (self.recover or earlier):
            found = await self.streams.orphan(s, self.after_ts)
            if found:
                await self._adopt(found, "found in the thread")

    async def _adopt(self, ts: str, how: str) -> None:
        self.ts = await self.gateway.ledger.record_message(self.session, self.slot, ts)
        self.maybe_live = True
        log.info("answer %s takes over message %s (%s)", self.slot, self.ts, how)

    # --- while the LLM writes ---------------------------------------------------------------
    async def show(self, text: str) -> None:
        """Show the answer's text so far (as often as it grows; this throttles)."""
        self.latest = text
        if not text.strip():
            return
        if self.ts is None:
            if not (self.stream and await self._start(text)):
                await self._place(text)
            return
        now = self.streams.clock()
        if now < self.next_at:
            return
        if self.live:
            await self._append(text, now)
        else:
            await self._edit(text, now)

    async def _start(self, text: str) -> bool:
        ledger, mark = self.gateway.ledger, self.slot + STREAM_MARK
        # A reply's mark is usually there already: its intake set it (bot/pipeline/slots.py),
        # and the job's view (read with its lease) says so without a round trip.
        if not await ledger.message_ts(self.session, mark):
            await ledger.note_message(self.session, mark, "1")
        # Shielded, like post_once's post: if this job is stopped (its lease lost) while the
        # call is in flight, the stream Slack started is still recorded here — or, when another
        # worker won the slot meanwhile, ended and deleted — never left behind unrecorded.
        return await asyncio.shield(self._begin(text[:APPEND_MAX_RAW]))

    async def _begin(self, piece: str) -> bool:
        s = self.session
        try:
            resp = await self.gateway.call(
                "chat_startStream",
                wait_on_429=False,
                channel=s.channel_id,
                thread_ts=s.thread_ts,
                recipient_user_id=self.recipient_id,
                recipient_team_id=s.team_id,
                markdown_text=escape(piece),
            )
        except SlackApiError as exc:
            return await self._not_started(exc)
        except _TRANSIENT as exc:
            log.warning("chat.startStream for %s failed (%s); checking Slack", self.slot, exc)
            return await self._adopt_orphan()
        ts = str(resp["ts"])
        self.reach("stream_started")
        winner = await self.gateway.ledger.record_message(s, self.slot, ts)
        if winner != ts:
            # Another worker recorded a message for this slot while we were paused: ours goes.
            log.warning("slot %s was begun by another worker; ending our stream", self.slot)
            await self._stop(ts, None)
            await self.gateway.delete(s, ts)
            self.ts, self.maybe_live = winner, True
            return True
        self.ts, self.live, self.sent = ts, True, piece
        self.next_at = self.streams.clock() + self.streams.append_interval_s
        return True

    async def _not_started(self, exc: SlackApiError) -> bool:
        error, status = _error(exc), exc.response.status_code
        team = self.session.team_id
        if status == 429:
            log.info("chat.startStream rate limited; answer %s is shown by edits", self.slot)
            return False
        if status >= 500:
            log.warning(
                "chat.startStream for %s failed (HTTP %d); checking Slack", self.slot, status
            )
            return await self._adopt_orphan()
        if error in REFUSALS:
            self.streams.refused[team] = error
            log.warning("workspace %s can't stream answers (%s): using edits from now", team, error)
        else:
            log.warning("chat.startStream for %s refused (%s); using edits", self.slot, error)
        return False

    async def _adopt_orphan(self) -> bool:
        found = await self.streams.orphan(self.session, self.after_ts)
        if found is None:
            return False
        await self._adopt(found, "started although its answer was lost")
        return True

    async def _append(self, text: str, now: float) -> None:
        if self.frozen:
            return
        if not text.startswith(self.sent) or len(self.sent) >= STREAM_BUDGET:
            self.frozen = True  # an LLM retry started over, or enough is shown: finish() shows all
            return
        piece = text[len(self.sent) :][:APPEND_MAX_RAW]
        if not piece:
            return
        try:
            await self.gateway.call(
                "chat_appendStream",
                wait_on_429=False,
                channel=self.session.channel_id,
                ts=self.ts,
                markdown_text=escape(piece),
            )
        except SlackApiError as exc:
            if exc.response.status_code == 429:
                self.next_at = now + _retry_after(exc)  # the text waits; nothing is lost
                return
            if _error(exc) not in _ENDED:
                log.warning("chat.appendStream %s failed: %s", self.ts, _error(exc))
            self.frozen = True
            return
        except _TRANSIENT as exc:
            # It may have landed: appending again could show text twice. finish() shows it all.
            log.info("chat.appendStream %s failed (%s); no more appends", self.ts, exc)
            self.frozen = True
            return
        self.sent += piece
        self.appends += 1
        self.next_at = self.streams.clock() + self.streams.append_interval_s
        self.reach("mid_stream")

    async def _place(self, text: str) -> None:
        """Edits instead of a stream: the answer's one message, posted with the text so far."""
        self.ts = await self.gateway.post_once(
            self.session,
            self.slot,
            self.draft(text),
            thread_ts=self.session.thread_ts,
            recover=self.recover,
        )
        self.next_at = self.streams.clock() + self.streams.edit_interval_s

    async def _edit(self, text: str, now: float) -> None:
        if self.maybe_live:
            await self._stop(self.ts or "", None)  # an earlier attempt's stream ends here
            self.maybe_live = False
        self.next_at = now + self.streams.edit_interval_s
        msg = self.draft(text)
        try:
            await self.gateway.call(
                "chat_update",
                wait_on_429=False,
                channel=self.session.channel_id,
                ts=self.ts,
                text=msg.text,
                blocks=msg.blocks,
            )
        except SlackApiError as exc:
            if exc.response.status_code == 429:
                self.next_at = now + _retry_after(exc)
            else:
                log.info("progress edit of %s skipped: %s", self.ts, _error(exc))
            return
        except _TRANSIENT as exc:
            log.info("progress edit of %s skipped: %s", self.ts, exc)
            return
        self.edits += 1

    # --- the end ----------------------------------------------------------------------------
    async def finish(self, msg: Rendered) -> str:
        """End the stream (if any) and give the message its final form; returns its ts."""
        s = self.session
        if self.ts is None:
            # Nothing shown yet (a cached answer, or one without text): post it as it is.
            self.ts = await self.gateway.post_once(
                s, self.slot, msg, thread_ts=s.thread_ts, recover=self.recover
            )
            return self.ts
        if self.live:
            rest = None
            if not self.frozen and self.latest.startswith(self.sent):
                room = max(0, STREAM_BUDGET - len(self.sent))
                rest = escape(self.latest[len(self.sent) :][: min(room, APPEND_MAX_RAW)])
            await self._stop(self.ts, rest or None)
            self.live = False
        elif self.maybe_live:
            await self._stop(self.ts, None)
        self.maybe_live = False
        await self.gateway.update(
            s, self.ts, msg, metadata=self.gateway.delivery_metadata(s, self.slot)
        )
        return self.ts

    async def _stop(self, ts: str, rest: str | None) -> None:
        """chat.stopStream (a 429 is waited out: a streaming message can't be edited); a stream
        that is already over is fine."""
        kwargs: dict[str, Any] = {"channel": self.session.channel_id, "ts": ts}
        if rest:
            kwargs["markdown_text"] = rest
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await self.gateway.call("chat_stopStream", **kwargs)
                return
            except SlackApiError as exc:
                if _error(exc) not in _ENDED:
                    log.warning("chat.stopStream %s failed: %s", ts, _error(exc))
                return
            except _TRANSIENT as exc:
                log.info("chat.stopStream %s failed (%s), attempt %d", ts, exc, attempt)
                await asyncio.sleep(0.2 * attempt)
