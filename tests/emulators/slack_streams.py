"""Slack's chat streaming for the emulator: ``chat.startStream`` / ``appendStream`` /
``stopStream``, streamed messages' state, and the methods' rate tiers.

Why a module of its own: a streamed message has a life the rest of the emulator doesn't know —
it exists in the thread from the first call, grows with every append, can't be edited while it
streams, and ends (stopped, or after about five minutes) as a normal message. Storyloop's answer
streaming (``bot/slack/streams.py``) is built around exactly those rules and their errors, so
they are kept here where they can be read on their own. ``SlackEmulator`` only routes the three
methods here and asks :meth:`ChatStreams.check_update` before a ``chat.update``.

The behaviour (SLACK.md §4.3 "Streaming", the methods' reference pages; each pinned by a test
in ``tests/integration/test_slack_streams.py``):

- ``chat.startStream``: ``channel`` (the workspace's rules, as for ``chat.postMessage``:
  ``not_in_channel``, ``channel_not_found``), ``thread_ts`` required (missing →
  ``invalid_arguments``, not a live message of the channel → ``invalid_thread_ts``; a reply's
  ts is filed under its root, like ``chat.postMessage``); outside DMs ``recipient_user_id`` and
  ``recipient_team_id`` are required (``missing_recipient_user_id`` /
  ``missing_recipient_team_id``), an unknown user is ``user_not_found`` and another team
  ``team_not_found``. Optional first text. The message exists at once: ``conversations.replies``
  shows it (its text so far, no blocks, no metadata) and the app gets a ``message`` event.
- ``chat.appendStream``: ``channel``, ``ts`` and text (``no_text`` without any);
  ``message_not_found``, ``message_not_owned_by_app`` (a message another app or a person
  posted), ``message_not_in_streaming_state`` (stopped, posted normally rather than streamed,
  or older than :attr:`ChatStreams.lifetime_s`: Slack ends a stream about five minutes after
  it began — reported by people who measured it, not documented), ``stopped_by_user`` after
  :meth:`ChatStreams.press_stop`.
- ``chat.stopStream``: optional last text, ``blocks`` (kept as the message's blocks — Slack
  renders them below the streamed text) and ``metadata``; the message leaves streaming state
  and the app gets ``message_changed``. Same errors as appendStream.
- Text comes as ``markdown_text`` or ``chunks``: ``[{"type": "markdown_text", "text": …}]``
  (slack_sdk ≥ 3.40 sends these; an empty list is what its ``stop()`` sends) — other chunk
  types (``task_update``, ``plan_update``) are accepted and add no text; a chunk that isn't an
  object with a string ``type``, or a ``markdown_text`` chunk without string ``text``, is
  ``invalid_chunks``. More than 12,000 characters in one call → ``msg_too_long`` (per call, not
  in total — as measured by others; the docs say only "limit this field to 12,000").
- ``chat.update`` of a message in streaming state → ``streaming_state_conflict``.
- :attr:`ChatStreams.refuse`: every ``chat.startStream`` answers ``ok: false`` with that error.
  Which error Slack gives a workspace or app that can't stream is undocumented; the tests use
  ``feature_not_enabled``.
- :attr:`ChatStreams.rate_limits`: ``{method: (calls, per_seconds)}`` per workspace (all
  channels together); beyond it HTTP 429, ``Retry-After`` = whole seconds until the oldest call
  leaves the window, body ``{"ok": false, "error": "ratelimited"}``.
  :meth:`ChatStreams.enforce_tiers` sets the documented tiers: startStream and stopStream Tier
  2 (20/min), appendStream Tier 4 (100/min).
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.emulators import slack_payloads as payloads
from tests.emulators.slack_state import JSON, ApiError, StoredMessage

if TYPE_CHECKING:
    from tests.emulators.slack import SlackEmulator

__all__ = [
    "APPEND_STREAM",
    "START_STREAM",
    "STOP_STREAM",
    "TIERS",
    "ChatStreams",
    "StreamState",
]

START_STREAM = "chat.startStream"
APPEND_STREAM = "chat.appendStream"
STOP_STREAM = "chat.stopStream"
MAX_MARKDOWN = 12_000
#: Slack ends a stream about five minutes after it began (measured by others, not documented).
DEFAULT_LIFETIME_S = 300.0
#: The documented tiers: Tier 2 is 20+ calls a minute, Tier 4 100+.
TIERS: dict[str, tuple[int, float]] = {
    START_STREAM: (20, 60.0),
    APPEND_STREAM: (100, 60.0),
    STOP_STREAM: (20, 60.0),
}


@dataclass
class StreamState:
    """One streamed message: when it began, what was appended, and how it ended."""

    channel: str
    ts: str
    recipient_user_id: str | None
    started_at: float = field(default_factory=time.monotonic)
    pieces: list[str] = field(default_factory=list)  # text of each call, in order
    stopped: bool = False
    stopped_by_user: bool = False


def _str(params: JSON, key: str) -> str | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    return str(value)


def _json(params: JSON, key: str) -> Any:
    """A structured param: JSON bodies carry lists, form/query bodies carry JSON strings."""
    value = params.get(key)
    if not isinstance(value, str):
        return value
    if value == "":
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ApiError("invalid_chunks") from exc


class ChatStreams:
    """The streaming methods of one emulated workspace (``emu.streams``)."""

    def __init__(self, emu: SlackEmulator) -> None:
        self._emu = emu
        #: If set, chat.startStream answers ok:false with this error (e.g. "feature_not_enabled").
        self.refuse: str | None = None
        #: A stream older than this is over (message_not_in_streaming_state; edits work again).
        self.lifetime_s = DEFAULT_LIFETIME_S
        #: ``{method: (calls, per_seconds)}``; see :meth:`enforce_tiers`.
        self.rate_limits: dict[str, tuple[int, float]] = {}
        #: Every stream, by ``(channel, ts)``, in starting order.
        self.streams: dict[tuple[str, str], StreamState] = {}
        self._accepted: dict[str, deque[float]] = {}

    # --- knobs and queries ------------------------------------------------------------------
    def enforce_tiers(self, scale: float = 1.0) -> None:
        """Rate-limit the three methods by their documented tiers (``scale`` < 1 shortens the
        window, for tests that can't wait a minute: the same calls in ``60 * scale`` seconds)."""
        self.rate_limits = {m: (calls, per * scale) for m, (calls, per) in TIERS.items()}

    def press_stop(self, channel: str, ts: str) -> None:
        """The user pressed Stop on a streaming message: later appends get stopped_by_user."""
        self.streams[(channel, ts)].stopped_by_user = True

    def is_streaming(self, channel: str, ts: str) -> bool:
        state = self.streams.get((channel, ts))
        return state is not None and self._live(state)

    def streamed_text(self, channel: str, ts: str) -> str:
        """Everything streamed into a message (what it showed before any chat.update)."""
        state = self.streams.get((channel, ts))
        return "".join(state.pieces) if state else ""

    # --- hooks for SlackEmulator ------------------------------------------------------------
    def retry_after(self, method: str) -> float | None:
        """Seconds to wait if ``method`` is over its rate limit now; else None (the call is
        counted)."""
        limit = self.rate_limits.get(method)
        if limit is None:
            return None
        calls, per = limit
        now = time.monotonic()
        accepted = self._accepted.setdefault(method, deque())
        while accepted and now - accepted[0] >= per:
            accepted.popleft()
        if len(accepted) >= calls:
            return max(1.0, math.ceil(per - (now - accepted[0])))
        accepted.append(now)
        return None

    def check_update(self, msg: StoredMessage) -> None:
        """chat.update can't edit a message while it streams."""
        state = self.streams.get((msg.channel, msg.ts))
        if state is not None and self._live(state):
            raise ApiError("streaming_state_conflict")

    # --- the methods ------------------------------------------------------------------------
    def start_stream(self, params: JSON) -> JSON:
        emu = self._emu
        if self.refuse:
            raise ApiError(self.refuse)
        channel = emu._require_channel(params, need_membership=True)
        thread_ts = _str(params, "thread_ts")
        if thread_ts is None:
            raise ApiError(
                "invalid_arguments",
                response_metadata={"messages": ["[ERROR] missing required field: thread_ts"]},
            )
        root = emu.workspace.thread_root_ts(channel.id, thread_ts)
        if root is None:
            raise ApiError("invalid_thread_ts")
        user, team = _str(params, "recipient_user_id"), _str(params, "recipient_team_id")
        if not channel.id.startswith("D"):
            if user is None:
                raise ApiError("missing_recipient_user_id")
            if team is None:
                raise ApiError("missing_recipient_team_id")
        if user is not None and user not in emu.workspace.users:
            raise ApiError("user_not_found")
        if team is not None and team != emu.team_id:
            raise ApiError("team_not_found")
        text = self._text(params)
        msg = emu.workspace.store(
            StoredMessage(
                channel=channel.id,
                ts=emu.workspace.clock.next(),
                user=emu.bot_user_id,
                text=text,
                thread_ts=root,
                bot_id=emu.bot_id,
                app_id=emu.app_id,
                source=START_STREAM,
            )
        )
        state = StreamState(channel.id, msg.ts, user, pieces=[text] if text else [])
        self.streams[(channel.id, msg.ts)] = state
        emu._echo(
            payloads.message_event(
                msg,
                channel_type=channel.channel_type,
                team_id=emu.team_id,
                parent_user_id=emu._parent_user(msg),
                bot_name=emu.bot_name,
            )
        )
        return {"channel": channel.id, "ts": msg.ts}

    def append_stream(self, params: JSON) -> JSON:
        msg, state = self._streaming(params)
        text = self._text(params)
        if not text and not self._chunks(params):
            raise ApiError("no_text")
        self._grow(msg, state, text)
        return {"channel": msg.channel, "ts": msg.ts}

    def stop_stream(self, params: JSON) -> JSON:
        emu = self._emu
        msg, state = self._streaming(params)
        text = self._text(params)
        has_blocks = params.get("blocks") not in (None, "", "[]", [])
        blocks = emu._blocks(params) if has_blocks else None
        metadata = emu._metadata(params)
        previous = payloads.message_body(msg, team_id=emu.team_id, bot_name=emu.bot_name)
        self._grow(msg, state, text)
        if blocks is not None:
            msg.blocks = blocks
        if metadata is not None:
            msg.metadata = metadata
        state.stopped = True
        emu._echo(
            payloads.message_changed_event(
                msg,
                previous,
                event_ts=emu.workspace.clock.next(),
                channel_type=emu.workspace.channels[msg.channel].channel_type,
                team_id=emu.team_id,
                bot_name=emu.bot_name,
            )
        )
        return {"channel": msg.channel, "ts": msg.ts, "message": emu.workspace.to_api(msg)}

    # --- helpers ----------------------------------------------------------------------------
    def _live(self, state: StreamState) -> bool:
        if state.stopped:
            return False
        if time.monotonic() - state.started_at >= self.lifetime_s:
            state.stopped = True  # Slack ended it
            return False
        return True

    def _streaming(self, params: JSON) -> tuple[StoredMessage, StreamState]:
        emu = self._emu
        channel = emu._require_channel(params, need_membership=True)
        msg = emu.workspace.message(channel.id, _str(params, "ts") or "")
        if msg is None or msg.deleted:
            raise ApiError("message_not_found")
        if msg.app_id != emu.app_id:
            raise ApiError("message_not_owned_by_app")
        state = self.streams.get((channel.id, msg.ts))
        if state is None:
            raise ApiError("message_not_in_streaming_state")  # ours, but posted, not streamed
        if state.stopped_by_user and not state.stopped:
            raise ApiError("stopped_by_user")
        if not self._live(state):
            raise ApiError("message_not_in_streaming_state")
        return msg, state

    @staticmethod
    def _grow(msg: StoredMessage, state: StreamState, text: str) -> None:
        if text:
            state.pieces.append(text)
            msg.text += text

    def _chunks(self, params: JSON) -> list[JSON]:
        chunks = _json(params, "chunks")
        if chunks is None:
            return []
        if not isinstance(chunks, list):
            raise ApiError("invalid_chunks")
        for chunk in chunks:
            if not isinstance(chunk, dict) or not isinstance(chunk.get("type"), str):
                raise ApiError("invalid_chunks")
            if chunk["type"] == "markdown_text" and not isinstance(chunk.get("text"), str):
                raise ApiError("invalid_chunks")
        return chunks

    def _text(self, params: JSON) -> str:
        """The text one call adds: ``markdown_text``, then any markdown_text chunks."""
        text = _str(params, "markdown_text") or ""
        text += "".join(
            str(c["text"]) for c in self._chunks(params) if c.get("type") == "markdown_text"
        )
        if len(text) > MAX_MARKDOWN:
            raise ApiError("msg_too_long")
        return text
