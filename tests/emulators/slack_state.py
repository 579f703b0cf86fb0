"""In-memory model of the emulated Slack workspace, plus Block Kit validation.

Kept apart from the HTTP/WebSocket plumbing in ``slack.py`` so that the workspace rules
(who may post where, what a thread is, which blocks Slack rejects) can be read on their own.
Everything here is synchronous and side-effect free except for mutating the records.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


class ApiError(Exception):
    """Raised by Web API method handlers; becomes ``{"ok": false, "error": ...}``.

    Lives here, not in ``slack.py``, so method modules such as ``slack_files.py`` can raise
    it without importing the server module.
    """

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


@dataclass
class Channel:
    """A conversation of the emulated workspace; membership decides errors (SLACK.md §4)."""

    id: str
    name: str
    is_private: bool = False
    bot_is_member: bool = True

    @property
    def channel_type(self) -> str:
        """Value of ``channel_type`` in message events: ``channel`` (public) or ``group``."""
        return "group" if self.is_private else "channel"

    def to_api(self) -> JSON:
        """Shape returned by ``conversations.info`` / ``conversations.join``."""
        return {
            "id": self.id,
            "name": self.name,
            "is_channel": not self.is_private,
            "is_group": self.is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": self.is_private,
            "is_archived": False,
            "is_general": False,
            "is_member": self.bot_is_member,
            "created": 1767225600,
        }


@dataclass
class User:
    """A workspace member; humans are auto-registered the first time a test uses them."""

    id: str
    name: str
    real_name: str = ""
    is_bot: bool = False
    tz: str = "Etc/UTC"
    is_admin: bool = False  # a workspace admin (users.info ``is_admin``)
    is_owner: bool = False  # a workspace owner (``is_owner``)

    def to_api(self, team_id: str) -> JSON:
        """Minimal ``users.info`` user object (SLACK.md §4.3)."""
        real = self.real_name or self.name.title()
        return {
            "id": self.id,
            "team_id": team_id,
            "name": self.name,
            "real_name": real,
            "is_bot": self.is_bot,
            "is_admin": self.is_admin,
            "is_owner": self.is_owner,
            "deleted": False,
            "tz": self.tz,
            "profile": {"display_name": self.name, "real_name": real},
        }


@dataclass
class MessageVersion:
    """One superseded version of a message; ``replaced_at_ts`` is the edit's own ts."""

    text: str
    blocks: list[JSON] | None
    replaced_at_ts: str
    replaced_by: str


@dataclass
class StoredMessage:
    """A message as Slack stores it; ``history`` holds every version replaced by an edit."""

    channel: str
    ts: str
    user: str
    text: str
    thread_ts: str | None = None
    bot_id: str | None = None
    app_id: str | None = None
    blocks: list[JSON] | None = None
    attachments: list[JSON] | None = None
    #: File objects of a file share (files.completeUploadExternal); ``None`` otherwise.
    files: list[JSON] | None = None
    metadata: JSON | None = None
    client_msg_id: str | None = None
    reply_broadcast: bool = False
    source: str = "chat.postMessage"
    history: list[MessageVersion] = field(default_factory=list)
    edited: JSON | None = None
    deleted: bool = False
    reactions: dict[str, list[str]] = field(default_factory=dict)
    posted_at: float = field(default_factory=time.monotonic)

    @property
    def is_bot(self) -> bool:
        """True for messages posted through the Web API with the bot token."""
        return self.bot_id is not None

    @property
    def is_reply(self) -> bool:
        """True for thread replies (``thread_ts`` set and different from ``ts``)."""
        return self.thread_ts is not None and self.thread_ts != self.ts


@dataclass
class Ephemeral:
    """An ephemeral message: only ``user`` saw it; never visible in history APIs."""

    channel: str
    user: str
    text: str
    blocks: list[JSON] | None
    thread_ts: str | None
    message_ts: str
    source: str = "chat.postEphemeral"
    replaced: bool = False
    deleted: bool = False
    posted_at: float = field(default_factory=time.monotonic)


@dataclass
class ResponsePost:
    """One POST the app made to a loopback ``response_url``."""

    url_id: str
    url: str
    body: JSON
    status: int
    posted_at: float = field(default_factory=time.monotonic)

    @property
    def text(self) -> str:
        """The ``text`` field of the posted body (empty string if absent)."""
        return str(self.body.get("text", ""))

    @property
    def blocks(self) -> list[JSON] | None:
        """The ``blocks`` field of the posted body, if any."""
        blocks = self.body.get("blocks")
        return blocks if isinstance(blocks, list) else None


@dataclass
class ApiCall:
    """One Web API request as the emulator received it (recorded before faults are applied)."""

    method: str
    params: JSON
    token: str | None
    at: float
    http_method: str = "POST"
    status: int = 200
    ok: bool = False
    error: str | None = None
    response: JSON | None = None


@dataclass
class OpenedView:
    """A modal opened with ``views.open``/``views.push``; ``view`` is its current version."""

    id: str
    view: JSON
    trigger_id: str
    user: str | None
    hash: str
    external_id: str | None = None
    history: list[JSON] = field(default_factory=list)
    closed: bool = False
    root_view_id: str | None = None


@dataclass
class ResponseUrl:
    """Where a loopback ``response_url`` came from, so posts to it can act like Slack's."""

    url_id: str
    url: str
    channel: str
    user: str
    origin_message_ts: str | None = None
    origin_thread_ts: str | None = None
    origin_ephemeral: Ephemeral | None = None
    uses: int = 0


class AckResult(dict[str, Any]):
    """The app's answer to one delivery.

    The dict content is the ack payload (Socket Mode) or the parsed HTTP body (``{}`` when
    empty), so ``result["text"]`` reads like Slack would. Attributes carry what a test needs
    to judge the delivery: ``ok`` (acked in time / 2xx), ``seconds`` (latency), ``status``
    (HTTP status, ``None`` in Socket Mode or on timeout), ``transport``, ``kind``,
    ``envelope_id``, ``socket_id`` (which WebSocket carried it), ``retry_attempt``, ``error``
    (why it failed), ``raw`` and ``headers`` (HTTP only).
    """

    def __init__(
        self,
        body: JSON | None = None,
        *,
        kind: str,
        transport: str,
        ok: bool,
        seconds: float,
        status: int | None = None,
        envelope_id: str | None = None,
        retry_attempt: int = 0,
        error: str | None = None,
        raw: str | None = None,
        headers: dict[str, str] | None = None,
        socket_id: int | None = None,
    ) -> None:
        super().__init__(body or {})
        self.kind = kind
        self.transport = transport
        self.ok = ok
        self.seconds = seconds
        self.status = status
        self.envelope_id = envelope_id
        self.retry_attempt = retry_attempt
        self.error = error
        self.raw = raw
        self.headers = headers or {}
        self.socket_id = socket_id

    def __repr__(self) -> str:
        return (
            f"AckResult({dict(self)!r}, kind={self.kind!r}, transport={self.transport!r}, "
            f"ok={self.ok}, seconds={self.seconds:.3f}, status={self.status}, error={self.error!r})"
        )


@dataclass
class DeliveryRecord:
    """One delivery attempt to the app (first attempt or Slack-style redelivery)."""

    kind: str
    payload: JSON
    retry_attempt: int
    retry_reason: str
    result: AckResult


# ---------------------------------------------------------------------------------------------
# Workspace
# ---------------------------------------------------------------------------------------------


class TsClock:
    """Issues Slack ``ts`` strings: unique, strictly increasing, 100 µs apart.

    Deterministic on purpose (starts at 2026-01-01 by default) so test output is stable.
    """

    def __init__(self, start: float = 1767225600.0) -> None:
        self._micros = round(start * 1_000_000)

    def next(self) -> str:
        """Return the next ts string, e.g. ``"1767225600.000100"``."""
        self._micros += 100
        return f"{self._micros // 1_000_000}.{self._micros % 1_000_000:06d}"


def ts_key(ts: str) -> tuple[int, int]:
    """Sort key for ts strings (compare numerically, never as floats)."""
    sec, _, frac = ts.partition(".")
    return int(sec), int(frac.ljust(6, "0") or 0)


class Workspace:
    """Channels, users and messages of the emulated team, with Slack's visibility rules."""

    def __init__(self, *, team_id: str, bot_user_id: str, bot_id: str, app_id: str) -> None:
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.clock = TsClock()
        self.channels: dict[str, Channel] = {}
        self.users: dict[str, User] = {}
        self.messages: list[StoredMessage] = []
        self.ephemerals: list[Ephemeral] = []
        self._by_key: dict[tuple[str, str], StoredMessage] = {}

    # -- channels / users ---------------------------------------------------------------------

    def add_channel(self, channel: Channel) -> Channel:
        """Register (or replace) a channel."""
        self.channels[channel.id] = channel
        return channel

    def user(self, user_id: str) -> User:
        """Return the user, auto-registering unknown human ids (name = lower-cased id tail)."""
        if user_id not in self.users:
            name = user_id[2:].lower() if user_id.startswith("U0") else user_id.lower()
            self.users[user_id] = User(user_id, name or user_id.lower())
        return self.users[user_id]

    def channel_error(self, channel_id: str | None, *, need_membership: bool) -> str | None:
        """The Web API error a bot-token call on ``channel_id`` gets, or ``None`` if allowed.

        DMs are unsupported (always ``channel_not_found``); private channels the bot is not in
        are invisible; public ones answer ``not_in_channel`` when membership is needed.
        """
        if not channel_id or channel_id.startswith("D"):
            return "channel_not_found"
        channel = self.channels.get(channel_id)
        if channel is None:
            return "channel_not_found"
        if channel.is_private and not channel.bot_is_member:
            return "channel_not_found"
        if need_membership and not channel.bot_is_member:
            return "not_in_channel"
        return None

    # -- messages -----------------------------------------------------------------------------

    def store(self, message: StoredMessage) -> StoredMessage:
        """Append a message (its ts must be fresh from ``clock``)."""
        self.messages.append(message)
        self._by_key[(message.channel, message.ts)] = message
        return message

    def message(self, channel: str, ts: str) -> StoredMessage | None:
        """The message at ``(channel, ts)``, deleted or not."""
        return self._by_key.get((channel, ts))

    def find_by_ts(self, ts: str, channel: str | None = None) -> StoredMessage | None:
        """Find a live message by ts, optionally restricted to one channel."""
        for msg in reversed(self.messages):
            if msg.ts == ts and not msg.deleted and (channel is None or msg.channel == channel):
                return msg
        return None

    def thread_root_ts(self, channel: str, ts: str) -> str | None:
        """The root ts of the thread containing ``ts`` (``ts`` itself for a top-level message)."""
        msg = self.message(channel, ts)
        if msg is None or msg.deleted:
            return None
        return msg.thread_ts or msg.ts

    def replies(self, channel: str, root_ts: str) -> list[StoredMessage]:
        """Live replies of a thread (root excluded), in ts order."""
        found = [
            m
            for m in self.messages
            if m.channel == channel and m.thread_ts == root_ts and m.ts != root_ts and not m.deleted
        ]
        return sorted(found, key=lambda m: ts_key(m.ts))

    def thread(self, channel: str, thread_ts: str) -> list[StoredMessage]:
        """Root + live replies in ts order; the root is omitted if it was deleted."""
        root = self.message(channel, thread_ts)
        head = [root] if root is not None and not root.deleted else []
        return head + self.replies(channel, thread_ts)

    def top_level(self, channel: str) -> list[StoredMessage]:
        """Live channel-level messages (roots and broadcast replies), oldest first."""
        found = [
            m
            for m in self.messages
            if m.channel == channel and not m.deleted and (not m.is_reply or m.reply_broadcast)
        ]
        return sorted(found, key=lambda m: ts_key(m.ts))

    def to_api(self, msg: StoredMessage, *, include_metadata: bool = False) -> JSON:
        """The message object as ``conversations.replies``/``history``/``chat.*`` return it."""
        out: JSON = {"type": "message", "user": msg.user, "text": msg.text, "ts": msg.ts}
        out["team"] = self.team_id
        if msg.bot_id:
            out["bot_id"] = msg.bot_id
            out["app_id"] = msg.app_id
            out["bot_profile"] = {
                "id": msg.bot_id,
                "app_id": msg.app_id,
                "name": self.users[self.bot_user_id].name if self.bot_user_id in self.users else "",
                "team_id": self.team_id,
                "deleted": False,
            }
        if msg.client_msg_id:
            out["client_msg_id"] = msg.client_msg_id
        if msg.blocks is not None:
            out["blocks"] = msg.blocks
        if msg.attachments:
            out["attachments"] = msg.attachments
        if msg.files:
            out["files"] = msg.files
            out["upload"] = True
            out["display_as_bot"] = False
        if msg.is_reply:
            out["thread_ts"] = msg.thread_ts
            root = self.message(msg.channel, msg.thread_ts or "")
            if root is not None:
                out["parent_user_id"] = root.user
            if msg.reply_broadcast:
                out["subtype"] = "thread_broadcast"
        else:
            replies = self.replies(msg.channel, msg.ts)
            if replies:
                out["thread_ts"] = msg.ts
                out["reply_count"] = len(replies)
                users = list(dict.fromkeys(r.user for r in replies))
                out["reply_users"] = users
                out["reply_users_count"] = len(users)
                out["latest_reply"] = replies[-1].ts
        if msg.edited:
            out["edited"] = msg.edited
        if msg.reactions:
            out["reactions"] = [
                {"name": name, "users": users, "count": len(users)}
                for name, users in msg.reactions.items()
            ]
        if include_metadata and msg.metadata:
            out["metadata"] = msg.metadata
        return out


# ---------------------------------------------------------------------------------------------
# Block Kit validation (SLACK.md §5)
# ---------------------------------------------------------------------------------------------

MAX_AGGREGATE_BLOCK_TEXT = 12_000


class BlockError(Exception):
    """A Block Kit rule violation: ``error`` is the API error, ``detail`` the metadata line."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(f"{error}: {detail}")
        self.error = error
        self.detail = detail


def _err(rule: str, pointer: str) -> BlockError:
    return BlockError("invalid_blocks", f"[ERROR] {rule} [json-pointer:{pointer}]")


def _text_of(obj: Any) -> str:
    if isinstance(obj, dict):
        value = obj.get("text")
        return value if isinstance(value, str) else ""
    return ""


def _check_len(value: Any, limit: int, pointer: str) -> None:
    if isinstance(value, str) and len(value) > limit:
        raise _err(f"must be less than {limit + 1} characters", pointer)


def _check_element(element: Any, pointer: str) -> None:
    if not isinstance(element, dict) or "type" not in element:
        raise _err("must be an object with a type", pointer)
    _check_len(element.get("action_id"), 255, f"{pointer}/action_id")
    if element["type"] == "button":
        text = element.get("text")
        if not isinstance(text, dict) or text.get("type") != "plain_text":
            raise _err("button text must be a plain_text object", f"{pointer}/text")
        _check_len(_text_of(text), 75, f"{pointer}/text/text")
        _check_len(element.get("value"), 2000, f"{pointer}/value")
        _check_len(element.get("url"), 3000, f"{pointer}/url")


def _check_block(block: Any, pointer: str) -> None:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise _err("must provide an object with a string type", pointer)
    kind = block["type"]
    _check_len(block.get("block_id"), 255, f"{pointer}/block_id")
    if kind == "section":
        _check_len(_text_of(block.get("text")), 3000, f"{pointer}/text/text")
        fields = block.get("fields")
        if fields is not None:
            if not isinstance(fields, list) or len(fields) > 10:
                raise _err("no more than 10 items allowed", f"{pointer}/fields")
            for i, item in enumerate(fields):
                _check_len(_text_of(item), 2000, f"{pointer}/fields/{i}/text")
        if "text" not in block and not fields:
            raise _err("must provide either text or fields", pointer)
        if block.get("accessory") is not None:
            _check_element(block["accessory"], f"{pointer}/accessory")
    elif kind == "header":
        text = block.get("text")
        if not isinstance(text, dict) or text.get("type") != "plain_text":
            raise _err("must be a plain_text text object", f"{pointer}/text")
        _check_len(_text_of(text), 150, f"{pointer}/text/text")
    elif kind in ("context", "actions"):
        limit = 10 if kind == "context" else 25
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements:
            raise _err("must provide a non-empty elements array", f"{pointer}/elements")
        if len(elements) > limit:
            raise _err(f"no more than {limit} items allowed", f"{pointer}/elements")
        if kind == "actions":
            for i, element in enumerate(elements):
                _check_element(element, f"{pointer}/elements/{i}")
    elif kind == "input":
        _check_element(block.get("element"), f"{pointer}/element")
    elif kind == "markdown":
        _check_len(block.get("text"), 12_000, f"{pointer}/text")


def iter_texts(obj: Any) -> Iterator[str]:
    """Yield every string stored under a ``text`` key anywhere inside ``obj``."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "text" and isinstance(value, str):
                yield value
            else:
                yield from iter_texts(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from iter_texts(item)


def validate_blocks(blocks: Any, *, max_blocks: int = 50) -> None:
    """Raise :class:`BlockError` if Slack would reject ``blocks`` (SLACK.md §5 limits).

    Per-block rules give ``invalid_blocks`` with a json-pointer detail line like Slack's
    ``response_metadata.messages``; the undocumented aggregate text cap gives
    ``msg_blocks_too_long``.
    """
    if blocks is None:
        return
    if not isinstance(blocks, list):
        raise BlockError("invalid_blocks_format", "[ERROR] blocks must be an array")
    if len(blocks) > max_blocks:
        raise _err(f"no more than {max_blocks} items allowed", "/blocks")
    seen: set[str] = set()
    for i, block in enumerate(blocks):
        _check_block(block, f"/blocks/{i}")
        block_id = block.get("block_id")
        if block_id is not None:
            if block_id in seen:
                raise _err(f"duplicate block_id {block_id!r}", f"/blocks/{i}/block_id")
            seen.add(block_id)
    total = sum(len(t) for t in iter_texts(blocks))
    if total > MAX_AGGREGATE_BLOCK_TEXT:
        raise BlockError(
            "msg_blocks_too_long",
            f"[ERROR] total block text is {total} characters, more than "
            f"{MAX_AGGREGATE_BLOCK_TEXT} [json-pointer:/blocks]",
        )


def validate_view(view: Any) -> None:
    """Raise :class:`BlockError` for views Slack would refuse (100 blocks, 24-char title)."""
    if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
        raise BlockError("invalid_arguments", "[ERROR] view must have type modal or home")
    for key in ("title", "submit", "close"):
        _check_len(_text_of(view.get(key)), 24, f"/view/{key}/text")
    _check_len(view.get("private_metadata"), 3000, "/view/private_metadata")
    _check_len(view.get("callback_id"), 255, "/view/callback_id")
    validate_blocks(view.get("blocks", []), max_blocks=100)


# ---------------------------------------------------------------------------------------------
# Ping detection
# ---------------------------------------------------------------------------------------------

BROADCAST_RE = re.compile(r"<!(?:channel|here|everyone)(?:\|[^>]*)?>|<!subteam\^")


def has_broadcast(text: str | None, blocks: Any = None, attachments: Any = None) -> bool:
    """True if the content would really ping: ``<!channel>``, ``<!here>``, ``<!everyone>``,
    ``<!subteam^…>`` in text/any block text, or rich_text ``broadcast``/``usergroup`` elements.
    """
    if text and BROADCAST_RE.search(text):
        return True
    for container in (blocks, attachments):
        if any(BROADCAST_RE.search(t) for t in iter_texts(container)):
            return True
        if _has_rich_broadcast(container):
            return True
    return False


def _has_rich_broadcast(obj: Any) -> bool:
    if isinstance(obj, dict):
        if obj.get("type") in ("broadcast", "usergroup"):
            return True
        return any(_has_rich_broadcast(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_rich_broadcast(v) for v in obj)
    return False
