"""Slack's external file upload flow for the emulator: upload ticket, byte POST, completion.

Why a module of its own: the files v2 flow (SLACK.md §4.3, PROVIDERS.md "Slack: files and
media") is three requests to two hosts with state of its own (tickets issued, bytes waiting
to be completed) and failure modes Storyloop's upload ledger is built around: the byte POST
carries no token and may be repeated, the completion answers without a message ts, and a
crash between the steps leaves a file that was uploaded but never shared. ``SlackEmulator``
only routes the two Web API methods and two URLs here; the rules can be read on their own.

The flow, as ``slack_sdk`` speaks it (``files_upload_v2`` or the three calls one by one):

1. ``files.getUploadURLExternal?filename=&length=`` → ``upload_url`` + ``file_id``;
2. ``POST <upload_url>`` with the raw bytes (or multipart with a ``file`` field), no auth →
   ``200 text/plain "OK - <bytes>"``;
3. ``files.completeUploadExternal`` with ``files=[{"id","title"}]`` (JSON string),
   ``channel_id``/``channels``, ``thread_ts``, ``initial_comment``/``blocks`` → one message
   per channel carrying every file, echoed to the app as a ``file_share`` message event.

Where Slack's documentation is silent, the behaviour chosen here (each pinned by a test in
``tests/integration/test_slack_files.py``):

- Completing a file id a second time answers ``file_not_found`` and shares nothing: the first
  completion consumes the upload ticket (its upload URL then answers 404), so a retried
  completion can never produce a second copy of the file; the thread is the only witness of
  a completion whose answer was lost (``reset_after_accept``).
- ``thread_ts`` must be a live top-level message of the single target channel, otherwise
  ``invalid_thread_ts`` (the name Slack uses for the same mistake in
  ``assistant.threads.setStatus`` and ``chat.startStream``). Unlike ``chat.postMessage`` a
  reply's ts is not re-filed under its root: the method's docs say "never use a reply's ts".
  ``thread_ts`` without a channel, or with several, is ``invalid_arguments``.
- A byte count different from the declared ``length`` is accepted (200, like Slack) and
  remembered on the file (``SlackFile.length_mismatch``); completion still succeeds.
- ``length`` of 0 is ``missing_argument`` (the docs: "typically only occurs when the length
  provided is 0"); a missing/non-integer/negative ``length`` or a missing ``filename`` is
  ``invalid_arguments`` with a ``response_metadata.messages`` line.
- Channel rules are the workspace's (``Workspace.channel_error``), as for chat.postMessage:
  a public channel the bot is not in → ``not_in_channel``; a private channel it is not in is
  invisible → ``channel_not_found``.

The byte POST is logged in ``SlackEmulator.calls`` under the pseudo-method ``"upload/v1"``
(:data:`UPLOAD_BYTES`), so ``calls_to``, ``fail_next``, ``delay`` and ``reset_after_accept``
work on it like on Web API methods.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import BodyPartReader, web

from tests.emulators import slack_payloads as payloads
from tests.emulators.slack_state import JSON, ApiCall, ApiError, Channel, StoredMessage

if TYPE_CHECKING:
    from tests.emulators.slack import SlackEmulator

__all__ = [
    "COMPLETE_UPLOAD",
    "DEFAULT_MAX_FILE_BYTES",
    "GET_UPLOAD_URL",
    "UPLOAD_BYTES",
    "FileUploads",
    "SlackFile",
    "file_type",
]

GET_UPLOAD_URL = "files.getUploadURLExternal"
COMPLETE_UPLOAD = "files.completeUploadExternal"
#: Pseudo-method name under which byte POSTs to an upload URL are logged and faulted.
UPLOAD_BYTES = "upload/v1"
#: Slack's per-file limit (slack_sdk also refuses bigger files client-side).
DEFAULT_MAX_FILE_BYTES = 1 << 30
MAX_FILES_PER_COMPLETION = 100
MAX_CHANNELS = 100
MAX_ALT_TXT = 1000

# Extension → (mimetype, Slack ``filetype``). Anything else is an opaque binary.
_TYPES: dict[str, tuple[str, str]] = {
    "png": ("image/png", "png"),
    "jpg": ("image/jpeg", "jpg"),
    "jpeg": ("image/jpeg", "jpg"),
    "gif": ("image/gif", "gif"),
    "md": ("text/markdown", "markdown"),
    "txt": ("text/plain", "text"),
    "csv": ("text/csv", "csv"),
    "json": ("application/json", "json"),
    "mp4": ("video/mp4", "mp4"),
    "mp3": ("audio/mpeg", "mp3"),
}
_BINARY = ("application/octet-stream", "binary")


def file_type(filename: str) -> tuple[str, str]:
    """``(mimetype, filetype)`` Slack derives from the filename's extension."""
    _, dot, ext = filename.rpartition(".")
    return _TYPES.get(ext.lower(), _BINARY) if dot else _BINARY


def _str(params: JSON, key: str) -> str | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    return str(value)


def _invalid(detail: str) -> ApiError:
    """``invalid_arguments`` with Slack's ``[ERROR] …`` detail line."""
    return ApiError("invalid_arguments", response_metadata={"messages": [f"[ERROR] {detail}"]})


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


@dataclass
class SlackFile:
    """One file from ``files.getUploadURLExternal`` on; ``completed`` once shared (or kept
    private) by ``files.completeUploadExternal``.

    ``channel``/``thread_ts``/``message_ts`` describe the first share (``None`` for a private
    file); ``shares`` lists every ``(channel, message ts)`` when several channels were given.
    ``byte_posts`` counts POSTs to the upload URL (the last one's bytes are kept).
    """

    id: str
    filename: str
    length: int
    upload_url: str
    created: int
    user: str
    alt_txt: str | None = None
    data: builtins.bytes | None = None
    byte_posts: int = 0
    title: str | None = None
    completed: bool = False
    channel: str | None = None
    thread_ts: str | None = None
    message_ts: str | None = None
    shares: list[tuple[str, str]] = field(default_factory=list)

    @property
    def uploaded(self) -> bool:
        """True once bytes were POSTed to the upload URL."""
        return self.data is not None

    @property
    def size(self) -> int:
        """Bytes actually received (0 before the POST)."""
        return len(self.data or b"")

    @property
    def length_mismatch(self) -> bool:
        """True if the POSTed byte count differs from the declared ``length``."""
        return self.data is not None and len(self.data) != self.length

    @property
    def mimetype(self) -> str:
        """MIME type from the extension (``application/octet-stream`` if unknown)."""
        return file_type(self.filename)[0]

    @property
    def filetype(self) -> str:
        """Slack's ``filetype`` from the extension (``binary`` if unknown)."""
        return file_type(self.filename)[1]

    def to_api(self, *, team_id: str, base_url: str) -> JSON:
        """The file object inside a message's ``files`` and the completion's answer."""
        key = f"{team_id}-{self.id}"
        name = quote(self.filename)
        url = f"{base_url}/files-pri/{key}/{name}"
        out: JSON = {
            "id": self.id,
            "created": self.created,
            "timestamp": self.created,
            "name": self.filename,
            "title": self.title or self.filename,
            "mimetype": self.mimetype,
            "filetype": self.filetype,
            "user": self.user,
            "user_team": team_id,
            "editable": False,
            "size": self.size,
            "mode": "hosted",
            "is_external": False,
            "display_as_bot": False,
            "url_private": url,
            "url_private_download": f"{url}?download=1",
            "permalink": f"https://storyloop-test.slack.com/files/{self.user}/{self.id}/{name}",
        }
        if self.alt_txt:
            out["alt_txt"] = self.alt_txt
        return out

    # Last in the class so the name does not shadow the builtin in the annotations above.
    @property
    def bytes(self) -> builtins.bytes:
        """The stored bytes (``b""`` before the POST)."""
        return self.data or b""


# ---------------------------------------------------------------------------------------------
# The flow
# ---------------------------------------------------------------------------------------------


class FileUploads:
    """Files of the emulated workspace and the handlers of the external upload flow.

    Owned by a :class:`~tests.emulators.slack.SlackEmulator` (``emu.uploads``), whose knobs
    ``file_uploads_disabled`` and ``max_file_bytes`` it reads on every call, and whose
    workspace, fault queues and echo it uses so files behave like every other method.
    """

    def __init__(self, emu: SlackEmulator) -> None:
        self._emu = emu
        #: Every file by id, completed or not (a crash may leave some pending for ever).
        self.files: dict[str, SlackFile] = {}
        #: Completed files in completion order (private ones included).
        self.completed: list[SlackFile] = []
        self._tickets: dict[str, SlackFile] = {}
        self._count = 0

    @property
    def pending(self) -> list[SlackFile]:
        """Files with an upload URL that were never completed, in creation order."""
        return [f for f in self.files.values() if not f.completed]

    def in_thread(self, channel: str, thread_ts: str) -> list[SlackFile]:
        """Files visible in the thread (root included), in message order, as
        ``conversations.replies`` would show them: deleted messages hide their files.
        """
        workspace = self._emu.workspace
        root = workspace.thread_root_ts(channel, thread_ts) or thread_ts
        found: list[SlackFile] = []
        for msg in workspace.thread(channel, root):
            for shown in msg.files or []:
                record = self.files.get(str(shown.get("id")))
                if record is not None:
                    found.append(record)
        return found

    # -- files.getUploadURLExternal -----------------------------------------------------------

    def get_upload_url_external(self, params: JSON) -> JSON:
        """Issue a file id and a one-off upload URL (nothing is visible until completion)."""
        emu = self._emu
        filename = _str(params, "filename")
        if filename is None:
            raise _invalid("missing required field: filename")
        length = _length(params)
        alt_txt = _str(params, "alt_txt")
        if emu.file_uploads_disabled:
            raise ApiError("file_uploads_disabled")
        if alt_txt is not None and len(alt_txt) > MAX_ALT_TXT:
            raise ApiError("alt_txt_too_large")
        if length > emu.max_file_bytes:
            raise ApiError("file_upload_size_restricted")
        self._count += 1
        file_id = f"F0EMU{self._count:06d}"
        ticket = f"{file_id.lower()}-{secrets.token_urlsafe(12)}"
        record = SlackFile(
            id=file_id,
            filename=filename,
            length=length,
            upload_url=f"{emu.base_url}/upload/v1/{ticket}",
            created=int(time.time()),
            user=emu.bot_user_id,
            alt_txt=alt_txt,
        )
        self.files[file_id] = record
        self._tickets[ticket] = record
        return {"upload_url": record.upload_url, "file_id": file_id}

    # -- POST <upload_url> --------------------------------------------------------------------

    async def handle_upload(self, request: web.Request) -> web.StreamResponse:
        """Receive the bytes: no token (the URL is the credential), any number of times
        until completion. Faults, delays and resets come from the emulator's queues under
        :data:`UPLOAD_BYTES`.
        """
        emu = self._emu
        record = self._tickets.get(request.match_info["ticket"])
        params: JSON = {"file_id": record.id if record else None}
        call = ApiCall(UPLOAD_BYTES, params, None, time.monotonic(), request.method)
        emu.calls.append(call)
        data = await _read_upload_body(request)
        params["bytes"] = None if data is None else len(data)
        if UPLOAD_BYTES in emu._delays:
            await asyncio.sleep(emu._delays[UPLOAD_BYTES])
        queue = emu._faults.get(UPLOAD_BYTES)
        if queue:
            return emu._fault_reply(call, queue.popleft())
        if record is None or record.completed:
            return _plain(call, 404, "Not Found", "upload_url_not_found")
        if data is None:
            return _plain(call, 400, "no file field in multipart body", "no_file_data")
        record.data = data
        record.byte_posts += 1
        response = _plain(call, 200, f"OK - {len(data)}", None)
        if emu._resets.get(UPLOAD_BYTES):
            emu._resets[UPLOAD_BYTES] -= 1
            call.error = "connection_reset_after_accept"
            if request.transport is not None:
                request.transport.abort()
        return response

    # -- files.completeUploadExternal ---------------------------------------------------------

    def complete_upload_external(self, params: JSON) -> JSON:
        """Validate everything first, then complete the files and share them: one message per
        channel carrying every file, authored by the bot like its chat.postMessage posts.
        """
        emu = self._emu
        workspace = emu.workspace
        entries = _file_entries(params)
        channel_ids = _channel_ids(params)
        if emu.file_uploads_disabled:
            raise ApiError("file_uploads_disabled")
        channels: list[Channel] = []
        for channel_id in channel_ids:
            error = workspace.channel_error(channel_id, need_membership=True)
            if error:
                raise ApiError(error)
            channels.append(workspace.channels[channel_id])
        thread_ts = _str(params, "thread_ts")
        if thread_ts is not None:
            if len(channels) != 1:
                raise _invalid("thread_ts needs exactly one channel (channel_id)")
            parent = workspace.message(channels[0].id, thread_ts)
            if parent is None or parent.deleted or parent.is_reply:
                raise ApiError("invalid_thread_ts")
        records: list[SlackFile] = []
        for entry in entries:
            record = self.files.get(entry["id"])
            if record is None or record.completed or not record.uploaded:
                raise ApiError("file_not_found")
            records.append(record)
        comment = params.get("initial_comment")
        text = "" if comment is None else str(comment)
        # "If the initial_comment field is provided, the blocks field is ignored" (docs).
        blocks = None if text else emu._blocks(params)

        for record, entry in zip(records, entries, strict=True):
            title = entry.get("title")
            record.title = str(title) if title else record.filename
            record.completed = True
        shown = [r.to_api(team_id=emu.team_id, base_url=emu.base_url) for r in records]
        for channel in channels:
            msg = workspace.store(
                StoredMessage(
                    channel=channel.id,
                    ts=workspace.clock.next(),
                    user=emu.bot_user_id,
                    text=text,
                    thread_ts=thread_ts,
                    bot_id=emu.bot_id,
                    app_id=emu.app_id,
                    blocks=blocks,
                    files=[dict(f) for f in shown],
                    source=COMPLETE_UPLOAD,
                )
            )
            for record in records:
                record.shares.append((channel.id, msg.ts))
                if record.channel is None:
                    record.channel, record.thread_ts, record.message_ts = (
                        channel.id,
                        thread_ts,
                        msg.ts,
                    )
            emu._echo(self._file_share_event(msg, channel))
        self.completed.extend(records)
        # Like Slack: the file objects, no message ts (the thread is the witness).
        return {"files": shown}

    def _file_share_event(self, msg: StoredMessage, channel: Channel) -> JSON:
        """The ``message``/``file_share`` event Slack sends for the bot's own upload: it
        carries the bot's ``user``, ``bot_id`` and ``bot_profile``, so Bolt's self-event
        filter and the app's noise filter both get to drop it.
        """
        emu = self._emu
        event = payloads.message_event(
            msg,
            channel_type=channel.channel_type,
            team_id=emu.team_id,
            parent_user_id=emu._parent_user(msg),
            bot_name=emu.bot_name,
        )
        event["subtype"] = "file_share"
        event["files"] = msg.files
        event["upload"] = True
        event["display_as_bot"] = False
        return event

    # -- files.info ---------------------------------------------------------------------------

    def files_info(self, params: JSON) -> JSON:
        """``files.info?file=F…`` (files:read): the file object, for its ``url_private``."""
        file_id = str(params.get("file") or "")
        record = self.files.get(file_id)
        if record is None or not record.completed:
            raise ApiError("file_not_found")
        emu = self._emu
        return {"file": record.to_api(team_id=emu.team_id, base_url=emu.base_url)}

    # -- GET url_private ----------------------------------------------------------------------

    async def handle_download(self, request: web.Request) -> web.StreamResponse:
        """Serve ``url_private`` to the bot token (files:read), so the URL is truthful."""
        emu = self._emu
        record = self.files.get(request.match_info["key"].rpartition("-")[2])
        if request.headers.get("Authorization") != f"Bearer {emu.bot_token}":
            return web.Response(status=403, text="Forbidden")
        if record is None or not record.completed:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=record.bytes, content_type=record.mimetype)


# ---------------------------------------------------------------------------------------------
# Parameter parsing
# ---------------------------------------------------------------------------------------------


def _length(params: JSON) -> int:
    raw = params.get("length")
    if raw is None or raw == "":
        raise _invalid("missing required field: length")
    if isinstance(raw, bool):
        raise _invalid("length must be an integer")
    try:
        value = int(str(raw))
    except ValueError:
        raise _invalid("length must be an integer") from None
    if value == 0:
        raise ApiError("missing_argument")
    if value < 0:
        raise _invalid("length must be at least 1")
    return value


def _file_entries(params: JSON) -> list[JSON]:
    """``files``: a JSON array string (query/form) or an array (JSON body) of ``{id, title}``."""
    raw: Any = params.get("files")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            raise _invalid("files must be a JSON array") from None
    if not isinstance(raw, list) or not raw:
        raise _invalid("missing required field: files")
    if len(raw) > MAX_FILES_PER_COMPLETION:
        raise _invalid(f"no more than {MAX_FILES_PER_COMPLETION} items allowed")
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        file_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(file_id, str) or not file_id:
            raise _invalid(f"files/{i} needs a string id")
        if file_id in seen:
            raise _invalid(f"files/{i}: duplicate id {file_id}")
        seen.add(file_id)
    return list(raw)


def _channel_ids(params: JSON) -> list[str]:
    """``channel_id`` plus the ``channels`` CSV (or array), deduplicated, in order."""
    found: list[str] = []
    first = _str(params, "channel_id")
    if first:
        found.append(first)
    raw = params.get("channels")
    items = raw if isinstance(raw, list) else str(raw or "").split(",")
    for item in items:
        channel_id = str(item).strip()
        if channel_id and channel_id not in found:
            found.append(channel_id)
    if len(found) > MAX_CHANNELS:
        raise ApiError("channels_limit_exceeded")
    return found


async def _read_upload_body(request: web.Request) -> bytes | None:
    """Raw body (slack_sdk's ``data=<bytes>``), or the ``file`` part of a multipart form
    (``None`` if the form has none). Streams, so aiohttp's 1 MiB body cap does not apply.
    """
    if request.content_type != "multipart/form-data":
        return await request.content.read()
    reader = await request.multipart()
    found: bytes | None = None
    async for part in reader:
        if isinstance(part, BodyPartReader):
            content = bytes(await part.read(decode=False))
            if part.name == "file" and found is None:
                found = content
    return found


def _plain(call: ApiCall, status: int, text: str, error: str | None) -> web.Response:
    """A ``text/plain`` answer from the upload host, recorded on the call."""
    call.status = status
    call.ok = status == 200
    call.error = error
    call.response = {"status": status, "text": text}
    return web.Response(status=status, text=text, content_type="text/plain")
