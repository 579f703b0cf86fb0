"""Proves the emulator's external file upload flow speaks what ``slack_sdk`` speaks.

Driven with the unmodified ``AsyncWebClient`` (``files_upload_v2`` and the three calls one by
one, as ``bot/slack/uploads.py`` makes them) and a real Bolt app for the ``file_share`` echo,
so tests of Storyloop's upload ledger can trust the emulator's files, errors and faults.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient

from tests.emulators.slack import SlackEmulator
from tests.emulators.slack_files import COMPLETE_UPLOAD, GET_UPLOAD_URL, UPLOAD_BYTES, file_type

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
NOTES = "# Scene 1\n\nA door *creaks* — in UTF-8.\n".encode()


@pytest.fixture(autouse=True)
def _no_slack_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bolt reads SLACK_* env vars (and may switch on OAuth); keep tests hermetic."""
    for name in ("SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "SLACK_BOT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name in ("SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def emu() -> AsyncIterator[SlackEmulator]:
    emulator = SlackEmulator(bot_token="xoxb-test", app_token="xapp-test")
    await emulator.start()
    yield emulator
    await emulator.stop()
    assert emulator.background_errors == []


@pytest.fixture
def client(emu: SlackEmulator) -> AsyncWebClient:
    """A bare SDK client; no retry handlers so each test states the retry policy it wants."""
    return AsyncWebClient(token="xoxb-test", base_url=emu.api_url, retry_handlers=[])


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def error_of(coro: Any) -> str:
    with pytest.raises(SlackApiError) as exc:
        await coro
    return str(exc.value.response["error"])


async def start_upload(
    client: AsyncWebClient, http: aiohttp.ClientSession, filename: str, data: bytes
) -> str:
    """Steps 1 and 2 of the flow, as the app makes them; returns the file id."""
    ticket = await client.files_getUploadURLExternal(filename=filename, length=len(data))
    async with http.post(ticket["upload_url"], data=data) as resp:
        assert resp.status == 200
    return str(ticket["file_id"])


# ---------------------------------------------------------------------------------------------
# The happy paths
# ---------------------------------------------------------------------------------------------


async def test_files_upload_v2_shares_into_the_thread(
    emu: SlackEmulator, client: AsyncWebClient, http: aiohttp.ClientSession
) -> None:
    root = await client.chat_postMessage(channel="C0PUBLIC", text="Chapter 1")
    human_ts = await emu.user_posts(
        "C0PUBLIC", "make it darker", thread_ts=root["ts"], deliver=False
    )
    resp = await client.files_upload_v2(
        filename="scene-1.png",
        content=PNG,
        channel="C0PUBLIC",
        thread_ts=root["ts"],
        title="Scene 1",
        initial_comment="Here is scene 1",
    )
    file_id = resp["file"]["id"]
    assert resp["files"][0]["title"] == "Scene 1"
    assert "ts" not in resp["file"]  # Slack's answer has no message ts: the thread is the witness

    replies = await client.conversations_replies(channel="C0PUBLIC", ts=root["ts"])
    messages = replies["messages"]
    assert [m["ts"] for m in messages[:2]] == [root["ts"], human_ts]
    assert messages[0]["reply_count"] == 2
    assert messages[0]["reply_users"] == ["U0ALICE", "U0BOT"]
    share = messages[2]
    assert share["thread_ts"] == root["ts"]
    assert share["parent_user_id"] == "U0BOT"
    assert share["user"] == "U0BOT"
    assert share["bot_id"] == "B0BOT"  # the same identity as its chat.postMessage posts
    assert share["text"] == "Here is scene 1"
    assert share["upload"] is True
    [shown] = share["files"]
    assert shown["id"] == file_id
    assert shown["name"] == "scene-1.png"
    assert shown["title"] == "Scene 1"
    assert (shown["mimetype"], shown["filetype"]) == ("image/png", "png")
    assert shown["size"] == len(PNG)
    assert shown["user"] == "U0BOT"
    assert shown["url_private"].startswith(emu.base_url)
    assert shown["permalink"].endswith(f"/{file_id}/scene-1.png")
    assert isinstance(shown["created"], int)
    history = await client.conversations_history(channel="C0PUBLIC")
    assert [m["ts"] for m in history["messages"]] == [root["ts"]]  # a reply, not top level

    [uploaded] = emu.uploaded_files
    assert uploaded.id == file_id
    assert (uploaded.filename, uploaded.title) == ("scene-1.png", "Scene 1")
    assert uploaded.bytes == PNG
    assert (uploaded.channel, uploaded.thread_ts) == ("C0PUBLIC", root["ts"])
    assert uploaded.message_ts == share["ts"]
    assert not uploaded.length_mismatch
    assert emu.files_in_thread("C0PUBLIC", root["ts"]) == [uploaded]
    assert emu.files_in_thread("C0PUBLIC", human_ts) == [uploaded]  # any ts of the thread
    assert [len(emu.calls_to(m)) for m in (GET_UPLOAD_URL, UPLOAD_BYTES, COMPLETE_UPLOAD)] == [
        1,
        1,
        1,
    ]
    assert emu.calls_to(GET_UPLOAD_URL)[0].params["filename"] == "scene-1.png"
    assert json.loads(emu.calls_to(COMPLETE_UPLOAD)[0].params["files"])[0]["id"] == file_id

    # url_private serves the bytes to the bot token only.
    auth = {"Authorization": "Bearer xoxb-test"}
    async with http.get(shown["url_private"], headers=auth) as resp_get:
        assert resp_get.status == 200
        assert resp_get.content_type == "image/png"
        assert await resp_get.read() == PNG
    async with http.get(shown["url_private"]) as anonymous:
        assert anonymous.status == 403


async def test_three_calls_raw_and_multipart(
    emu: SlackEmulator, client: AsyncWebClient, http: aiohttp.ClientSession
) -> None:
    root = await client.chat_postMessage(channel="C0PRIVATE", text="Chapter 1")
    ticket = await client.files_getUploadURLExternal(filename="notes.md", length=len(NOTES))
    assert ticket["file_id"].startswith("F")
    assert ticket["upload_url"].startswith(f"{emu.base_url}/upload/v1/")
    async with http.post(ticket["upload_url"], data=NOTES) as resp:  # no token: URL is the key
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        assert await resp.text() == f"OK - {len(NOTES)}"
    assert emu.uploaded_files == []  # uploaded, not shared: nothing to see yet
    assert [f.id for f in emu.uploads.pending] == [ticket["file_id"]]
    assert len(emu.thread("C0PRIVATE", root["ts"])) == 1

    csv = b"shot,seconds\n1,4\n2,6\n"
    second = await client.files_getUploadURLExternal(filename="shots.csv", length=len(csv))
    form = aiohttp.FormData()
    form.add_field("file", csv, filename="shots.csv", content_type="text/csv")
    async with http.post(second["upload_url"], data=form) as resp:
        assert await resp.text() == f"OK - {len(csv)}"

    done = await client.files_completeUploadExternal(
        files=[
            {"id": ticket["file_id"], "title": "Notes"},
            {"id": second["file_id"], "title": "Shot list"},
        ],
        channel_id="C0PRIVATE",
        thread_ts=root["ts"],
    )
    assert [(f["id"], f["title"]) for f in done["files"]] == [
        (ticket["file_id"], "Notes"),
        (second["file_id"], "Shot list"),
    ]
    replies = await client.conversations_replies(channel="C0PRIVATE", ts=root["ts"])
    share = replies["messages"][1]
    assert share["text"] == ""  # no initial_comment
    assert [(f["name"], f["mimetype"]) for f in share["files"]] == [
        ("notes.md", "text/markdown"),
        ("shots.csv", "text/csv"),
    ]
    assert [f.bytes for f in emu.files_in_thread("C0PRIVATE", root["ts"])] == [NOTES, csv]
    assert emu.uploads.pending == []


async def test_top_level_multi_channel_and_private_files(
    emu: SlackEmulator, client: AsyncWebClient, http: aiohttp.ClientSession
) -> None:
    top = await start_upload(client, http, "poster.png", PNG)
    await client.files_completeUploadExternal(
        files=[{"id": top, "title": "Poster"}],
        channels=["C0PUBLIC", "C0PRIVATE"],
        # slack_sdk sends this method's args in the query string: blocks as a JSON string.
        blocks=json.dumps(
            [{"type": "section", "text": {"type": "mrkdwn", "text": "*The poster*"}}]
        ),
    )
    for channel in ("C0PUBLIC", "C0PRIVATE"):
        [msg] = (await client.conversations_history(channel=channel))["messages"]
        assert msg["files"][0]["id"] == top
        assert msg["blocks"][0]["text"]["text"] == "*The poster*"
    [record] = emu.uploaded_files
    assert [c for c, _ in record.shares] == ["C0PUBLIC", "C0PRIVATE"]
    assert (record.channel, record.thread_ts) == ("C0PUBLIC", None)

    hidden = await start_upload(client, http, "draft.bin", b"\x00\x01")
    before = len(emu.messages)
    done = await client.files_completeUploadExternal(files=[{"id": hidden}])
    assert done["files"][0]["title"] == "draft.bin"  # the filename when no title is given
    assert len(emu.messages) == before  # without a channel the file stays private
    private = emu.uploaded_files[1]
    assert (private.id, private.channel, private.message_ts) == (hidden, None, None)
    assert private.filetype == "binary"


@pytest.mark.parametrize(
    ("filename", "mimetype", "filetype"),
    [
        ("a.png", "image/png", "png"),
        ("a.MD", "text/markdown", "markdown"),
        ("a.csv", "text/csv", "csv"),
        ("clip.mp4", "video/mp4", "mp4"),
        ("voice.mp3", "audio/mpeg", "mp3"),
        ("archive.tar.zst", "application/octet-stream", "binary"),
        ("README", "application/octet-stream", "binary"),
    ],
)
def test_types_come_from_the_extension(filename: str, mimetype: str, filetype: str) -> None:
    assert file_type(filename) == (mimetype, filetype)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


async def test_get_upload_url_errors(emu: SlackEmulator, client: AsyncWebClient) -> None:
    method = GET_UPLOAD_URL
    assert await error_of(client.api_call(method, params={"length": 3})) == "invalid_arguments"
    assert await error_of(client.api_call(method, params={"filename": "a.png"})) == (
        "invalid_arguments"
    )
    bad = client.files_getUploadURLExternal(filename="a.png", length="lots")  # type: ignore[arg-type]
    assert await error_of(bad) == "invalid_arguments"
    assert await error_of(client.files_getUploadURLExternal(filename="a.png", length=0)) == (
        "missing_argument"
    )
    with pytest.raises(SlackApiError) as exc:
        await client.files_getUploadURLExternal(filename="a.png", length=-5)
    assert "length" in exc.value.response["response_metadata"]["messages"][0]

    emu.max_file_bytes = 10
    assert (await client.files_getUploadURLExternal(filename="a.png", length=10))["ok"]
    with pytest.raises(SlackApiError) as too_big:
        await client.files_upload_v2(filename="a.png", content=b"x" * 11, channel="C0PUBLIC")
    assert too_big.value.response["error"] == "file_upload_size_restricted"

    emu.file_uploads_disabled = True
    assert await error_of(client.files_getUploadURLExternal(filename="a.png", length=1)) == (
        "file_uploads_disabled"
    )
    anonymous = AsyncWebClient(base_url=emu.api_url, retry_handlers=[])
    assert await error_of(anonymous.files_getUploadURLExternal(filename="a", length=1)) == (
        "not_authed"
    )
    assert len(emu.uploads.files) == 1  # only the one ticket that was allowed
    assert emu.messages == []


async def test_complete_errors_have_no_effect(
    emu: SlackEmulator, client: AsyncWebClient, http: aiohttp.ClientSession
) -> None:
    root = await client.chat_postMessage(channel="C0PUBLIC", text="Chapter 1")
    reply_ts = await emu.user_posts("C0PUBLIC", "nice", thread_ts=root["ts"], deliver=False)
    file_id = await start_upload(client, http, "scene.png", PNG)
    complete = client.files_completeUploadExternal

    async def fails(**kwargs: Any) -> str:
        return await error_of(complete(files=[{"id": file_id, "title": "t"}], **kwargs))

    assert await fails(channel_id="C0NOWHERE") == "channel_not_found"
    assert await fails(channel_id="D0ALICE") == "channel_not_found"
    assert await fails(channel_id="C0NOTJOINED") == "not_in_channel"
    # Private channels the bot is not in are invisible to it, as for chat.postMessage.
    assert await fails(channel_id="C0PRIVNO") == "channel_not_found"
    assert await fails(channels=["C0PUBLIC", "C0NOTJOINED"]) == "not_in_channel"
    assert await fails(channel_id="C0PUBLIC", thread_ts="1767225600.999999") == (
        "invalid_thread_ts"
    )
    assert await fails(channel_id="C0PUBLIC", thread_ts=reply_ts) == "invalid_thread_ts"
    assert await fails(thread_ts=root["ts"]) == "invalid_arguments"
    assert await fails(channels=["C0PUBLIC", "C0PRIVATE"], thread_ts=root["ts"]) == (
        "invalid_arguments"
    )
    bad_blocks = [{"type": "header", "text": {"type": "mrkdwn", "text": "H"}}]
    assert await fails(channel_id="C0PUBLIC", blocks=json.dumps(bad_blocks)) == "invalid_blocks"
    assert await error_of(complete(files=[{"id": "F0NOPE"}], channel_id="C0PUBLIC")) == (
        "file_not_found"
    )
    assert await error_of(complete(files=[], channel_id="C0PUBLIC")) == "invalid_arguments"
    raw = {"files": "not json", "channel_id": "C0PUBLIC"}
    assert await error_of(client.api_call(COMPLETE_UPLOAD, params=raw)) == "invalid_arguments"
    many: list[dict[str, str | None]] = [{"id": f"F{i}"} for i in range(101)]
    assert await error_of(complete(files=many, channel_id="C0PUBLIC")) == "invalid_arguments"
    # Never POSTed: Slack cannot find the file behind the ticket.
    unsent = await client.files_getUploadURLExternal(filename="unsent.png", length=3)
    unsent_files = [{"id": unsent["file_id"]}]
    unsent_error = await error_of(complete(files=unsent_files, channel_id="C0PUBLIC"))
    assert unsent_error == "file_not_found"
    emu.file_uploads_disabled = True
    assert await fails(channel_id="C0PUBLIC") == "file_uploads_disabled"
    emu.file_uploads_disabled = False

    # Nothing above shared anything; the file is still completable.
    assert emu.uploaded_files == []
    assert len(emu.thread("C0PUBLIC", root["ts"])) == 2
    await complete(
        files=[{"id": file_id, "title": "t"}], channel_id="C0PUBLIC", thread_ts=root["ts"]
    )
    assert [f.id for f in emu.files_in_thread("C0PUBLIC", root["ts"])] == [file_id]

    # A second completion of the same id: the ticket is spent, nothing is shared twice.
    again = complete(files=[{"id": file_id}], channel_id="C0PUBLIC", thread_ts=root["ts"])
    assert await error_of(again) == "file_not_found"
    assert len(emu.files_in_thread("C0PUBLIC", root["ts"])) == 1
    assert len(emu.uploaded_files) == 1


async def test_upload_url_quirks(
    emu: SlackEmulator, client: AsyncWebClient, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{emu.base_url}/upload/v1/no-such-ticket", data=b"x") as resp:
        assert resp.status == 404
    ticket = await client.files_getUploadURLExternal(filename="short.txt", length=10)
    async with http.post(ticket["upload_url"], data=b"abcd") as resp:
        assert resp.status == 200  # Slack accepts a byte count other than the declared one
        assert await resp.text() == "OK - 4"
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("comment", "no file here")
    async with http.post(ticket["upload_url"], data=form) as resp:
        assert resp.status == 400
    record = emu.uploads.files[ticket["file_id"]]
    assert (record.length, record.size, record.length_mismatch) == (10, 4, True)
    assert record.byte_posts == 1
    done = await client.files_completeUploadExternal(
        files=[{"id": ticket["file_id"]}], channel_id="C0PUBLIC"
    )
    assert done["files"][0]["size"] == 4
    async with http.post(ticket["upload_url"], data=b"late") as resp:
        assert resp.status == 404  # the ticket was consumed by the completion
    assert [c.status for c in emu.calls_to(UPLOAD_BYTES)] == [404, 200, 400, 404]
    assert emu.uploaded_files[0].bytes == b"abcd"


# ---------------------------------------------------------------------------------------------
# Fault injection
# ---------------------------------------------------------------------------------------------


async def test_fail_next_on_each_step(
    emu: SlackEmulator, client: AsyncWebClient, http: aiohttp.ClientSession
) -> None:
    emu.fail_next(GET_UPLOAD_URL, status=429, retry_after=3)
    with pytest.raises(SlackApiError) as limited:
        await client.files_getUploadURLExternal(filename="a.png", length=3)
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "3"
    assert limited.value.response["error"] == "ratelimited"
    assert emu.uploads.files == {}

    emu.fail_next(UPLOAD_BYTES, status=500, error="internal_error")
    with pytest.raises(SlackRequestError, match="status: 500"):
        await client.files_upload_v2(filename="a.png", content=b"abc", channel="C0PUBLIC")
    assert not emu.uploads.pending[0].uploaded  # the failed POST stored nothing

    file_id = await start_upload(client, http, "b.png", b"abc")
    emu.fail_next(COMPLETE_UPLOAD, status=200, error="file_update_failed")
    with pytest.raises(SlackApiError) as failed:
        await client.files_completeUploadExternal(files=[{"id": file_id}], channel_id="C0PUBLIC")
    assert failed.value.response["error"] == "file_update_failed"
    emu.fail_next(COMPLETE_UPLOAD, status=429, retry_after=2)
    with pytest.raises(SlackApiError) as later:
        await client.files_completeUploadExternal(files=[{"id": file_id}], channel_id="C0PUBLIC")
    assert later.value.response.headers["Retry-After"] == "2"
    assert emu.uploaded_files == []
    await client.files_completeUploadExternal(files=[{"id": file_id}], channel_id="C0PUBLIC")
    assert [f.id for f in emu.uploaded_files] == [file_id]
    assert [c.status for c in emu.calls_to(COMPLETE_UPLOAD)] == [200, 429, 200]
    assert [c.error for c in emu.calls_to(COMPLETE_UPLOAD)] == [
        "file_update_failed",
        "ratelimited",
        None,
    ]


async def test_reset_after_accept_completes_without_answer(
    emu: SlackEmulator, client: AsyncWebClient, http: aiohttp.ClientSession
) -> None:
    root = await client.chat_postMessage(channel="C0PUBLIC", text="Chapter 1")
    emu.reset_after_accept(UPLOAD_BYTES)
    ticket = await client.files_getUploadURLExternal(filename="a.png", length=3)
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.post(ticket["upload_url"], data=b"abc") as resp:
            await resp.read()
    assert emu.uploads.files[ticket["file_id"]].bytes == b"abc"  # stored before the reset

    emu.reset_after_accept(COMPLETE_UPLOAD)
    with pytest.raises(aiohttp.ClientConnectionError):
        await client.files_completeUploadExternal(
            files=[{"id": ticket["file_id"]}], channel_id="C0PUBLIC", thread_ts=root["ts"]
        )
    # Slack completed it; only the thread can tell. A retry cannot duplicate it.
    assert [f.id for f in emu.files_in_thread("C0PUBLIC", root["ts"])] == [ticket["file_id"]]
    retry = client.files_completeUploadExternal(
        files=[{"id": ticket["file_id"]}], channel_id="C0PUBLIC", thread_ts=root["ts"]
    )
    assert await error_of(retry) == "file_not_found"
    assert len(emu.files_in_thread("C0PUBLIC", root["ts"])) == 1
    assert emu.calls_to(COMPLETE_UPLOAD)[0].error == "connection_reset_after_accept"


# ---------------------------------------------------------------------------------------------
# The file_share echo reaches a Bolt app
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ignoring_self_events", [True, False])
async def test_file_share_echo_reaches_bolt(
    emu: SlackEmulator, client: AsyncWebClient, ignoring_self_events: bool
) -> None:
    app = AsyncApp(
        client=AsyncWebClient(token="xoxb-test", base_url=emu.api_url),
        signing_secret="test-secret",
        ignoring_self_events_enabled=ignoring_self_events,
    )
    seen: list[dict[str, Any]] = []

    @app.event("message")
    async def message(event: dict[str, Any]) -> None:
        seen.append(event)

    handler = AsyncSocketModeHandler(app, app_token="xapp-test")
    await asyncio.wait_for(handler.connect_async(), 5)  # type: ignore[no-untyped-call]
    try:
        await emu.wait_connected()
        root = await client.chat_postMessage(channel="C0PUBLIC", text="Chapter 1")
        resp = await client.files_upload_v2(
            filename="scene.png", content=PNG, channel="C0PUBLIC", thread_ts=root["ts"]
        )

        def share_deliveries() -> list[Any]:
            return [
                d
                for d in emu.deliveries
                if d.payload.get("event", {}).get("subtype") == "file_share"
            ]

        [delivery] = await emu.wait_for(share_deliveries)
        assert delivery.result.ok  # acked either way
        event = delivery.payload["event"]
        assert event["type"] == "message"
        assert (event["user"], event["bot_id"]) == ("U0BOT", "B0BOT")
        assert event["bot_profile"]["app_id"] == "A0STORY"
        assert event["thread_ts"] == root["ts"]
        assert event["parent_user_id"] == "U0BOT"
        assert event["files"][0]["id"] == resp["file"]["id"]
        assert event["upload"] is True
        assert event["channel_type"] == "channel"
        if ignoring_self_events:
            await asyncio.sleep(0.1)
            assert seen == []  # Bolt's self-event filter drops the bot's own share
        else:
            shares = await emu.wait_for(
                lambda: [e for e in seen if e.get("subtype") == "file_share"]
            )
            assert shares[0]["files"][0]["name"] == "scene.png"
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]
