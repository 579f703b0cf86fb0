"""Proves the emulator's chat streaming speaks what ``slack_sdk`` speaks, with Slack's errors.

Driven with the unmodified ``AsyncWebClient`` — its ``chat_startStream``/``appendStream``/
``stopStream`` methods and its ``chat_stream`` helper (which, since slack_sdk 3.40, sends
``chunks`` instead of ``markdown_text``) — so tests of Storyloop's answer streaming
(``bot/slack/streams.py``) can trust the emulator's streamed messages, errors and rate tiers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.emulators.slack import SlackEmulator
from tests.emulators.slack_streams import APPEND_STREAM, START_STREAM, STOP_STREAM

RECIPIENT: dict[str, Any] = {"recipient_user_id": "U0ALICE", "recipient_team_id": "T0TEAM"}


@pytest.fixture(autouse=True)
def _no_slack_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "SLACK_BOT_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def emu() -> AsyncIterator[SlackEmulator]:
    emulator = SlackEmulator()
    await emulator.start()
    yield emulator
    await emulator.stop()
    assert emulator.background_errors == []


@pytest.fixture
def client(emu: SlackEmulator) -> AsyncWebClient:
    """A bare SDK client: no retry handlers, so a 429 reaches the test."""
    return AsyncWebClient(token=emu.bot_token, base_url=emu.api_url, retry_handlers=[])


async def error_of(coro: Any) -> str:
    with pytest.raises(SlackApiError) as exc:
        await coro
    return str(exc.value.response["error"])


async def thread(emu: SlackEmulator, client: AsyncWebClient) -> str:
    root = await client.chat_postMessage(channel="C0PUBLIC", text="Chapter 1")
    await emu.user_posts("C0PUBLIC", "make it darker", thread_ts=root["ts"], deliver=False)
    return str(root["ts"])


async def replies(client: AsyncWebClient, root: str) -> list[dict[str, Any]]:
    resp = await client.conversations_replies(
        channel="C0PUBLIC", ts=root, include_all_metadata=True
    )
    return list(resp["messages"])


# ---------------------------------------------------------------------------------------------
# The life of a streamed message
# ---------------------------------------------------------------------------------------------


async def test_a_stream_is_a_message_in_the_thread_from_its_first_call(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    root = await thread(emu, client)
    start = await client.chat_startStream(
        channel="C0PUBLIC", thread_ts=root, markdown_text="Once ", **RECIPIENT
    )
    ts = start["ts"]
    assert start["channel"] == "C0PUBLIC"
    shown = (await replies(client, root))[-1]
    assert shown["ts"] == ts and shown["text"] == "Once " and shown["bot_id"] == emu.bot_id
    assert "metadata" not in shown and "blocks" not in shown
    assert emu.streams.is_streaming("C0PUBLIC", ts)

    await client.chat_appendStream(channel="C0PUBLIC", ts=ts, markdown_text="upon ")
    await client.chat_appendStream(
        channel="C0PUBLIC", ts=ts, chunks=[{"type": "markdown_text", "text": "a time"}]
    )
    assert (await replies(client, root))[-1]["text"] == "Once upon a time"

    meta = {"event_type": "storyloop_delivery", "event_payload": {"slot": "reply:1"}}
    stop = await client.chat_stopStream(channel="C0PUBLIC", ts=ts, markdown_text=".", metadata=meta)
    assert stop["message"]["text"] == "Once upon a time."
    assert not emu.streams.is_streaming("C0PUBLIC", ts)
    final = (await replies(client, root))[-1]
    assert final["metadata"] == meta
    assert emu.streams.streamed_text("C0PUBLIC", ts) == "Once upon a time."


async def test_the_sdk_chat_stream_helper_sends_chunks_and_the_emulator_takes_them(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    root = await thread(emu, client)
    streamer = await client.chat_stream(
        channel="C0PUBLIC", thread_ts=root, buffer_size=10, **RECIPIENT
    )
    await streamer.append(markdown_text="short")  # buffered: nothing sent yet
    assert emu.calls_to(START_STREAM) == []
    await streamer.append(markdown_text=" and long enough")
    await streamer.append(markdown_text=" to flush again")
    await streamer.stop(markdown_text=" — the end")
    start, append, stop = (emu.calls_to(m) for m in (START_STREAM, APPEND_STREAM, STOP_STREAM))
    assert len(start) == len(append) == len(stop) == 1
    assert "chunks" in start[0].params and "markdown_text" not in start[0].params
    ts = streamer.ts or ""
    msg = emu.message("C0PUBLIC", ts)
    assert msg is not None
    assert msg.text == "short and long enough to flush again — the end"
    assert not emu.streams.is_streaming("C0PUBLIC", ts)


async def test_a_streaming_message_cannot_be_edited_until_it_stops(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    root = await thread(emu, client)
    ts = (await client.chat_startStream(channel="C0PUBLIC", thread_ts=root, **RECIPIENT))["ts"]
    error = await error_of(client.chat_update(channel="C0PUBLIC", ts=ts, text="final"))
    assert error == "streaming_state_conflict"
    await client.chat_stopStream(channel="C0PUBLIC", ts=ts, chunks=[])  # what the SDK's stop sends
    await client.chat_update(channel="C0PUBLIC", ts=ts, text="final", blocks=[])
    assert (await replies(client, root))[-1]["text"] == "final"


async def test_a_stream_ends_by_itself_after_its_lifetime(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    root = await thread(emu, client)
    emu.streams.lifetime_s = 0.2
    ts = (await client.chat_startStream(channel="C0PUBLIC", thread_ts=root, **RECIPIENT))["ts"]
    await client.chat_appendStream(channel="C0PUBLIC", ts=ts, markdown_text="in time")
    await asyncio.sleep(0.25)
    error = await error_of(client.chat_appendStream(channel="C0PUBLIC", ts=ts, markdown_text="x"))
    assert error == "message_not_in_streaming_state"
    await client.chat_update(channel="C0PUBLIC", ts=ts, text="edited after it ended")


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


async def test_start_stream_needs_a_thread_and_recipients_outside_dms(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    root = await thread(emu, client)
    start = client.chat_startStream
    assert (
        await error_of(start(channel="C0PUBLIC", thread_ts=root, recipient_team_id="T0TEAM"))
        == "missing_recipient_user_id"
    )
    assert (
        await error_of(start(channel="C0PUBLIC", thread_ts=root, recipient_user_id="U0ALICE"))
        == "missing_recipient_team_id"
    )
    assert await error_of(start(channel="C0PUBLIC", thread_ts="", **RECIPIENT)) == (
        "invalid_arguments"
    )
    assert await error_of(start(channel="C0PUBLIC", thread_ts="1.000001", **RECIPIENT)) == (
        "invalid_thread_ts"
    )
    assert await error_of(start(channel="C0NOPE", thread_ts=root, **RECIPIENT)) == (
        "channel_not_found"
    )
    assert await error_of(start(channel="C0NOTJOINED", thread_ts=root, **RECIPIENT)) == (
        "not_in_channel"
    )
    wrong_user: dict[str, Any] = {**RECIPIENT, "recipient_user_id": "U0NOBODY"}
    assert await error_of(start(channel="C0PUBLIC", thread_ts=root, **wrong_user)) == (
        "user_not_found"
    )
    assert emu.bot_messages("C0PUBLIC")[-1].ts == root  # nothing was posted by the failures


async def test_append_and_stop_only_on_this_apps_streaming_messages(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    root = await thread(emu, client)
    human = emu.thread("C0PUBLIC", root)[-1].ts
    posted = (await client.chat_postMessage(channel="C0PUBLIC", thread_ts=root, text="hi"))["ts"]
    append = client.chat_appendStream
    assert await error_of(append(channel="C0PUBLIC", ts=human, markdown_text="x")) == (
        "message_not_owned_by_app"
    )
    assert await error_of(append(channel="C0PUBLIC", ts=posted, markdown_text="x")) == (
        "message_not_in_streaming_state"  # ours, but posted rather than streamed
    )
    assert await error_of(append(channel="C0PUBLIC", ts="9.000009", markdown_text="x")) == (
        "message_not_found"
    )
    ts = (await client.chat_startStream(channel="C0PUBLIC", thread_ts=root, **RECIPIENT))["ts"]
    assert await error_of(append(channel="C0PUBLIC", ts=ts)) == "no_text"
    await client.chat_stopStream(channel="C0PUBLIC", ts=ts)
    assert await error_of(append(channel="C0PUBLIC", ts=ts, markdown_text="x")) == (
        "message_not_in_streaming_state"
    )
    assert await error_of(client.chat_stopStream(channel="C0PUBLIC", ts=ts)) == (
        "message_not_in_streaming_state"
    )


async def test_text_limits_and_chunk_shapes(emu: SlackEmulator, client: AsyncWebClient) -> None:
    root = await thread(emu, client)
    ts = (await client.chat_startStream(channel="C0PUBLIC", thread_ts=root, **RECIPIENT))["ts"]
    append = client.chat_appendStream
    assert await error_of(append(channel="C0PUBLIC", ts=ts, markdown_text="x" * 12_001)) == (
        "msg_too_long"
    )
    await append(channel="C0PUBLIC", ts=ts, markdown_text="x" * 12_000)  # per call, not in all
    await append(channel="C0PUBLIC", ts=ts, markdown_text="y" * 12_000)
    bad: list[Any] = [[{"text": "no type"}], [{"type": "markdown_text"}], ["just a string"]]
    for chunks in bad:
        assert await error_of(append(channel="C0PUBLIC", ts=ts, chunks=chunks)) == (
            "invalid_chunks"
        )
    task = {"type": "task_update", "id": "t1", "title": "Thinking", "status": "in_progress"}
    await append(channel="C0PUBLIC", ts=ts, chunks=[task, {"type": "markdown_text", "text": "!"}])
    msg = emu.message("C0PUBLIC", ts)
    assert msg is not None and msg.text == "x" * 12_000 + "y" * 12_000 + "!"


async def test_user_stop_ends_appends(emu: SlackEmulator, client: AsyncWebClient) -> None:
    root = await thread(emu, client)
    ts = (await client.chat_startStream(channel="C0PUBLIC", thread_ts=root, **RECIPIENT))["ts"]
    emu.streams.press_stop("C0PUBLIC", ts)
    error = await error_of(client.chat_appendStream(channel="C0PUBLIC", ts=ts, markdown_text="x"))
    assert error == "stopped_by_user"


async def test_a_workspace_that_refuses_streaming(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    root = await thread(emu, client)
    emu.streams.refuse = "feature_not_enabled"
    start = client.chat_startStream(channel="C0PUBLIC", thread_ts=root, **RECIPIENT)
    assert await error_of(start) == "feature_not_enabled"
    assert emu.streams.streams == {}


# ---------------------------------------------------------------------------------------------
# Rate tiers
# ---------------------------------------------------------------------------------------------


async def test_each_method_is_limited_by_its_own_tier(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    root = await thread(emu, client)
    emu.streams.enforce_tiers(scale=1 / 60)  # the tiers' numbers per second instead of minute
    assert emu.streams.rate_limits[START_STREAM] == (20, 1.0)
    assert emu.streams.rate_limits[APPEND_STREAM] == (100, 1.0)
    ts = ""
    for _ in range(20):
        ts = (await client.chat_startStream(channel="C0PUBLIC", thread_ts=root, **RECIPIENT))["ts"]
    with pytest.raises(SlackApiError) as exc:
        await client.chat_startStream(channel="C0PUBLIC", thread_ts=root, **RECIPIENT)
    assert exc.value.response.status_code == 429
    assert exc.value.response["error"] == "ratelimited"
    assert int(exc.value.response.headers["Retry-After"]) >= 1
    for _ in range(21):  # appends (Tier 4) aren't counted against startStream (Tier 2)
        await client.chat_appendStream(channel="C0PUBLIC", ts=ts, markdown_text=".")
    streamed = len(emu.streams.streams)
    assert streamed == 20  # the limited call started nothing


async def test_a_custom_limit_answers_429_with_retry_after(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    root = await thread(emu, client)
    ts = (await client.chat_startStream(channel="C0PUBLIC", thread_ts=root, **RECIPIENT))["ts"]
    emu.streams.rate_limits[APPEND_STREAM] = (1, 2.0)
    await client.chat_appendStream(channel="C0PUBLIC", ts=ts, markdown_text="a")
    with pytest.raises(SlackApiError) as exc:
        await client.chat_appendStream(channel="C0PUBLIC", ts=ts, markdown_text="b")
    assert exc.value.response.status_code == 429
    assert exc.value.response.headers["Retry-After"] == "2"
    msg = emu.message("C0PUBLIC", ts)
    assert msg is not None and msg.text == "a"  # the refused call added nothing
