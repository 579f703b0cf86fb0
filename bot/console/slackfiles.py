"""Files in the terminal's Slack: the external upload flow, and downloads back.

``files.getUploadURLExternal`` → POST the bytes → ``files.completeUploadExternal`` shares them
in the thread, as Slack does (SLACK.md §4.3). Shared files are also written to the console's
folder so they can be opened; ``files.info`` and the download URL serve them back to the app
(a video's clips are read back from Slack).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from bot.console.payloads import JSON
from bot.console.workspace import ApiError, Host, Message, json_param, required


class Files:
    def __init__(self, host: Host, folder: Path) -> None:
        self.host = host
        self.folder = folder
        self._tickets: dict[str, tuple[str, str]] = {}  # ticket → (file id, name)
        self._names: dict[str, str] = {}  # file id → name
        self._bytes: dict[str, bytes] = {}
        self._info: dict[str, JSON] = {}

    def methods(self) -> dict[str, Callable[[JSON], JSON]]:
        return {
            "files.getUploadURLExternal": self._upload_url,
            "files.completeUploadExternal": self._complete,
            "files.info": self._file_info,
        }

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/upload/{ticket}", self._handle_upload)
        app.router.add_get("/files/{file_id}/{name}", self._handle_download)

    async def _handle_upload(self, request: web.Request) -> web.Response:
        ticket = self._tickets.get(request.match_info["ticket"])
        if ticket is None:
            return web.Response(status=404, text="unknown upload")
        self._bytes[ticket[0]] = data = await request.read()
        return web.Response(text=f"OK - {len(data)}")

    async def _handle_download(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization", "") != f"Bearer {self.host.token}":
            return web.Response(status=403)
        data = self._bytes.get(request.match_info["file_id"])
        if data is None or request.match_info["file_id"] not in self._info:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    def _upload_url(self, params: JSON) -> JSON:
        name = Path(required(params, "filename")).name or "file"
        int(required(params, "length"))
        file_id = self.host.new_id("F")
        ticket = secrets.token_hex(8)
        self._tickets[ticket] = (file_id, name)
        self._names[file_id] = name
        return {"upload_url": f"{self.host.base_url}/upload/{ticket}", "file_id": file_id}

    def _complete(self, params: JSON) -> JSON:
        files = json_param(params, "files")
        if not isinstance(files, list) or not files:
            raise ApiError("invalid_arguments")
        channel = self.host.channel(params, "channel_id")
        thread_ts = str(params.get("thread_ts") or "") or None
        if thread_ts is not None and thread_ts not in self.host.messages:
            raise ApiError("thread_not_found")
        shared: list[JSON] = []
        for item in files:
            file_id = str(item.get("id") if isinstance(item, dict) else "")
            if file_id not in self._bytes:
                raise ApiError("file_not_found")
            title = str(item.get("title") or self._names[file_id])
            shared.append(self._store(file_id, title))
        comment = str(params.get("initial_comment") or "")
        bot = self.host.ws.bot_user_id
        msg = Message(self.host.next_ts(), channel, bot, comment, None, thread_ts, files=shared)
        self.host.messages[msg.ts] = msg
        for info in shared:
            path = self.folder / f"{info['id']}-{info['name']}"
            self.host.tell("shared", str(info["title"]), int(info["size"]), path, msg)
        return {"files": [{"id": f["id"], "title": f["title"]} for f in shared]}

    def _store(self, file_id: str, title: str) -> JSON:
        name, data = self._names[file_id], self._bytes[file_id]
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{file_id}-{name}").write_bytes(data)
        url = f"{self.host.base_url}/files/{file_id}/{quote(name)}"
        info: JSON = {
            "id": file_id,
            "name": name,
            "title": title,
            "size": len(data),
            "url_private": url,
            "url_private_download": url,
            "channels": [self.host.ws.channel_id],
        }
        self._info[file_id] = info
        return info

    def _file_info(self, params: JSON) -> JSON:
        info = self._info.get(required(params, "file", "file_not_found"))
        if info is None:
            raise ApiError("file_not_found")
        return {"file": info}
