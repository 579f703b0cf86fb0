"""A local Slack for Storyloop's tests: Web API, Socket Mode server and HTTP event sender.

Why: the bot is a slack-bolt ``AsyncApp``; testing it against canned mocks hides the wire
details that break in production (acks within 3 s, redeliveries, block limits, connection
resets after Slack accepted a post, socket refreshes). ``SlackEmulator`` speaks the real
protocols (SLACK.md §1-5, §9) so the unmodified ``slack_sdk``/``slack_bolt`` clients run
against it, and it keeps the resulting workspace state for assertions.

Typical use::

    emu = SlackEmulator()
    await emu.start()
    app = AsyncApp(client=AsyncWebClient(token=emu.bot_token, base_url=emu.api_url),
                   signing_secret=emu.signing_secret)
    ...  # connect with AsyncSocketModeHandler, or serve app.web_app() and set emu.events_url
    ack = await emu.slash_command("a heist in space")
    await emu.wait_for(lambda: emu.bot_messages("C0PUBLIC"))
    await emu.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

from tests.emulators import slack_payloads as payloads
from tests.emulators.slack_files import (
    COMPLETE_UPLOAD,
    DEFAULT_MAX_FILE_BYTES,
    GET_UPLOAD_URL,
    FileUploads,
    SlackFile,
)
from tests.emulators.slack_groups import UserGroups
from tests.emulators.slack_home import PUBLISH, SlackHome
from tests.emulators.slack_oauth import OAUTH_ACCESS, SlackOAuth
from tests.emulators.slack_payloads import sign
from tests.emulators.slack_shortcuts import deliver_global_shortcut, deliver_message_shortcut
from tests.emulators.slack_state import (
    JSON,
    AckResult,
    ApiCall,
    ApiError,
    BlockError,
    Channel,
    DeliveryRecord,
    Ephemeral,
    MessageVersion,
    OpenedView,
    ResponsePost,
    ResponseUrl,
    StoredMessage,
    TsClock,
    User,
    Workspace,
    has_broadcast,
    validate_blocks,
    validate_view,
)
from tests.emulators.slack_streams import APPEND_STREAM, START_STREAM, STOP_STREAM, ChatStreams
from tests.emulators.slack_views import ModalActions

__all__ = [
    "AckResult",
    "ApiCall",
    "Channel",
    "DeliveryRecord",
    "Ephemeral",
    "OpenedView",
    "ResponsePost",
    "SlackEmulator",
    "SlackFile",
    "StoredMessage",
    "post_signed",
    "sign",
]

Mode = Literal["socket", "http"]
MAX_TEXT = 40_000
MAX_UPDATE_TEXT = 4_000
RESPONSE_URL_MAX_USES = 5


#: Raised by Web API method handlers (defined in slack_state so slack_files can raise it too).
_ApiError = ApiError


@dataclass
class _Fault:
    status: int
    retry_after: float
    error: str


@dataclass
class _Socket:
    id: int
    ws: web.WebSocketResponse
    request: web.Request
    ticket: str | None
    opened_at: float = field(default_factory=time.monotonic)
    draining: bool = False


@dataclass
class _Trigger:
    user: str
    issued_at: float
    used: bool = False


# ---------------------------------------------------------------------------------------------
# Small parameter helpers (Web API params arrive as JSON values or as form/query strings)
# ---------------------------------------------------------------------------------------------


def _str(params: JSON, key: str) -> str | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    return str(value)


def _flag(params: JSON, key: str) -> bool:
    value = params.get(key)
    if isinstance(value, bool):
        return value
    return value is not None and str(value).lower() in ("1", "true", "yes")


def _json_value(params: JSON, key: str, error: str) -> Any:
    """A structured param: JSON bodies carry objects, form/query bodies carry JSON strings."""
    value = params.get(key)
    if isinstance(value, str):
        if value == "":
            return None
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise _ApiError(error) from exc
    return value


def _parse_ack_body(text: str) -> JSON:
    """Bolt's convention in reverse: JSON object → dict, other non-empty text → ``{"text"}``."""
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return {"text": text}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


async def post_signed(
    url: str,
    body: bytes,
    content_type: str,
    *,
    secret: str,
    timestamp: int | None = None,
    signature: str | None = None,
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
) -> tuple[int, str]:
    """POST ``body`` to ``url`` as Slack would; override ``timestamp``/``signature`` to forge.

    Used by bad-signature and stale-timestamp tests, so it owns its own short-lived session.
    """
    ts = int(time.time()) if timestamp is None else timestamp
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": signature if signature is not None else sign(secret, ts, body),
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as resp,
    ):
        return resp.status, await resp.text()


class SlackEmulator:
    """An in-process Slack: state, Web API, Socket Mode server and HTTP sender in one object.

    Knobs a test may set after construction: ``mode`` (``"socket"``/``"http"``/``None`` =
    auto), ``events_url``, ``echo_bot_events``, ``deliver_app_mentions``,
    ``redeliver_unacked``, ``retry_delays``, ``ack_timeout``, ``trigger_ttl``,
    ``socket_wait``, ``post_rate_limit``, ``file_uploads_disabled`` and ``max_file_bytes``.
    The file upload flow itself lives in ``slack_files.py`` (``emu.uploads``).
    """

    def __init__(
        self,
        *,
        team_id: str = "T0TEAM",
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        app_id: str = "A0STORY",
        bot_token: str = "xoxb-test",
        app_token: str = "xapp-test",
        signing_secret: str = "test-secret",
        bot_name: str = "storyloop",
        ts_start: float = 1767225600.0,
    ) -> None:
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.bot_token = bot_token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.bot_name = bot_name

        self.workspace = Workspace(
            team_id=team_id, bot_user_id=bot_user_id, bot_id=bot_id, app_id=app_id
        )
        self.workspace.clock = TsClock(ts_start)
        self.workspace.users[bot_user_id] = User(bot_user_id, bot_name, "Storyloop", is_bot=True)
        for human in ("U0ALICE", "U0BOB", "U0CAROL"):
            self.workspace.user(human)
        self.add_channel("C0PUBLIC", name="story-public")
        self.add_channel("C0NOTJOINED", name="not-joined", bot_is_member=False)
        self.add_channel("C0PRIVATE", name="story-private", is_private=True)
        self.add_channel("C0PRIVNO", name="private-no", is_private=True, bot_is_member=False)

        # Behaviour knobs.
        #: None = Socket Mode if a socket is (or was) connected, else HTTP if events_url is set.
        self.mode: Mode | None = None
        #: The app's HTTP endpoint for signed deliveries (HTTP mode).
        self.events_url: str | None = None
        #: Real Slack sends the bot its own posts/edits as message events (Bolt drops them).
        self.echo_bot_events = True
        #: Real apps subscribed to app_mention get it alongside the message event.
        self.deliver_app_mentions = True
        #: Redeliver failed events_api deliveries (retry_attempt 1..3) after retry_delays.
        self.redeliver_unacked = False
        self.retry_delays: tuple[float, ...] = (1.0, 60.0, 300.0)  # Slack: ~now, 1 min, 5 min
        #: Slack's 3-second rule for acks / HTTP responses.
        self.ack_timeout = 3.0
        #: trigger_id lifetime for views.open (Slack: ~3 s).
        self.trigger_ttl = 3.0
        #: How long a Socket Mode delivery waits for a connection during a reconnect gap.
        self.socket_wait = 5.0
        #: If set, chat.postMessage/update beyond N per channel per second get a 429.
        self.post_rate_limit: int | None = None
        #: Workspace policy: both files.*UploadExternal methods answer file_uploads_disabled.
        self.file_uploads_disabled = False
        #: Larger declared lengths get file_upload_size_restricted (Slack: 1 GiB per file).
        self.max_file_bytes = DEFAULT_MAX_FILE_BYTES

        # Records for assertions.
        self.calls: list[ApiCall] = []
        self.responses: list[ResponsePost] = []
        self.views_opened: list[OpenedView] = []
        self.ack_latencies: list[tuple[str, float, bool]] = []
        self.deliveries: list[DeliveryRecord] = []
        self.late_acks: list[JSON] = []
        self.socket_frames: list[JSON] = []
        self.background_errors: list[BaseException] = []
        self.connections_opened = 0
        self.websocket_connects = 0

        # Internals.
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._sockets: list[_Socket] = []
        self._socket_ids = 0
        self._round_robin = 0
        self._pending_acks: dict[str, asyncio.Future[tuple[JSON, float]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._faults: dict[str, deque[_Fault]] = {}
        self._resets: dict[str, int] = {}
        self._delays: dict[str, float] = {}
        self._triggers: dict[str, _Trigger] = {}
        self._response_urls: dict[str, ResponseUrl] = {}
        self._counter = 0
        self._last_action_ts = 0.0
        self._stopping = False
        #: Files and the external upload flow (tickets, bytes, completion).
        self.uploads = FileUploads(self)
        #: Clicks and selections inside open modals (container "view"; slack_views.py).
        self.modals = ModalActions(self)
        #: Chat streaming (chat.startStream/appendStream/stopStream): ``slack_streams.py``.
        self.streams = ChatStreams(self)
        #: The App Home: views.publish, app_home_opened, clicks in a Home (slack_home.py).
        self.home = SlackHome(self)
        #: User groups (usergroups.list / usergroups.users.list); tests add them.
        self.usergroups = UserGroups(team_id)
        #: OAuth distribution: oauth.v2.access, more workspaces, uninstalls (slack_oauth.py).
        self.oauth = SlackOAuth(self)
        self._methods: dict[str, Callable[[JSON], JSON]] = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.delete": self._chat_delete,
            "chat.getPermalink": self._chat_get_permalink,
            "conversations.join": self._conversations_join,
            "conversations.info": self._conversations_info,
            "conversations.replies": self._conversations_replies,
            "conversations.history": self._conversations_history,
            "views.open": self._views_open,
            "views.push": self._views_open,
            "views.update": self._views_update,
            "reactions.add": self._reactions_add,
            "users.info": self._users_info,
            GET_UPLOAD_URL: self.uploads.get_upload_url_external,
            COMPLETE_UPLOAD: self.uploads.complete_upload_external,
            "files.info": self.uploads.files_info,
            START_STREAM: self.streams.start_stream,
            APPEND_STREAM: self.streams.append_stream,
            STOP_STREAM: self.streams.stop_stream,
            PUBLISH: self.home.views_publish,
            "usergroups.list": self.usergroups.usergroups_list,
            "usergroups.users.list": self.usergroups.usergroups_users_list,
        }

    # =========================================================================================
    # Lifecycle
    # =========================================================================================

    async def start(self, port: int = 0) -> SlackEmulator:
        """Bind 127.0.0.1:``port`` (0 = any free port) and start serving."""
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_get("/link/", self._handle_ws)
        app.router.add_get("/link", self._handle_ws)
        app.router.add_post("/response/{url_id}", self._handle_response_url)
        app.router.add_post("/upload/v1/{ticket}", self.uploads.handle_upload)
        app.router.add_get("/files-pri/{key}/{name}", self.uploads.handle_download)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._session = aiohttp.ClientSession()
        return self

    async def stop(self) -> None:
        """Cancel background work, close sockets and sessions, stop the server."""
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for future in self._pending_acks.values():
            future.cancel()
        for sock in list(self._sockets):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sock.ws.close(code=1001, message=b"shutdown"), 2.0)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SlackEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """Web API base URL to pass as ``AsyncWebClient(base_url=...)`` (trailing slash)."""
        return f"{self.base_url}/api/"

    @property
    def ws_url(self) -> str:
        """Socket Mode URL without a ticket (for ``handler.client.wss_uri`` shortcuts)."""
        return f"ws://127.0.0.1:{self.port}/link/?app_id={self.app_id}"

    # =========================================================================================
    # Workspace setup and queries
    # =========================================================================================

    def add_channel(
        self, channel_id: str, *, name: str, is_private: bool = False, bot_is_member: bool = True
    ) -> Channel:
        """Create (or replace) a channel in the workspace."""
        return self.workspace.add_channel(Channel(channel_id, name, is_private, bot_is_member))

    def add_user(self, user_id: str, *, name: str, real_name: str = "") -> User:
        """Register a human user (unknown ids are auto-registered anyway)."""
        user = User(user_id, name, real_name)
        self.workspace.users[user_id] = user
        return user

    @property
    def channels(self) -> dict[str, Channel]:
        """Channels by id."""
        return self.workspace.channels

    @property
    def messages(self) -> list[StoredMessage]:
        """Every stored message (bot and human, deleted included) in posting order."""
        return self.workspace.messages

    @property
    def ephemerals(self) -> list[Ephemeral]:
        """Every ephemeral shown to a user (chat.postEphemeral, response_url, command acks)."""
        return self.workspace.ephemerals

    def message(self, channel: str, ts: str) -> StoredMessage | None:
        """The stored message at ``(channel, ts)`` (check ``.deleted``), or ``None``."""
        return self.workspace.message(channel, ts)

    def thread(self, channel: str, thread_ts: str) -> list[StoredMessage]:
        """Root + replies of a thread in ts order, deleted messages excluded."""
        return self.workspace.thread(channel, thread_ts)

    def bot_messages(self, channel: str | None = None) -> list[StoredMessage]:
        """Live messages the bot posted, optionally in one channel."""
        return [
            m
            for m in self.messages
            if m.is_bot and not m.deleted and (channel is None or m.channel == channel)
        ]

    def ephemerals_for(self, user: str) -> list[Ephemeral]:
        """Ephemerals shown to ``user``, in order."""
        return [e for e in self.ephemerals if e.user == user]

    @property
    def uploaded_files(self) -> list[SlackFile]:
        """Completed uploads in completion order (private files included, channel ``None``);
        each has ``id``, ``filename``, ``title``, ``bytes``, ``channel``, ``thread_ts`` and
        ``message_ts``. Files whose upload was never completed are in ``uploads.pending``.
        """
        return list(self.uploads.completed)

    def files_in_thread(self, channel: str, thread_ts: str) -> list[SlackFile]:
        """Files shared in a thread (root included) as ``conversations.replies`` shows them."""
        return self.uploads.in_thread(channel, thread_ts)

    def calls_to(self, method: str) -> list[ApiCall]:
        """Recorded Web API calls of one method (failed and faulted ones included)."""
        return [c for c in self.calls if c.method == method]

    @property
    def open_sockets(self) -> int:
        """Number of currently connected Socket Mode WebSockets."""
        return len(self._sockets)

    def peak_posts_per_second(self, channel: str) -> int:
        """Max successful chat.postMessage + chat.update calls for ``channel`` in any 1 s window."""
        times = sorted(
            c.at
            for c in self.calls
            if c.method in ("chat.postMessage", "chat.update")
            and c.ok
            and c.params.get("channel") == channel
        )
        best = 0
        start = 0
        for end, t in enumerate(times):
            while t - times[start] >= 1.0:
                start += 1
            best = max(best, end - start + 1)
        return best

    def unescaped_broadcasts(self) -> list[StoredMessage | Ephemeral | ResponsePost]:
        """Bot output that would really ping (``<!channel>``, ``<!here>``, ``<!everyone>``,
        ``<!subteam^``), including earlier versions of edited messages.
        """
        found: list[StoredMessage | Ephemeral | ResponsePost] = []
        for msg in self.messages:
            if not msg.is_bot:
                continue
            versions = [(msg.text, msg.blocks)] + [(v.text, v.blocks) for v in msg.history]
            if any(has_broadcast(t, b) for t, b in versions) or has_broadcast(
                None, None, msg.attachments
            ):
                found.append(msg)
        found.extend(e for e in self.ephemerals if has_broadcast(e.text, e.blocks))
        found.extend(
            r for r in self.responses if has_broadcast(r.text, r.blocks, r.body.get("attachments"))
        )
        return found

    async def wait_for(
        self,
        predicate: Callable[[], Any],
        timeout: float = 10.0,
        *,
        message: str | None = None,
    ) -> Any:
        """Poll ``predicate`` every 20 ms until truthy; return its value.

        Side effects of Bolt listeners happen after the ack, so tests must poll. The
        predicate may be sync or async. On timeout raise ``AssertionError`` naming the
        predicate, its last value and the most recent API calls.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            if time.monotonic() >= deadline:
                recent = ", ".join(
                    f"{c.method}({'ok' if c.ok else c.error})" for c in self.calls[-8:]
                )
                raise AssertionError(
                    f"wait_for timed out after {timeout}s waiting for "
                    f"{message or _describe(predicate)}; last value: {value!r}; "
                    f"recent API calls: [{recent}]; deliveries: {len(self.deliveries)}, "
                    f"open sockets: {self.open_sockets}"
                )
            await asyncio.sleep(0.02)

    async def wait_connected(self, timeout: float = 5.0, *, count: int = 1) -> None:
        """Wait until ``count`` Socket Mode connections (not told to disconnect) are open."""
        await self.wait_for(
            lambda: sum(not s.draining for s in self._sockets) >= count,
            timeout,
            message=f"{count} open Socket Mode connection(s)",
        )

    # =========================================================================================
    # Fault injection
    # =========================================================================================

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: float = 1,
        error: str = "ratelimited",
        count: int = 1,
    ) -> None:
        """Make the next ``count`` calls of ``method`` fail without effect.

        429 → ``Retry-After`` header + ``{"ok":false,"error":"ratelimited"}``; 200 → ok:false
        with ``error``; any other status → an HTML error page like Slack's edge returns.
        """
        queue = self._faults.setdefault(method, deque())
        queue.extend(_Fault(status, retry_after, error) for _ in range(count))

    def reset_after_accept(self, method: str, count: int = 1) -> None:
        """Let the next ``count`` calls of ``method`` take effect, then drop the TCP connection
        without answering ("Slack accepted the post but the connection reset").
        """
        self._resets[method] = self._resets.get(method, 0) + count

    def delay(self, method: str, seconds: float) -> None:
        """Delay every call of ``method`` by ``seconds`` until set back to 0."""
        if seconds > 0:
            self._delays[method] = seconds
        else:
            self._delays.pop(method, None)

    # =========================================================================================
    # Web API server
    # =========================================================================================

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params, parse_error = await self._read_params(request)
        token = self._token(request, params)
        call = ApiCall(method, params, token, time.monotonic(), request.method)
        self.calls.append(call)
        if parse_error:
            return self._reply(call, {"ok": False, "error": parse_error})
        if method == OAUTH_ACCESS:  # authenticated by client id and secret, not a token
            return self._reply(
                call, self.oauth.access(params, request.headers.get("Authorization", ""))
            )
        handler = self._methods.get(method)
        if handler is None:
            return self._reply(call, {"ok": False, "error": "unknown_method"})
        expected = self.app_token if method == "apps.connections.open" else self.bot_token
        if not token:
            return self._reply(call, {"ok": False, "error": "not_authed"})
        if token != expected and not self.oauth.accepts(token):
            return self._reply(call, {"ok": False, "error": "invalid_auth"})
        if method == "auth.test" and token != expected:
            return self._reply(call, self.oauth.auth_test(token))
        if method in self._delays:
            await asyncio.sleep(self._delays[method])
        queue = self._faults.get(method)
        if queue:
            return self._fault_reply(call, queue.popleft())
        if self._rate_limited(method, params):
            return self._fault_reply(call, _Fault(429, 1, "ratelimited"))
        stream_wait = self.streams.retry_after(method)
        if stream_wait is not None:
            return self._fault_reply(call, _Fault(429, stream_wait, "ratelimited"))
        try:
            result: JSON = {"ok": True, **handler(params)}
        except _ApiError as exc:
            result = {"ok": False, "error": exc.error, **exc.extra}
        response = self._reply(call, result)
        if self._resets.get(method):
            self._resets[method] -= 1
            call.error = call.error or "connection_reset_after_accept"
            if request.transport is not None:
                request.transport.abort()
        return response

    async def _read_params(self, request: web.Request) -> tuple[JSON, str | None]:
        """Merge query string, form body and JSON body (SLACK.md §4.1: the SDK uses all three)."""
        params: JSON = dict(request.query)
        raw = await request.read()
        if not raw:
            return params, None
        if request.content_type == "application/json":
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                return params, "invalid_json"
            if isinstance(body, dict):
                params.update(body)
            return params, None
        try:
            params.update(parse_qsl(raw.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            return params, "invalid_form_data"
        return params, None

    @staticmethod
    def _token(request: web.Request, params: JSON) -> str | None:
        header = request.headers.get("Authorization", "")
        body_token = params.pop("token", None)
        if header.startswith("Bearer "):
            return header[len("Bearer ") :].strip()
        return str(body_token) if body_token else None

    @staticmethod
    def _reply(call: ApiCall, result: JSON) -> web.Response:
        call.ok = bool(result.get("ok"))
        call.error = result.get("error")
        call.response = result
        return web.json_response(result)

    @staticmethod
    def _fault_reply(call: ApiCall, fault: _Fault) -> web.Response:
        call.status = fault.status
        call.error = fault.error
        if fault.status == 429:
            body = {"ok": False, "error": fault.error}
            call.response = body
            return web.json_response(
                body, status=429, headers={"Retry-After": str(int(fault.retry_after))}
            )
        if fault.status == 200:
            body = {"ok": False, "error": fault.error}
            call.response = body
            return web.json_response(body)
        html = (
            f"<html><head><title>{fault.status}</title></head><body>"
            f"<h1>{fault.status} {fault.error}</h1></body></html>"
        )
        return web.Response(status=fault.status, text=html, content_type="text/html")

    def _rate_limited(self, method: str, params: JSON) -> bool:
        if self.post_rate_limit is None or method not in ("chat.postMessage", "chat.update"):
            return False
        now = time.monotonic()
        recent = [
            c
            for c in self.calls
            if c.method in ("chat.postMessage", "chat.update")
            and c.ok
            and c.params.get("channel") == params.get("channel")
            and now - c.at < 1.0
        ]
        return len(recent) >= self.post_rate_limit

    # -- helpers shared by methods ------------------------------------------------------------

    def _require_channel(self, params: JSON, *, need_membership: bool) -> Channel:
        channel_id = _str(params, "channel")
        error = self.workspace.channel_error(channel_id, need_membership=need_membership)
        if error:
            raise _ApiError(error)
        return self.workspace.channels[str(channel_id)]

    @staticmethod
    def _blocks(params: JSON, *, key: str = "blocks") -> list[JSON] | None:
        blocks = _json_value(params, key, "invalid_blocks_format")
        try:
            validate_blocks(blocks)
        except BlockError as exc:
            raise _ApiError(exc.error, response_metadata={"messages": [exc.detail]}) from exc
        return list(blocks) if blocks else None

    @staticmethod
    def _metadata(params: JSON) -> JSON | None:
        metadata = _json_value(params, "metadata", "invalid_metadata_format")
        if metadata is None:
            return None
        if (
            not isinstance(metadata, dict)
            or not isinstance(metadata.get("event_type"), str)
            or not isinstance(metadata.get("event_payload"), dict)
        ):
            raise _ApiError("invalid_metadata_format")
        return {"event_type": metadata["event_type"], "event_payload": metadata["event_payload"]}

    def _content(self, params: JSON) -> tuple[str, list[JSON] | None, list[JSON] | None]:
        """text/blocks/attachments of a post; ``no_text`` when all are empty."""
        text = params.get("text")
        markdown = _str(params, "markdown_text")
        blocks = self._blocks(params)
        attachments = _json_value(params, "attachments", "invalid_attachments")
        if markdown and (text or blocks):
            raise _ApiError("markdown_text_conflict")
        if isinstance(attachments, list) and len(attachments) > 100:
            raise _ApiError("too_many_attachments")
        text = markdown or ("" if text is None else str(text))
        if not text and not blocks and not attachments:
            raise _ApiError("no_text")
        return text, blocks, attachments

    def _parent_user(self, msg: StoredMessage) -> str | None:
        root = self.workspace.message(msg.channel, msg.thread_ts) if msg.thread_ts else None
        return root.user if root else None

    # -- methods ------------------------------------------------------------------------------

    def _auth_test(self, params: JSON) -> JSON:
        return {
            "url": "https://storyloop-test.slack.com/",
            "team": "Storyloop Test",
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, params: JSON) -> JSON:
        self.connections_opened += 1
        ticket = f"emu-{self.connections_opened}-{secrets.token_hex(4)}"
        return {"url": f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"}

    def _chat_post_message(self, params: JSON) -> JSON:
        channel = self._require_channel(params, need_membership=True)
        text, blocks, attachments = self._content(params)
        metadata = self._metadata(params)
        thread_ts = _str(params, "thread_ts")
        root = None
        if thread_ts:
            root = self.workspace.thread_root_ts(channel.id, thread_ts)
            if root is None:
                raise _ApiError("thread_not_found")
        extra: JSON = {}
        if len(text) > MAX_TEXT:
            text = text[:MAX_TEXT]
            extra = {
                "warning": "message_truncated",
                "response_metadata": {"warnings": ["message_truncated"]},
            }
        msg = self.workspace.store(
            StoredMessage(
                channel=channel.id,
                ts=self.workspace.clock.next(),
                user=self.bot_user_id,
                text=text,
                thread_ts=root,
                bot_id=self.bot_id,
                app_id=self.app_id,
                blocks=blocks,
                attachments=attachments,
                metadata=metadata,
                reply_broadcast=_flag(params, "reply_broadcast"),
            )
        )
        self._echo(
            payloads.message_event(
                msg,
                channel_type=channel.channel_type,
                team_id=self.team_id,
                parent_user_id=self._parent_user(msg),
                bot_name=self.bot_name,
            )
        )
        return {"channel": channel.id, "ts": msg.ts, "message": self.workspace.to_api(msg), **extra}

    def _chat_update(self, params: JSON) -> JSON:
        channel = self._require_channel(params, need_membership=False)
        msg = self.workspace.message(channel.id, _str(params, "ts") or "")
        if msg is None or msg.deleted:
            raise _ApiError("message_not_found")
        if msg.user != self.bot_user_id:
            raise _ApiError("cant_update_message")
        self.streams.check_update(msg)
        text = params.get("text")
        if text is not None and len(str(text)) > MAX_UPDATE_TEXT:
            raise _ApiError("msg_too_long")
        has_blocks = params.get("blocks") not in (None, "")
        blocks = self._blocks(params) if has_blocks else None
        metadata = self._metadata(params)
        previous = payloads.message_body(msg, team_id=self.team_id, bot_name=self.bot_name)
        edit_ts = self.workspace.clock.next()
        msg.history.append(MessageVersion(msg.text, msg.blocks, edit_ts, self.bot_user_id))
        if text is not None:
            msg.text = str(text)
        if has_blocks or text is not None:
            # A text-only update replaces the content: the previous blocks go away.
            msg.blocks = blocks
        if metadata is not None:
            msg.metadata = metadata
        msg.edited = {"user": self.bot_user_id, "ts": edit_ts}
        self._echo(
            payloads.message_changed_event(
                msg,
                previous,
                event_ts=edit_ts,
                channel_type=channel.channel_type,
                team_id=self.team_id,
                bot_name=self.bot_name,
            )
        )
        api = self.workspace.to_api(msg)
        return {"channel": channel.id, "ts": msg.ts, "text": msg.text, "message": api}

    def _chat_post_ephemeral(self, params: JSON) -> JSON:
        channel = self._require_channel(params, need_membership=True)
        user = _str(params, "user")
        if user is None or user not in self.workspace.users:
            raise _ApiError("user_not_in_channel")
        text, blocks, _ = self._content(params)
        thread_ts = _str(params, "thread_ts")
        if thread_ts:
            thread_ts = self.workspace.thread_root_ts(channel.id, thread_ts) or thread_ts
        eph = Ephemeral(
            channel.id, user, text[:MAX_TEXT], blocks, thread_ts, self.workspace.clock.next()
        )
        self.workspace.ephemerals.append(eph)
        return {"message_ts": eph.message_ts}

    def _chat_delete(self, params: JSON) -> JSON:
        channel = self._require_channel(params, need_membership=False)
        msg = self.workspace.message(channel.id, _str(params, "ts") or "")
        if msg is None or msg.deleted:
            raise _ApiError("message_not_found")
        if msg.user != self.bot_user_id:
            raise _ApiError("cant_delete_message")
        self._delete(msg)
        return {"channel": channel.id, "ts": msg.ts}

    def _chat_get_permalink(self, params: JSON) -> JSON:
        """Like Slack: a link for any message in a channel the token can see."""
        channel = self._require_channel(params, need_membership=False)
        ts = _str(params, "message_ts") or ""
        msg = self.workspace.message(channel.id, ts)
        if msg is None or msg.deleted:
            raise _ApiError("message_not_found")
        link = f"{self.base_url}/archives/{channel.id}/p{ts.replace('.', '')}"
        if msg.thread_ts and msg.thread_ts != msg.ts:
            link += f"?thread_ts={msg.thread_ts}&cid={channel.id}"
        return {"channel": channel.id, "permalink": link}

    def _delete(self, msg: StoredMessage) -> None:
        previous = payloads.message_body(msg, team_id=self.team_id, bot_name=self.bot_name)
        msg.deleted = True
        self._echo(
            payloads.message_deleted_event(
                msg,
                previous,
                event_ts=self.workspace.clock.next(),
                channel_type=self.workspace.channels[msg.channel].channel_type,
            )
        )

    def _conversations_join(self, params: JSON) -> JSON:
        channel_id = _str(params, "channel") or ""
        channel = self.workspace.channels.get(channel_id)
        if channel is None or channel_id.startswith("D"):
            raise _ApiError("channel_not_found")
        if channel.is_private:
            if not channel.bot_is_member:
                raise _ApiError("channel_not_found")
            raise _ApiError("method_not_supported_for_channel_type")
        extra: JSON = {}
        if channel.bot_is_member:
            extra = {
                "warning": "already_in_channel",
                "response_metadata": {"warnings": ["already_in_channel"]},
            }
        channel.bot_is_member = True
        return {"channel": channel.to_api(), **extra}

    def _conversations_info(self, params: JSON) -> JSON:
        return {"channel": self._require_channel(params, need_membership=False).to_api()}

    def _page(self, items: list[JSON], params: JSON, default_limit: int) -> JSON:
        limit = int(params.get("limit") or default_limit)
        cursor = _str(params, "cursor")
        start = int(cursor.removeprefix("emu:")) if cursor else 0
        page = items[start : start + limit]
        more = start + limit < len(items)
        return {
            "messages": page,
            "has_more": more,
            "response_metadata": {"next_cursor": f"emu:{start + limit}" if more else ""},
        }

    @staticmethod
    def _in_range(ts: str, params: JSON) -> bool:
        value = float(ts)
        inclusive = _flag(params, "inclusive")
        oldest, latest = _str(params, "oldest"), _str(params, "latest")
        if oldest and (value < float(oldest) or (value == float(oldest) and not inclusive)):
            return False
        return not (
            latest and (value > float(latest) or (value == float(latest) and not inclusive))
        )

    def _conversations_replies(self, params: JSON) -> JSON:
        channel = self._require_channel(params, need_membership=True)
        root = self.workspace.thread_root_ts(channel.id, _str(params, "ts") or "")
        thread = self.workspace.thread(channel.id, root) if root else []
        if not thread:
            raise _ApiError("thread_not_found")
        include = _flag(params, "include_all_metadata")
        items = [
            self.workspace.to_api(m, include_metadata=include)
            for m in thread
            if m.ts == root or self._in_range(m.ts, params)
        ]
        return self._page(items, params, 1000)

    def _conversations_history(self, params: JSON) -> JSON:
        channel = self._require_channel(params, need_membership=True)
        include = _flag(params, "include_all_metadata")
        items = [
            self.workspace.to_api(m, include_metadata=include)
            for m in reversed(self.workspace.top_level(channel.id))
            if self._in_range(m.ts, params)
        ]
        return self._page(items, params, 100)

    def _consume_trigger(self, trigger_id: str | None) -> _Trigger:
        trigger = self._triggers.get(trigger_id or "")
        if trigger is None:
            raise _ApiError(
                "invalid_arguments", response_metadata={"messages": ["invalid `trigger_id`"]}
            )
        if trigger.used:
            raise _ApiError("exchanged_trigger_id")
        if time.monotonic() - trigger.issued_at > self.trigger_ttl:
            raise _ApiError("expired_trigger_id")
        trigger.used = True
        return trigger

    def _view_param(self, params: JSON) -> JSON:
        view = _json_value(params, "view", "invalid_arguments")
        try:
            validate_view(view)
        except BlockError as exc:
            # Views report every rule violation as invalid_arguments (views.open docs example).
            raise _ApiError(
                "invalid_arguments", response_metadata={"messages": [exc.detail]}
            ) from exc
        return dict(view)

    def _stored_view(self, view: JSON, view_id: str, root_id: str | None) -> JSON:
        stored = {
            "id": view_id,
            "team_id": self.team_id,
            "app_id": self.app_id,
            "bot_id": self.bot_id,
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            "clear_on_close": False,
            "notify_on_close": False,
            **view,
        }
        stored["state"] = {"values": {}}
        stored["hash"] = f"{int(time.time())}.{secrets.token_hex(4)}"
        stored["root_view_id"] = root_id or view_id
        return stored

    def _views_open(self, params: JSON) -> JSON:
        view = self._view_param(params)
        trigger = self._consume_trigger(_str(params, "trigger_id"))
        external_id = view.get("external_id") or None
        if external_id and any(v.external_id == external_id for v in self.views_opened):
            raise _ApiError("duplicate_external_id")
        self._counter += 1
        view_id = f"V0EMU{self._counter:05d}"
        open_root = next((v for v in reversed(self.views_opened) if not v.closed), None)
        root = open_root.root_view_id if open_root and open_root.user == trigger.user else None
        stored = self._stored_view(view, view_id, root)
        self.views_opened.append(
            OpenedView(
                view_id,
                stored,
                str(params.get("trigger_id")),
                trigger.user,
                stored["hash"],
                external_id,
                root_view_id=stored["root_view_id"],
            )
        )
        return {"view": stored}

    def _views_update(self, params: JSON) -> JSON:
        view_id, external_id = _str(params, "view_id"), _str(params, "external_id")
        opened = next(
            (
                v
                for v in self.views_opened
                if (view_id and v.id == view_id) or (external_id and v.external_id == external_id)
            ),
            None,
        )
        if opened is None:
            raise _ApiError("not_found")
        expected_hash = _str(params, "hash")
        if expected_hash and expected_hash != opened.hash:
            raise _ApiError("hash_conflict")
        view = self._view_param(params)
        opened.history.append(opened.view)
        opened.view = self._stored_view(view, opened.id, opened.root_view_id)
        opened.hash = opened.view["hash"]
        return {"view": opened.view}

    def _reactions_add(self, params: JSON) -> JSON:
        channel = self._require_channel(params, need_membership=True)
        name = _str(params, "name")
        if not name:
            raise _ApiError("invalid_name")
        if ":" in name:
            raise _ApiError("invalid_name")
        msg = self.workspace.message(channel.id, _str(params, "timestamp") or "")
        if msg is None or msg.deleted:
            raise _ApiError("message_not_found")
        users = msg.reactions.setdefault(name, [])
        if self.bot_user_id in users:
            raise _ApiError("already_reacted")
        users.append(self.bot_user_id)
        return {}

    def _users_info(self, params: JSON) -> JSON:
        user = self.workspace.users.get(_str(params, "user") or "")
        if user is None:
            raise _ApiError("user_not_found")
        return {"user": user.to_api(self.team_id)}

    # =========================================================================================
    # response_url endpoint
    # =========================================================================================

    def _new_response_url(
        self,
        *,
        channel: str,
        user: str,
        origin: StoredMessage | None = None,
        ephemeral: Ephemeral | None = None,
    ) -> str:
        self._counter += 1
        url_id = f"{self._counter}{secrets.token_hex(4)}"
        url = f"{self.base_url}/response/{url_id}"
        self._response_urls[url_id] = ResponseUrl(
            url_id,
            url,
            channel,
            user,
            origin_message_ts=origin.ts if origin else None,
            origin_thread_ts=(origin.thread_ts if origin else None)
            or (ephemeral.thread_ts if ephemeral else None),
            origin_ephemeral=ephemeral,
        )
        return url

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        url_id = request.match_info["url_id"]
        raw = await request.read()
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = None
        ctx = self._response_urls.get(url_id)
        status, error = 200, ""
        if not isinstance(body, dict):
            status, error, body = 400, "invalid_payload", {"raw": raw.decode(errors="replace")}
        elif ctx is None:
            status, error = 404, "no_active_hooks"
        else:
            ctx.uses += 1
            if ctx.uses > RESPONSE_URL_MAX_USES:
                status, error = 404, "used_url"
            else:
                try:
                    validate_blocks(body.get("blocks"))
                except BlockError as exc:
                    status, error = 400, exc.error
        self.responses.append(ResponsePost(url_id, str(request.url), body, status))
        if status != 200:
            return web.json_response({"ok": False, "error": error}, status=status)
        assert ctx is not None
        self._apply_response(ctx, body)
        return web.json_response({"ok": True})

    def _apply_response(self, ctx: ResponseUrl, body: JSON) -> None:
        """Make a response_url post visible the way Slack renders it."""
        text = str(body.get("text", ""))
        blocks = body.get("blocks")
        origin = self.workspace.message(ctx.channel, ctx.origin_message_ts or "")
        eph = ctx.origin_ephemeral
        if _flag(body, "delete_original"):
            if origin is not None and not origin.deleted:
                self._delete(origin)
            elif eph is not None:
                eph.deleted = True
            return
        replacing = _flag(body, "replace_original")
        if replacing and origin is not None and not origin.deleted:
            self._replace(origin, text, blocks)
            return
        replacing = replacing and eph is not None and not eph.deleted
        if body.get("response_type") == "in_channel" and not replacing:
            self._store_bot_message(
                ctx.channel, text, blocks, thread_ts=_str(body, "thread_ts"), source="response_url"
            )
            return
        new = Ephemeral(
            ctx.channel,
            ctx.user,
            text,
            blocks,
            _str(body, "thread_ts") or ctx.origin_thread_ts,
            eph.message_ts if replacing and eph else self.workspace.clock.next(),
            source="response_url",
        )
        self.workspace.ephemerals.append(new)
        if replacing and eph is not None:
            # The user now sees the new version in place of the old; later replaces hit it.
            eph.replaced = True
            ctx.origin_ephemeral = new

    def _replace(self, msg: StoredMessage, text: str, blocks: list[JSON] | None) -> None:
        previous = payloads.message_body(msg, team_id=self.team_id, bot_name=self.bot_name)
        edit_ts = self.workspace.clock.next()
        msg.history.append(MessageVersion(msg.text, msg.blocks, edit_ts, self.bot_user_id))
        msg.text, msg.blocks = text, blocks
        msg.edited = {"user": self.bot_user_id, "ts": edit_ts}
        self._echo(
            payloads.message_changed_event(
                msg,
                previous,
                event_ts=edit_ts,
                channel_type=self.workspace.channels[msg.channel].channel_type,
                team_id=self.team_id,
                bot_name=self.bot_name,
            )
        )

    def _store_bot_message(
        self,
        channel: str,
        text: str,
        blocks: list[JSON] | None,
        *,
        thread_ts: str | None,
        source: str,
    ) -> StoredMessage:
        root = self.workspace.thread_root_ts(channel, thread_ts) if thread_ts else None
        msg = self.workspace.store(
            StoredMessage(
                channel=channel,
                ts=self.workspace.clock.next(),
                user=self.bot_user_id,
                text=text,
                thread_ts=root,
                bot_id=self.bot_id,
                app_id=self.app_id,
                blocks=blocks,
                source=source,
            )
        )
        known = self.workspace.channels.get(channel)
        if known is not None and known.bot_is_member:
            self._echo(
                payloads.message_event(
                    msg,
                    channel_type=known.channel_type,
                    team_id=self.team_id,
                    parent_user_id=self._parent_user(msg),
                    bot_name=self.bot_name,
                )
            )
        return msg

    # =========================================================================================
    # Socket Mode server
    # =========================================================================================

    async def _handle_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, timeout=2.0)
        await ws.prepare(request)
        self._socket_ids += 1
        sock = _Socket(self._socket_ids, ws, request, request.query.get("ticket"))
        self._sockets.append(sock)
        self.websocket_connects += 1
        try:
            hello = payloads.hello_frame(self.app_id, len(self._sockets))
            await ws.send_str(json.dumps(hello))
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self._on_socket_frame(msg.data)
        except ConnectionResetError:
            pass  # drop_socket() aborted the transport (or the client vanished): just forget it
        finally:
            if sock in self._sockets:
                self._sockets.remove(sock)
        return ws

    def _on_socket_frame(self, data: str) -> None:
        try:
            frame = json.loads(data)
        except json.JSONDecodeError:
            self.socket_frames.append({"unparseable": data})
            return
        envelope_id = frame.get("envelope_id") if isinstance(frame, dict) else None
        if not envelope_id:
            self.socket_frames.append(frame)
            return
        future = self._pending_acks.get(envelope_id)
        if future is not None and not future.done():
            future.set_result((frame, time.monotonic()))
        else:
            self.late_acks.append(frame)

    async def push_disconnect(self, reason: str = "refresh_requested") -> int:
        """Send a ``disconnect`` frame on every open socket; returns how many got it.

        Those sockets stop receiving new deliveries (they are draining) while the client
        reconnects through ``apps.connections.open``.
        """
        frame = json.dumps(payloads.disconnect_frame(reason))
        sent = 0
        for sock in list(self._sockets):
            sock.draining = True
            with contextlib.suppress(ConnectionError, RuntimeError):
                await sock.ws.send_str(frame)
                sent += 1
        return sent

    async def drop_socket(self, *, abrupt: bool = True) -> int:
        """Kill every open socket: abort the TCP connection (default) or send a CLOSE frame."""
        dropped = list(self._sockets)
        for sock in dropped:
            sock.draining = True
            if abrupt:
                if sock.request.transport is not None:
                    sock.request.transport.abort()
            else:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sock.ws.close(code=1001, message=b"going away"), 2.0)
            if sock in self._sockets:
                self._sockets.remove(sock)
        return len(dropped)

    async def _pick_socket(self) -> _Socket | None:
        """Round-robin over live sockets; wait up to ``socket_wait`` during a reconnect gap."""
        deadline = time.monotonic() + self.socket_wait
        while True:
            live = [s for s in self._sockets if not s.draining and not s.ws.closed]
            if live or time.monotonic() >= deadline or self._stopping:
                break
            await asyncio.sleep(0.01)
        if not live:
            live = [s for s in self._sockets if not s.ws.closed]
        if not live:
            return None
        self._round_robin += 1
        return live[self._round_robin % len(live)]

    # =========================================================================================
    # Delivery (Socket Mode or HTTP)
    # =========================================================================================

    def _transport(self) -> Mode | None:
        """Where deliveries go now (``None``: nowhere), per ``mode`` or auto-detection."""
        if self.mode == "http":
            return "http" if self.events_url else None
        if self.mode == "socket":
            return "socket"
        if self._sockets:
            return "socket"
        if self.events_url:
            return "http"
        if self.websocket_connects:
            return "socket"  # an app was connected: wait for it to reconnect
        return None

    async def _deliver(
        self,
        kind: str,
        payload: JSON,
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int = 0,
        retry_reason: str = "",
    ) -> AckResult:
        transport = self._transport()
        if transport is None:
            raise AssertionError(
                "nothing to deliver to: no Socket Mode connection and emu.events_url is unset"
            )
        if transport == "socket":
            result = await self._deliver_socket(
                kind, payload, accepts_response_payload, retry_attempt, retry_reason
            )
        else:
            result = await self._deliver_http(kind, payload, retry_attempt, retry_reason)
        self.ack_latencies.append((kind, result.seconds, result.ok))
        self.deliveries.append(DeliveryRecord(kind, payload, retry_attempt, retry_reason, result))
        if (
            kind == "events_api"
            and not result.ok
            and self.redeliver_unacked
            and retry_attempt < min(3, len(self.retry_delays))
            and not (
                result.headers.get("X-Slack-No-Retry") == "1" and result.error != "http_timeout"
            )
        ):
            reason = "timeout" if transport == "socket" else (result.error or "unknown_error")
            self._spawn(self._redeliver(payload, retry_attempt + 1, reason))
        return result

    async def _redeliver(self, payload: JSON, attempt: int, reason: str) -> None:
        await asyncio.sleep(self.retry_delays[attempt - 1])
        if not self._stopping and self._transport() is not None:
            await self._deliver("events_api", payload, retry_attempt=attempt, retry_reason=reason)

    async def _deliver_socket(
        self,
        kind: str,
        payload: JSON,
        accepts_response_payload: bool,
        retry_attempt: int,
        retry_reason: str,
    ) -> AckResult:
        frame = payloads.envelope(
            kind,
            payload,
            accepts_response_payload=accepts_response_payload,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
        )
        envelope_id = frame["envelope_id"]
        meta: JSON = {
            "kind": kind,
            "transport": "socket",
            "envelope_id": envelope_id,
            "retry_attempt": retry_attempt,
        }
        sock = await self._pick_socket()
        start = time.monotonic()
        if sock is None:
            return AckResult(ok=False, seconds=0.0, error="no_socket", **meta)
        meta["socket_id"] = sock.id
        future: asyncio.Future[tuple[JSON, float]] = asyncio.get_running_loop().create_future()
        self._pending_acks[envelope_id] = future
        try:
            await sock.ws.send_str(json.dumps(frame))
            ack, acked_at = await asyncio.wait_for(future, self.ack_timeout)
        except TimeoutError:
            return AckResult(ok=False, seconds=time.monotonic() - start, error="timeout", **meta)
        except (ConnectionError, RuntimeError) as exc:
            seconds = time.monotonic() - start
            return AckResult(ok=False, seconds=seconds, error=f"send_failed: {exc}", **meta)
        finally:
            self._pending_acks.pop(envelope_id, None)
        body = ack.get("payload")
        return AckResult(
            body if isinstance(body, dict) else {}, ok=True, seconds=acked_at - start, **meta
        )

    async def _deliver_http(
        self, kind: str, payload: JSON, retry_attempt: int, retry_reason: str
    ) -> AckResult:
        if not self.events_url or self._session is None:
            raise AssertionError("HTTP delivery needs emu.events_url and a started emulator")
        body, content_type = payloads.encode_http_body(kind, payload)
        timestamp = int(time.time())
        headers = {
            "Content-Type": content_type,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "X-Slack-Request-Timestamp": str(timestamp),
            "X-Slack-Signature": sign(self.signing_secret, timestamp, body),
        }
        if retry_attempt:
            headers["X-Slack-Retry-Num"] = str(retry_attempt)
            headers["X-Slack-Retry-Reason"] = retry_reason
        meta: JSON = {"kind": kind, "transport": "http", "retry_attempt": retry_attempt}
        start = time.monotonic()
        try:
            async with self._session.post(
                self.events_url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.ack_timeout),
            ) as resp:
                text = await resp.text()
                status, resp_headers = resp.status, dict(resp.headers)
        except TimeoutError:
            seconds = time.monotonic() - start
            return AckResult(ok=False, seconds=seconds, error="http_timeout", **meta)
        except aiohttp.ClientError:
            seconds = time.monotonic() - start
            return AckResult(ok=False, seconds=seconds, error="connection_failed", **meta)
        ok = 200 <= status < 300
        return AckResult(
            _parse_ack_body(text),
            ok=ok,
            seconds=time.monotonic() - start,
            status=status,
            error=None if ok else "http_error",
            raw=text,
            headers=resp_headers,
            **meta,
        )

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.background_errors.append(task.exception())  # type: ignore[arg-type]

    def _echo(self, event: JSON) -> None:
        """Deliver an event about the bot's own change, like Slack does, in the background."""
        if not self.echo_bot_events or self._stopping or self._transport() is None:
            return
        self._spawn(self._deliver("events_api", self._wrap(event)))

    def _wrap(self, event: JSON) -> JSON:
        self._counter += 1
        event_ts = str(event.get("event_ts") or event.get("ts") or time.time())
        return payloads.event_callback(
            event,
            team_id=self.team_id,
            app_id=self.app_id,
            bot_user_id=self.bot_user_id,
            event_id=f"Ev0EMU{self._counter:06d}",
            event_time=int(event_ts.partition(".")[0]),
        )

    def _new_trigger(self, user: str) -> str:
        self._counter += 1
        trigger_id = f"{self._counter}.{self.team_id}.{secrets.token_hex(8)}"
        self._triggers[trigger_id] = _Trigger(user, time.monotonic())
        return trigger_id

    def _action_ts(self) -> str:
        self._last_action_ts = max(time.time(), self._last_action_ts + 0.000001)
        return f"{self._last_action_ts:.6f}"

    # =========================================================================================
    # Simulated humans and raw deliveries (the main test API)
    # =========================================================================================

    async def deliver_event(
        self, payload: JSON, *, retry_attempt: int = 0, retry_reason: str = ""
    ) -> AckResult:
        """Deliver a complete Events API payload (``event_callback`` wrapper) as-is."""
        return await self._deliver(
            "events_api", payload, retry_attempt=retry_attempt, retry_reason=retry_reason
        )

    async def emit_event(self, event: JSON) -> AckResult:
        """Wrap a bare ``event`` object in a fresh Events API envelope and deliver it."""
        return await self.deliver_event(self._wrap(event))

    async def url_verification(self, challenge: str = "3eZbrw1a") -> AckResult:
        """Send Slack's ``url_verification`` handshake (HTTP mode only)."""
        body = {"token": "legacy-verification-token", "challenge": challenge}
        body["type"] = "url_verification"
        return await self._deliver_http("url_verification", body, 0, "")

    def _human_channel(self, channel: str) -> Channel:
        known = self.workspace.channels.get(channel)
        if known is None:
            raise AssertionError(f"unknown channel {channel!r}; add it with emu.add_channel()")
        return known

    async def _deliver_events(self, channel: Channel, events: list[JSON]) -> list[AckResult]:
        if not channel.bot_is_member:
            return []  # Slack only sends message events for conversations the bot is in.
        return list(await asyncio.gather(*(self.emit_event(e) for e in events)))

    async def user_posts(
        self,
        channel: str,
        text: str,
        *,
        user: str = "U0ALICE",
        thread_ts: str | None = None,
        deliver: bool = True,
    ) -> str:
        """A human posts ``text`` (in a thread if ``thread_ts``); returns the new ts.

        Delivers a ``message`` event (plus ``app_mention`` when the bot is mentioned and
        ``deliver_app_mentions``) if the bot is in the channel, awaiting the acks.
        """
        known = self._human_channel(channel)
        root = None
        if thread_ts:
            root = self.workspace.thread_root_ts(channel, thread_ts)
            if root is None:
                raise AssertionError(f"no live message {thread_ts} in {channel} to reply to")
        self.workspace.user(user)
        msg = self.workspace.store(
            StoredMessage(
                channel=channel,
                ts=self.workspace.clock.next(),
                user=user,
                text=text,
                thread_ts=root,
                blocks=payloads.rich_text_blocks(text),
                client_msg_id=str(uuid.uuid4()),
                source="human",
            )
        )
        if deliver:
            events = [
                payloads.message_event(
                    msg,
                    channel_type=known.channel_type,
                    team_id=self.team_id,
                    parent_user_id=self._parent_user(msg),
                )
            ]
            if self.deliver_app_mentions and f"<@{self.bot_user_id}" in text:
                events.append(payloads.app_mention_event(msg, team_id=self.team_id))
            await self._deliver_events(known, events)
        return msg.ts

    def _human_message(self, channel: str, ts: str, user: str | None) -> StoredMessage:
        msg = self.workspace.message(channel, ts)
        if msg is None or msg.deleted:
            raise AssertionError(f"no live message {ts} in {channel}")
        if user is not None and user != msg.user:
            raise AssertionError(f"{user} cannot change {msg.user}'s message {ts}")
        return msg

    async def user_edits(
        self, channel: str, ts: str, new_text: str, *, user: str | None = None
    ) -> AckResult | None:
        """The author edits a message → ``message_changed`` event (if the bot is in channel)."""
        msg = self._human_message(channel, ts, user)
        previous = payloads.message_body(msg, team_id=self.team_id)
        edit_ts = self.workspace.clock.next()
        msg.history.append(MessageVersion(msg.text, msg.blocks, edit_ts, msg.user))
        msg.text, msg.blocks = new_text, payloads.rich_text_blocks(new_text)
        msg.edited = {"user": msg.user, "ts": edit_ts}
        known = self._human_channel(channel)
        event = payloads.message_changed_event(
            msg, previous, event_ts=edit_ts, channel_type=known.channel_type, team_id=self.team_id
        )
        results = await self._deliver_events(known, [event])
        return results[0] if results else None

    async def user_deletes(
        self, channel: str, ts: str, *, user: str | None = None
    ) -> AckResult | None:
        """The author deletes a message → ``message_deleted`` event (if the bot is in channel)."""
        msg = self._human_message(channel, ts, user)
        previous = payloads.message_body(msg, team_id=self.team_id)
        msg.deleted = True
        known = self._human_channel(channel)
        event = payloads.message_deleted_event(
            msg, previous, event_ts=self.workspace.clock.next(), channel_type=known.channel_type
        )
        results = await self._deliver_events(known, [event])
        return results[0] if results else None

    async def slash_command(
        self,
        text: str,
        *,
        user: str = "U0ALICE",
        channel: str = "C0PUBLIC",
        command: str = "/story",
        team_id: str | None = None,
    ) -> AckResult:
        """A human runs ``/story text``; returns the ack body (``{}`` if empty) with timing.

        A text/blocks ack is shown like Slack does: ephemeral to the user, or as a channel
        message for ``response_type: in_channel``.
        """
        member = self.workspace.user(user)
        known = self.workspace.channels.get(channel)
        channel_name = known.name if known else "directmessage"
        payload = payloads.slash_command_payload(
            command=command,
            text=text,
            user_id=user,
            user_name=member.name,
            channel_id=channel,
            channel_name=channel_name,
            team_id=team_id or self.team_id,  # another installed workspace (slack_oauth.py)
            app_id=self.app_id,
            response_url=self._new_response_url(channel=channel, user=user),
            trigger_id=self._new_trigger(user),
        )
        result = await self._deliver("slash_commands", payload, accepts_response_payload=True)
        if result.ok and (result.get("text") or result.get("blocks")):
            blocks = result.get("blocks")
            if result.get("response_type") == "in_channel":
                self._store_bot_message(
                    channel, str(result.get("text", "")), blocks, thread_ts=None, source="ack"
                )
            else:
                self.workspace.ephemerals.append(
                    Ephemeral(
                        channel,
                        user,
                        str(result.get("text", "")),
                        blocks,
                        None,
                        self.workspace.clock.next(),
                        source="ack",
                    )
                )
        return result

    def _click_target(
        self, target: str | StoredMessage | Ephemeral, channel: str | None
    ) -> StoredMessage | Ephemeral:
        if isinstance(target, StoredMessage | Ephemeral):
            return target
        msg = self.workspace.find_by_ts(target, channel)
        if msg is not None:
            return msg
        for eph in reversed(self.ephemerals):
            if eph.message_ts == target and (channel is None or eph.channel == channel):
                return eph
        raise AssertionError(f"no live message or ephemeral with ts {target!r}")

    async def click(
        self,
        message_ts_or_message: str | StoredMessage | Ephemeral,
        action_id: str,
        *,
        user: str = "U0ALICE",
        channel: str | None = None,
        value: str | None = None,
    ) -> AckResult:
        """A human clicks the element ``action_id`` on a stored message or ephemeral.

        The element must exist in the message's *current* blocks (stale buttons raise). For
        selects/overflows, ``value`` picks the option; for buttons it overrides the value.
        """
        target = self._click_target(message_ts_or_message, channel)
        if isinstance(target, StoredMessage) and target.deleted:
            raise AssertionError(f"message {target.ts} was deleted; nothing to click")
        if isinstance(target, Ephemeral) and (target.deleted or target.replaced):
            raise AssertionError(f"ephemeral {target.message_ts} is gone; nothing to click")
        found = payloads.find_action(target.blocks, action_id)
        ts = target.ts if isinstance(target, StoredMessage) else target.message_ts
        if found is None:
            available = payloads.action_ids(target.blocks)
            raise AssertionError(f"no {action_id!r} in message {ts}; available: {available}")
        block, element = found
        member = self.workspace.user(user)
        known = self.workspace.channels.get(target.channel)
        is_message = isinstance(target, StoredMessage)
        payload = payloads.block_actions_payload(
            team_id=self.team_id,
            app_id=self.app_id,
            user_id=user,
            user_name=member.name,
            channel_id=target.channel,
            channel_name=known.name if known else target.channel,
            trigger_id=self._new_trigger(user),
            response_url=self._new_response_url(
                channel=target.channel,
                user=user,
                origin=target if isinstance(target, StoredMessage) else None,
                ephemeral=None if isinstance(target, StoredMessage) else target,
            ),
            action=payloads.action_payload(
                block, element, action_ts=self._action_ts(), value=value
            ),
            message=payloads.message_body(target, team_id=self.team_id, bot_name=self.bot_name)
            if isinstance(target, StoredMessage)
            else None,
            message_ts=ts,
            thread_ts=target.thread_ts,
            is_ephemeral=not is_message,
        )
        return await self._deliver("interactive", payload)

    async def click_raw(self, payload: JSON) -> AckResult:
        """Deliver any interactive payload as-is (forged or unusual shapes)."""
        accepts = payload.get("type") in ("view_submission", "block_suggestion")
        return await self._deliver("interactive", payload, accepts_response_payload=accepts)

    def _find_view(self, view: str | JSON | OpenedView) -> OpenedView:
        if isinstance(view, OpenedView):
            return view
        view_id = view if isinstance(view, str) else view.get("id")
        for opened in reversed(self.views_opened):
            if opened.id == view_id:
                return opened
        raise AssertionError(f"no view {view_id!r} was opened")

    async def submit_view(
        self,
        view_id_or_view: str | JSON | OpenedView,
        values: dict[str, dict[str, Any]],
        *,
        user: str | None = None,
    ) -> AckResult:
        """A human submits an open modal with ``{block_id: {action_id: value}}`` values.

        Bare string values become ``plain_text_input`` state. The ack's ``response_action``
        is applied (``update`` replaces the view, ``errors`` keeps it open, otherwise closed).
        """
        opened = self._find_view(view_id_or_view)
        if opened.closed:
            raise AssertionError(f"view {opened.id} is closed")
        submitter = user or opened.user or "U0ALICE"
        response_urls = self._picked_channel_urls(opened.view, values, submitter)
        payload = payloads.view_submission_payload(
            team_id=self.team_id,
            app_id=self.app_id,
            bot_id=self.bot_id,
            user_id=submitter,
            user_name=self.workspace.user(submitter).name,
            trigger_id=self._new_trigger(submitter),
            view=opened.view,
            state_values=payloads.view_state_values(values),
        )
        payload["response_urls"] = response_urls
        result = await self._deliver("interactive", payload, accepts_response_payload=True)
        if result.ok:
            action = result.get("response_action")
            new_view = result.get("view")
            if action == "update" and isinstance(new_view, dict):
                opened.history.append(opened.view)
                opened.view = self._stored_view(new_view, opened.id, opened.root_view_id)
                opened.hash = opened.view["hash"]
            elif action == "push" and isinstance(new_view, dict):
                self._counter += 1
                pushed_id = f"V0EMU{self._counter:05d}"
                stored = self._stored_view(new_view, pushed_id, opened.root_view_id)
                self.views_opened.append(
                    OpenedView(
                        pushed_id,
                        stored,
                        payload["trigger_id"],
                        submitter,
                        stored["hash"],
                        root_view_id=opened.root_view_id,
                    )
                )
            elif action != "errors":
                opened.closed = True
        return result

    def _picked_channel_urls(
        self, view: JSON, values: dict[str, dict[str, Any]], user: str
    ) -> list[JSON]:
        """Slack gives a response_url for each conversations_select with
        ``response_url_enabled`` in a submitted modal (the picked channel's)."""
        urls: list[JSON] = []
        for block in view.get("blocks") or []:
            element = block.get("element") or {}
            if element.get("type") != "conversations_select":
                continue
            if not element.get("response_url_enabled"):
                continue
            state = (values.get(block.get("block_id", "")) or {}).get(element.get("action_id"))
            channel = state.get("selected_conversation") if isinstance(state, dict) else None
            if isinstance(channel, str) and channel:
                urls.append(
                    {
                        "block_id": block["block_id"],
                        "action_id": element["action_id"],
                        "channel_id": channel,
                        "response_url": self._new_response_url(channel=channel, user=user),
                    }
                )
        return urls

    async def suggest(
        self,
        view_id_or_view: str | JSON | OpenedView,
        *,
        block_id: str,
        action_id: str,
        value: str = "",
        user: str | None = None,
    ) -> AckResult:
        """A human types into an external select of an open modal: Slack asks the app for
        options (``block_suggestion``) and shows what the ack's ``options`` hold."""
        opened = self._find_view(view_id_or_view)
        asker = user or opened.user or "U0ALICE"
        payload: JSON = {
            "type": "block_suggestion",
            "user": {"id": asker, "name": self.workspace.user(asker).name, "team_id": self.team_id},
            "container": {"type": "view", "view_id": opened.id},
            "api_app_id": self.app_id,
            "token": "legacy-verification-token",
            "block_id": block_id,
            "action_id": action_id,
            "value": value,
            "team": {"id": self.team_id, "domain": "storyloop-test"},
            "enterprise": None,
            "is_enterprise_install": False,
            "view": opened.view,
        }
        return await self._deliver("interactive", payload, accepts_response_payload=True)

    # --- shortcuts (tests/emulators/slack_shortcuts.py) ------------------------------------

    async def global_shortcut(
        self, callback_id: str, *, user: str = "U0ALICE", team_id: str | None = None
    ) -> AckResult:
        """A human picks the global shortcut ``callback_id``; ``team_id`` forges another
        workspace. The app may answer with ``views.open`` using the payload's trigger_id."""
        return await deliver_global_shortcut(self, callback_id, user=user, team_id=team_id)

    async def message_shortcut(
        self,
        message_ts_or_message: str | StoredMessage,
        callback_id: str,
        *,
        user: str = "U0ALICE",
        channel: str | None = None,
        team_id: str | None = None,
    ) -> AckResult:
        """A human picks the message shortcut ``callback_id`` on a stored message."""
        target = self._click_target(message_ts_or_message, channel)
        if not isinstance(target, StoredMessage) or target.deleted:
            raise AssertionError("message shortcuts act on live messages only")
        return await deliver_message_shortcut(self, target, callback_id, user=user, team_id=team_id)


def _describe(predicate: Callable[[], Any]) -> str:
    """Best-effort source text of a predicate for timeout messages."""
    try:
        return inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        return getattr(predicate, "__qualname__", repr(predicate))
