"""The local Slack, watched: every post and edit an app makes, with the moment it became visible.

``BenchEmulator`` is the tests' ``SlackEmulator`` plus a change log per channel and waiters that
wake when a matching change lands, so hundreds of scripted sessions can wait for "the story has
its buttons" without polling the whole workspace every 20 ms.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.e2e.harness import action_ids, block_text, slot_of
from tests.emulators.slack import AckResult, SlackEmulator, StoredMessage
from tests.emulators.slack_state import ResponseUrl

JSON = dict[str, Any]
_VERSION = re.compile(r"Story v(\d+)")


@dataclass(frozen=True)
class Change:
    """One successful post/edit/delete by the app, as the emulator applied it."""

    at: float  # time.monotonic() when the emulator applied it (the moment users could see it)
    method: str  # chat.postMessage | chat.update | chat.delete | ephemeral
    channel: str
    ts: str
    thread_ts: str | None
    slot: str | None  # the delivery slot from the message metadata (Storyloop and baseline)
    actions: tuple[str, ...]  # action ids of the message's buttons after the change
    regenerating: bool  # the message says "Regenerating…"
    version: int | None  # "Story vN" shown, if any
    message: StoredMessage | None  # the live message (its *current* state, for clicking)
    text: str = ""  # ephemerals only: what the one user was told

    @property
    def is_post(self) -> bool:
        """A new message: posted, or a streamed one (its first change carrying its slot)."""
        return self.method in ("chat.postMessage", "chat.startStream")

    @property
    def is_ephemeral(self) -> bool:
        return self.method == "ephemeral"


Predicate = Callable[[Change], bool]


class BenchEmulator(SlackEmulator):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.changes: dict[str, list[Change]] = defaultdict(list)
        self._waiters: dict[str, list[tuple[Predicate, asyncio.Future[Change]]]] = defaultdict(list)
        #: Ack of each human message delivery, by (channel, ts).
        self.message_acks: dict[tuple[str, str], AckResult] = {}
        #: Every delivery: (sent at, command|click|reply|echo, ack seconds, acked in time).
        self.ack_log: list[tuple[float, str, float, bool]] = []
        #: Streamed answers not yet given their slot: (channel, ts) → when the stream started.
        self._streamed: dict[tuple[str, str], float] = {}
        start_stream = self._methods["chat.startStream"]

        def observed_start(params: JSON) -> JSON:
            result = start_stream(params)
            self._streamed[(str(result["channel"]), str(result["ts"]))] = time.monotonic()
            return result

        self._methods["chat.startStream"] = observed_start

    async def start(self, port: int = 0) -> BenchEmulator:
        await super().start(port)
        # Slack has no client-side connection cap. aiohttp's default (100 per session) would
        # queue HTTP-mode deliveries inside the emulator and count that wait as ack latency.
        if self._session is not None:
            await self._session.close()
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self

    # --- channels ----------------------------------------------------------------------------
    def ensure_channel(self, channel: str) -> None:
        if channel not in self.channels:
            self.add_channel(channel, name=f"bench-{channel.lower()}")

    # --- hooks on the Web API methods that change what users see -----------------------------
    def _chat_post_message(self, params: JSON) -> JSON:
        result = super()._chat_post_message(params)
        self._observe("chat.postMessage", str(result["channel"]), str(result["ts"]))
        return result

    def _chat_update(self, params: JSON) -> JSON:
        result = super()._chat_update(params)
        channel, ts = str(result["channel"]), str(result["ts"])
        started = self._streamed.pop((channel, ts), None)
        if started is not None:
            # A streamed answer gets its slot (metadata) when it is finished: it was visible
            # from the stream's start, so that is when it counts as posted.
            self._observe("chat.startStream", channel, ts, at=started)
        self._observe("chat.update", channel, ts)
        return result

    def _chat_delete(self, params: JSON) -> JSON:
        result = super()._chat_delete(params)
        self._observe("chat.delete", str(result["channel"]), str(result["ts"]))
        return result

    def _chat_post_ephemeral(self, params: JSON) -> JSON:
        result = super()._chat_post_ephemeral(params)
        self._notify(self._ephemeral(str(params.get("channel")), str(params.get("text") or "")))
        return result

    def _apply_response(self, ctx: ResponseUrl, body: JSON) -> None:
        super()._apply_response(ctx, body)
        if body.get("response_type") != "in_channel":
            self._notify(self._ephemeral(ctx.channel, str(body.get("text") or "")))

    @staticmethod
    def _ephemeral(channel: str, text: str) -> Change:
        return Change(
            at=time.monotonic(),
            method="ephemeral",
            channel=channel,
            ts="",
            thread_ts=None,
            slot=None,
            actions=(),
            regenerating=False,
            version=None,
            message=None,
            text=text[:300],
        )

    async def _deliver(self, kind: str, payload: JSON, **kwargs: Any) -> AckResult:
        sent = time.monotonic()
        result = await super()._deliver(kind, payload, **kwargs)
        what = {"slash_commands": "command", "interactive": "click"}.get(kind, kind)
        if kind == "events_api":
            event = payload.get("event") or {}
            human = not event.get("bot_id") and not event.get("subtype") and event.get("ts")
            what = "reply" if human and event.get("thread_ts") else "echo"
            if human:
                self.message_acks[(str(event.get("channel")), str(event["ts"]))] = result
        self.ack_log.append((sent, what, result.seconds, result.ok))
        return result

    def _observe(self, method: str, channel: str, ts: str, *, at: float | None = None) -> None:
        msg = self.message(channel, ts)
        if msg is None:
            return
        text = block_text(msg) if method != "chat.delete" else ""
        found = _VERSION.search(text)
        change = Change(
            at=time.monotonic() if at is None else at,
            method=method,
            channel=channel,
            ts=ts,
            thread_ts=msg.thread_ts,
            slot=slot_of(msg),
            actions=tuple(action_ids(msg)) if method != "chat.delete" else (),
            regenerating="Regenerating" in text,
            version=int(found.group(1)) if found else None,
            message=msg,
        )
        self._notify(change)

    def _notify(self, change: Change) -> None:
        channel = change.channel
        self.changes[channel].append(change)
        waiters = self._waiters.get(channel)
        if not waiters:
            return
        for entry in list(waiters):
            predicate, future = entry
            if not future.done() and predicate(change):
                future.set_result(change)
                waiters.remove(entry)

    # --- waiting -------------------------------------------------------------------------------
    async def wait_change(
        self, channel: str, predicate: Predicate, *, after: float, timeout: float
    ) -> Change | None:
        """The first change in ``channel`` at or after ``after`` matching ``predicate``.

        Returns ``None`` after ``timeout`` seconds (never raises for a timeout).
        """
        for change in self.changes.get(channel, ()):
            if change.at >= after and predicate(change):
                return change
        if timeout <= 0:
            return None
        future: asyncio.Future[Change] = asyncio.get_running_loop().create_future()

        def guarded(change: Change) -> bool:
            return change.at >= after and predicate(change)

        entry = (guarded, future)
        self._waiters[channel].append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
            if entry in self._waiters[channel]:
                self._waiters[channel].remove(entry)
