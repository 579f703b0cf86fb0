"""What the terminal's Slack keeps: messages and views, its errors, and the small parameter
helpers every Web API method uses (SLACK.md §4.1: params arrive as JSON or form strings)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bot.console.payloads import JSON, Workspace


class ApiError(Exception):
    """An ``ok: false`` answer; the message is Slack's error code."""


@dataclass
class Message:
    ts: str
    channel: str
    user: str
    text: str
    blocks: list[JSON] | None
    thread_ts: str | None = None
    metadata: JSON | None = None
    is_bot: bool = True
    files: list[JSON] = field(default_factory=list)
    deleted: bool = False
    streaming: bool = False
    ephemeral: bool = False

    @property
    def root(self) -> str:
        """The ts of the thread this message belongs to (its own if it is a root)."""
        return self.thread_ts or self.ts

    def as_json(self, ws: Workspace, *, metadata: bool = True) -> JSON:
        out: JSON = {"type": "message", "user": self.user, "text": self.text, "ts": self.ts}
        if self.is_bot:
            out["bot_id"] = ws.bot_id
            out["app_id"] = ws.app_id
        if self.blocks is not None:
            out["blocks"] = self.blocks
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        if metadata and self.metadata:
            out["metadata"] = self.metadata
        if self.files:
            out["files"] = self.files
        return out


@dataclass
class View:
    id: str
    body: JSON
    hash: str

    def as_json(self, ws: Workspace) -> JSON:
        out = dict(self.body)
        out.update({"id": self.id, "hash": self.hash, "team_id": ws.team_id, "app_id": ws.app_id})
        out.setdefault("private_metadata", "")
        out.setdefault("callback_id", "")
        out["bot_id"] = ws.bot_id
        out.setdefault("state", {"values": {}})
        return out


class Listener(Protocol):
    """What the terminal is told as the app changes the workspace."""

    def posted(self, msg: Message) -> None: ...
    def edited(self, msg: Message) -> None: ...
    def deleted(self, msg: Message) -> None: ...
    def streamed(self, msg: Message, text: str, *, done: bool) -> None: ...
    def shared(self, name: str, size: int, path: Path, msg: Message) -> None: ...
    def view_shown(self, view: View) -> None: ...
    def home_published(self, view: View) -> None: ...


def json_param(params: JSON, key: str) -> Any:
    """Structured params arrive as JSON values (JSON bodies) or JSON strings (forms, queries)."""
    value = params.get(key)
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise ApiError("invalid_arguments") from None
    return value


def required(params: JSON, key: str, error: str | None = None) -> str:
    value = params.get(key)
    if value is None or value == "":
        raise ApiError(error or "invalid_arguments")
    return str(value)


def chunks_text(params: JSON) -> str:
    """Streamed text: ``markdown_text``, or the text of ``markdown_text`` chunks."""
    text = str(params.get("markdown_text") or "")
    for chunk in json_param(params, "chunks") or []:
        if isinstance(chunk, dict) and chunk.get("type") == "markdown_text":
            text += str(chunk.get("text") or "")
    return text


class Host(Protocol):
    """What the parts of the server (views, files) need from it."""

    ws: Workspace
    token: str
    messages: dict[str, Message]

    @property
    def base_url(self) -> str: ...
    def next_ts(self) -> str: ...
    def new_id(self, prefix: str) -> str: ...
    def tell(self, what: str, *args: Any, **kwargs: Any) -> None: ...
    def channel(self, params: JSON, key: str = "channel") -> str: ...
