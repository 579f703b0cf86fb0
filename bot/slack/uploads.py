"""Files into a session's thread, once: Slack's external upload flow with a ledger.

``files.getUploadURLExternal`` → POST the bytes → ``files.completeUploadExternal`` with the
thread's parent ts. The three steps are called one by one (what slack_sdk's ``files_upload_v2``
does in one go) so the file id can be recorded *before* the upload is completed: a job that
crashed part-way looks in the thread for that file before uploading again, so a file shows up
once however often the job is replayed. The completion answers without a message ts, which is
why the thread, not the answer, is the witness.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from bot.pipeline.models import Session
from bot.slack.gateway import SlackGateway

log = logging.getLogger(__name__)
ATTEMPTS = 3
_TRANSIENT = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)

_REASONS = {
    "file_uploads_disabled": (
        "File uploads are turned off in this workspace, so I can't share files here. An admin "
        "can allow them in the workspace settings; then use Retry."
    ),
    "file_upload_size_restricted": (
        "The file is larger than this workspace allows for uploads. An admin can raise the "
        "limit; then use Retry."
    ),
    "file_type_not_allowed": "This workspace doesn't allow this type of file to be uploaded.",
    "storage_limit_reached": (
        "This workspace's file storage is full, so Slack refused the file. Free some space, "
        "then use Retry."
    ),
    "not_in_channel": (
        "I'm not a member of this channel any more, so I can't share files here. Invite me "
        "back with `/invite @storyloop`, then use Retry."
    ),
    "channel_not_found": (
        "I can't reach this channel any more, so I can't share files here. Invite me back "
        "with `/invite @storyloop`, then use Retry."
    ),
    "download_failed": "I couldn't download a file of this session back from Slack. Use Retry.",
    "file_not_found": (
        "A file of this session is gone from Slack (deleted?), so I can't use it again. "
        "Regenerate that part to make it anew."
    ),
    "missing_scope": (
        "Storyloop's Slack app lacks permission to upload files (files:write). An admin needs "
        "to reinstall it from the current manifest."
    ),
}


class UploadRefused(Exception):
    """Slack refused the upload; ``user_message`` says so in plain words."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error
        self.user_message = _REASONS.get(
            error, f"Slack didn't accept the file upload (error: {error}). Use Retry."
        )


class Uploads:
    def __init__(self, gateway: SlackGateway, http: aiohttp.ClientSession) -> None:
        self.gateway = gateway
        self.ledger = gateway.ledger
        self.http = http

    async def upload_once(
        self,
        session: Session,
        slot: str,
        *,
        filename: str,
        data: bytes,
        title: str,
        thread_ts: str,
        comment: str | None = None,
        record: bool = True,
    ) -> str:
        """Share ``data`` in the thread unless ``slot`` was shared before; returns the file id.

        ``record=False``: the caller records the file id with its own next write (a paid
        item's state, ``set_item(…, record=…)``), one round trip for both. Until then the
        pending note (written before the upload is completed) is what a retry finds it by."""
        known = await self.ledger.message_ts(session, slot)
        if known:
            return known
        pending = await self.ledger.message_ts(session, f"{slot}:pending")
        if pending and await self._shared(session, pending, thread_ts):
            if not record:
                return pending
            return await self.ledger.record_message(session, slot, pending)
        file_id, url = await self._start(filename, len(data))
        await self.ledger.note_message(session, f"{slot}:pending", file_id)
        await self._send(url, data)
        await self._complete(session, file_id, title, thread_ts, comment)
        if not record:
            return file_id
        return await self.ledger.record_message(session, slot, file_id)

    async def fetch(self, file_id: str) -> bytes:
        """A file's bytes back from Slack (``files.info`` → ``url_private_download`` with the
        bot token; scope files:read). Slack is where a session's media is kept: a reference
        image or a clip needed again (a video's input image, a Redo's re-join) comes from there,
        not from a local disk another replica doesn't have."""
        try:
            info = await self.gateway.call("files_info", file=file_id)
        except SlackApiError as exc:
            raise UploadRefused(str(exc.response.get("error", ""))) from None
        found = info.get("file") or {}
        url = str(found.get("url_private_download") or found.get("url_private") or "")
        if not url:
            raise UploadRefused("file_not_found")
        headers = {"Authorization": f"Bearer {self.gateway.client.token}"}
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with self.http.get(url, headers=headers) as resp:
                    if resp.status == 200:
                        return await resp.read()
                    log.warning("downloading file %s answered HTTP %s", file_id, resp.status)
            except _TRANSIENT as exc:
                log.warning("downloading file %s failed (%s)", file_id, type(exc).__name__)
            await asyncio.sleep(0.2 * attempt)
        raise UploadRefused("download_failed")

    async def _start(self, filename: str, length: int) -> tuple[str, str]:
        try:
            resp = await self.gateway.call(
                "files_getUploadURLExternal", filename=filename, length=length
            )
        except SlackApiError as exc:
            raise UploadRefused(str(exc.response.get("error", ""))) from None
        return str(resp["file_id"]), str(resp["upload_url"])

    async def _send(self, url: str, data: bytes) -> None:
        """POST the bytes (no token: the URL is the credential). Re-sending is harmless."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with self.http.post(url, data=data) as resp:
                    if resp.status == 200:
                        return
                    log.warning("file upload answered HTTP %s", resp.status)
            except _TRANSIENT as exc:
                log.warning("file upload failed (%s), attempt %d", type(exc).__name__, attempt)
            await asyncio.sleep(0.2 * attempt)
        raise UploadRefused("upload_failed")

    async def _complete(
        self, session: Session, file_id: str, title: str, thread_ts: str, comment: str | None
    ) -> None:
        kwargs: dict[str, Any] = {
            "files": [{"id": file_id, "title": title}],
            "channel_id": session.channel_id,
            "thread_ts": thread_ts,
        }
        if comment:
            kwargs["initial_comment"] = comment
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await self.gateway.call("files_completeUploadExternal", **kwargs)
                return
            except SlackApiError as exc:
                raise UploadRefused(str(exc.response.get("error", ""))) from None
            except _TRANSIENT as exc:
                # Slack may have completed it before the connection broke: the thread knows.
                log.warning("completing upload failed (%s), attempt %d", exc, attempt)
                await asyncio.sleep(0.2 * attempt)
                if await self._shared(session, file_id, thread_ts):
                    return
        raise UploadRefused("upload_failed")

    async def _shared(self, session: Session, file_id: str, thread_ts: str) -> bool:
        """Is ``file_id`` shared in the thread already (an earlier attempt completed it)?"""
        try:
            resp = await self.gateway.client.conversations_replies(
                channel=session.channel_id, ts=thread_ts, limit=1000
            )
        except (SlackApiError, *_TRANSIENT) as exc:
            log.warning("could not look for file %s in the thread: %s", file_id, exc)
            return False
        for message in resp.get("messages") or []:
            for shared in message.get("files") or []:
                if isinstance(shared, dict) and shared.get("id") == file_id:
                    return True
        return False
