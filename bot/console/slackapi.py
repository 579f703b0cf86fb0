"""The terminal's Slack: the Web API methods Storyloop calls, served on 127.0.0.1.

The app's own ``AsyncWebClient`` talks to this server (``SLACK_API_URL``), so the console runs
the unmodified app. Messages, views and files are kept in memory for the run (files on disk, so
they can be opened); every change is handed to a ``Listener`` — the terminal — to print.
Methods the app doesn't use answer ``unknown_method``, as Slack answers a misspelt one.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.console.payloads import JSON, Workspace
from bot.console.slackfiles import Files
from bot.console.slackviews import Views
from bot.console.workspace import (
    ApiError,
    Listener,
    Message,
    chunks_text,
    json_param,
    required,
)

MAX_BLOCKS = 50


class TerminalSlack:
    """The Web API server plus the workspace it keeps; ``listener`` prints each change."""

    def __init__(self, files_dir: Path, ws: Workspace | None = None) -> None:
        self.ws = ws or Workspace()
        self.token = "xoxb-console-" + secrets.token_hex(12)
        self.listener: Listener | None = None
        self.messages: dict[str, Message] = {}
        self.views = Views(self)
        self.files = Files(self, files_dir)
        self.port = 0
        self._clock = 0.0
        self._ids = itertools.count(1)
        self._response_urls: dict[str, str | None] = {}  # id → message ts it may replace
        self._runner: web.AppRunner | None = None
        self._methods: dict[str, Callable[[JSON], JSON]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.getPermalink": self._permalink,
            "chat.startStream": self._start_stream,
            "chat.appendStream": self._append_stream,
            "chat.stopStream": self._stop_stream,
            "conversations.replies": self._replies,
            "conversations.history": self._history,
            "conversations.join": self._join,
            "conversations.info": self._info,
            "users.info": self._user_info,
            "usergroups.list": lambda _p: {"usergroups": []},
            "usergroups.users.list": lambda _p: {"users": []},
            "reactions.add": lambda _p: {},
            "assistant.threads.setStatus": lambda _p: {},
            **self.views.methods(),
            **self.files.methods(),
        }

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> TerminalSlack:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/api/{method}", self._handle_api)
        self.files.routes(app)
        app.router.add_post("/response/{rid}", self._handle_response_url)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    # --- helpers the terminal uses ---------------------------------------------------------------

    def next_ts(self) -> str:
        """A message ts: wall-clock time, strictly increasing."""
        self._clock = max(time.time(), self._clock + 0.000001)
        return f"{self._clock:.6f}"

    def new_id(self, prefix: str) -> str:
        return f"{prefix}0{next(self._ids):06d}"

    def response_url(self, replaces: str | None = None) -> str:
        """A loopback ``response_url``; ``replaces``: the message a click came from."""
        rid = secrets.token_hex(8)
        self._response_urls[rid] = replaces
        return f"{self.base_url}/response/{rid}"

    def add_user_message(self, text: str, thread_ts: str | None) -> Message:
        msg = Message(
            self.next_ts(), self.ws.channel_id, self.ws.user_id, text, None, thread_ts, is_bot=False
        )
        self.messages[msg.ts] = msg
        return msg

    def thread_parent_user(self, thread_ts: str) -> str | None:
        root = self.messages.get(thread_ts)
        return root.user if root is not None else None

    # --- HTTP ---------------------------------------------------------------------------------

    async def _params(self, request: web.Request) -> JSON:
        params: JSON = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    params.update(body)
            else:
                params.update(dict(await request.post()))
        return params

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.headers.get("Authorization", "") != f"Bearer {self.token}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        handler = self._methods.get(method)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        try:
            answer = handler(await self._params(request))
        except ApiError as exc:
            return web.json_response({"ok": False, "error": str(exc)})
        return web.json_response({"ok": True, **answer})

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        if rid not in self._response_urls:
            return web.Response(status=404, text="expired_url")
        body = await request.json()
        original = self._response_urls[rid]
        target = self.messages.get(original) if original else None
        if target is not None and body.get("delete_original"):
            self._remove(target)
        elif target is not None and body.get("replace_original") and not target.ephemeral:
            target.text = str(body.get("text") or "")
            target.blocks = body.get("blocks")
            self.tell("edited", target)
        else:
            self._ephemeral(str(body.get("text") or ""), body.get("blocks"), None)
        return web.Response(text="ok")

    def tell(self, what: str, *args: Any, **kwargs: Any) -> None:
        if self.listener is not None:
            getattr(self.listener, what)(*args, **kwargs)

    # --- chat -----------------------------------------------------------------------------------

    def channel(self, params: JSON, key: str = "channel") -> str:
        channel = required(params, key, "channel_not_found")
        if channel != self.ws.channel_id:
            raise ApiError("channel_not_found")
        return channel

    def _blocks(self, params: JSON) -> list[JSON] | None:
        blocks = json_param(params, "blocks")
        if blocks is None:
            return None
        if not isinstance(blocks, list):
            raise ApiError("invalid_blocks_format")
        if len(blocks) > MAX_BLOCKS:
            raise ApiError("invalid_blocks")
        return blocks

    def _own(self, params: JSON) -> Message:
        self.channel(params)
        msg = self.messages.get(required(params, "ts", "message_not_found"))
        if msg is None or msg.deleted:
            raise ApiError("message_not_found")
        if not msg.is_bot:
            raise ApiError("cant_update_message")
        return msg

    def _auth_test(self, _params: JSON) -> JSON:
        return {
            "url": f"{self.base_url}/",
            "team": "Storyloop console",
            "user": self.ws.bot_name,
            "team_id": self.ws.team_id,
            "user_id": self.ws.bot_user_id,
            "bot_id": self.ws.bot_id,
            "app_id": self.ws.app_id,
            "is_enterprise_install": False,
        }

    def _post_message(self, params: JSON) -> JSON:
        channel = self.channel(params)
        blocks = self._blocks(params)
        text = str(params.get("text") or params.get("markdown_text") or "")
        if not text and not blocks:
            raise ApiError("no_text")
        thread_ts = str(params.get("thread_ts") or "") or None
        if thread_ts is not None and thread_ts not in self.messages:
            raise ApiError("thread_not_found")
        metadata = json_param(params, "metadata")
        msg = Message(
            self.next_ts(),
            channel,
            self.ws.bot_user_id,
            text,
            blocks,
            self.messages[thread_ts].root if thread_ts else None,
            metadata if isinstance(metadata, dict) else None,
        )
        self.messages[msg.ts] = msg
        self.tell("posted", msg)
        return {"channel": channel, "ts": msg.ts, "message": msg.as_json(self.ws)}

    def _update(self, params: JSON) -> JSON:
        msg = self._own(params)
        if msg.streaming:
            raise ApiError("streaming_state_conflict")
        blocks = self._blocks(params)
        if "text" in params:
            msg.text = str(params.get("text") or "")
        if blocks is not None or "text" in params:
            msg.blocks = blocks
        metadata = json_param(params, "metadata")
        if isinstance(metadata, dict):
            msg.metadata = metadata
        self.tell("edited", msg)
        return {"channel": msg.channel, "ts": msg.ts, "text": msg.text}

    def _remove(self, msg: Message) -> None:
        msg.deleted = True
        self.tell("deleted", msg)

    def _delete(self, params: JSON) -> JSON:
        msg = self._own(params)
        self._remove(msg)
        return {"channel": msg.channel, "ts": msg.ts}

    def _ephemeral(self, text: str, blocks: list[JSON] | None, thread_ts: str | None) -> Message:
        msg = Message(
            self.next_ts(), self.ws.channel_id, self.ws.bot_user_id, text, blocks, thread_ts
        )
        msg.ephemeral = True
        self.messages[msg.ts] = msg
        self.tell("posted", msg)
        return msg

    def _post_ephemeral(self, params: JSON) -> JSON:
        self.channel(params)
        if required(params, "user", "user_not_found") != self.ws.user_id:
            raise ApiError("user_not_in_channel")
        thread_ts = str(params.get("thread_ts") or "") or None
        msg = self._ephemeral(str(params.get("text") or ""), self._blocks(params), thread_ts)
        return {"message_ts": msg.ts}

    def _permalink(self, params: JSON) -> JSON:
        channel = self.channel(params)
        ts = required(params, "message_ts", "message_not_found")
        if ts not in self.messages:
            raise ApiError("message_not_found")
        return {"channel": channel, "permalink": f"{self.base_url}/archives/{channel}/p{ts}"}

    # --- streaming ------------------------------------------------------------------------------

    def _start_stream(self, params: JSON) -> JSON:
        channel = self.channel(params)
        if not params.get("recipient_user_id"):
            raise ApiError("missing_recipient_user_id")
        if not params.get("recipient_team_id"):
            raise ApiError("missing_recipient_team_id")
        thread_ts = str(params.get("thread_ts") or "") or None
        if thread_ts is not None and thread_ts not in self.messages:
            raise ApiError("thread_not_found")
        text = chunks_text(params)
        msg = Message(self.next_ts(), channel, self.ws.bot_user_id, text, None, thread_ts)
        msg.streaming = True
        self.messages[msg.ts] = msg
        self.tell("streamed", msg, text, done=False)
        return {"channel": channel, "ts": msg.ts}

    def _streaming(self, params: JSON) -> Message:
        msg = self._own(params)
        if not msg.streaming:
            raise ApiError("message_not_in_streaming_state")
        return msg

    def _append_stream(self, params: JSON) -> JSON:
        msg = self._streaming(params)
        text = chunks_text(params)
        msg.text += text
        self.tell("streamed", msg, text, done=False)
        return {"channel": msg.channel, "ts": msg.ts}

    def _stop_stream(self, params: JSON) -> JSON:
        msg = self._streaming(params)
        text = chunks_text(params)
        msg.text += text
        blocks = self._blocks(params)
        if blocks is not None:
            msg.blocks = blocks
        metadata = json_param(params, "metadata")
        if isinstance(metadata, dict):
            msg.metadata = metadata
        msg.streaming = False
        self.tell("streamed", msg, text, done=True)
        return {"channel": msg.channel, "ts": msg.ts, "message": msg.as_json(self.ws)}

    # --- conversations and users ------------------------------------------------------------------

    def _replies(self, params: JSON) -> JSON:
        self.channel(params)
        ts = required(params, "ts", "thread_not_found")
        if ts not in self.messages:
            raise ApiError("thread_not_found")
        root = self.messages[ts].root
        metadata = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        thread = sorted(
            (m for m in self.messages.values() if m.root == root and not m.deleted),
            key=lambda m: float(m.ts),
        )
        listed = [m.as_json(self.ws, metadata=metadata) for m in thread if not m.ephemeral]
        return {"messages": listed, "has_more": False}

    def _history(self, params: JSON) -> JSON:
        self.channel(params)
        metadata = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        limit = int(str(params.get("limit") or 100))
        roots = [
            m
            for m in self.messages.values()
            if m.thread_ts is None and not m.deleted and not m.ephemeral
        ]
        roots.sort(key=lambda m: float(m.ts), reverse=True)
        listed = [m.as_json(self.ws, metadata=metadata) for m in roots[:limit]]
        return {"messages": listed, "has_more": len(roots) > limit}

    def _channel_json(self) -> JSON:
        return {
            "id": self.ws.channel_id,
            "name": self.ws.channel_name,
            "is_channel": True,
            "is_private": False,
            "is_im": False,
            "is_mpim": False,
            "is_archived": False,
            "is_member": True,
        }

    def _join(self, params: JSON) -> JSON:
        self.channel(params)
        return {"channel": self._channel_json()}

    def _info(self, params: JSON) -> JSON:
        self.channel(params)
        return {"channel": self._channel_json()}

    def _user_info(self, params: JSON) -> JSON:
        user = required(params, "user", "user_not_found")
        is_bot = user == self.ws.bot_user_id
        name = (
            self.ws.bot_name if is_bot else self.ws.user_name if user == self.ws.user_id else user
        )
        return {
            "user": {
                "id": user,
                "team_id": self.ws.team_id,
                "name": name,
                "real_name": name,
                "is_bot": is_bot,
                "deleted": False,
                "tz": "UTC",
                "profile": {"display_name": name, "real_name": name},
            }
        }
