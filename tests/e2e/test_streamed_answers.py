"""Thread answers appear as they are written: streamed into Slack (chat.startStream /
appendStream / stopStream) where the workspace allows it, throttled edits where it doesn't —
and either way one message per answer, ending as a normal answer message.

The real app (both connection modes) against the Slack emulator, whose streaming methods have
Slack's errors and rate tiers (``tests/emulators/slack_streams.py``), and the fake LLM, which
streams the answer's JSON in 4-character tokens (so escapes are cut in half on the way).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bot.slack.mrkdwn import escape
from tests.e2e.harness import AppUnderTest, app_env, block_text, by_slot, settings_from
from tests.e2e.test_story_flow import start_story
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import ApiCall, SlackEmulator, StoredMessage
from tests.emulators.slack_streams import APPEND_STREAM, START_STREAM, STOP_STREAM
from tests.support.redis_server import RedisServer

BOTH = pytest.mark.parametrize("mode", ["socket", "http"], indirect=True)
LINES = [
    f'{i}. Scene {i} gets warmer light & a closer shot, "<!channel>" stays out — café ☕ 😀'
    for i in range(1, 16)
]
REPLY = "Here is what I'll change, step by step:\n" + "\n".join(LINES)
SLOW = 100  # tokens (4 characters) a second: the answer's JSON takes about four seconds


def feedback_requests(llm: FakeLLM) -> list[dict[str, object]]:
    return [
        r["json"] for r in llm.requests if "feedback_reply" in str(r["json"].get("response_format"))
    ]


def answers_after(emu: SlackEmulator, thread_ts: str, ts: str) -> list[StoredMessage]:
    """Every bot message in the thread after the reply ``ts`` (an answer is the only one)."""
    return [m for m in emu.thread("C0PUBLIC", thread_ts) if m.is_bot and float(m.ts) > float(ts)]


def ok_calls(emu: SlackEmulator, method: str) -> list[ApiCall]:
    return [c for c in emu.calls_to(method) if c.ok]


def gaps(calls: list[ApiCall]) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(calls)]


def progress_edits(emu: SlackEmulator, ts: str) -> list[ApiCall]:
    return [
        c
        for c in ok_calls(emu, "chat.update")
        if c.params.get("ts") == ts and "still writing" in json.dumps(c.params.get("blocks"))
    ]


async def reply_and_wait(
    emu: SlackEmulator, card: StoredMessage, text: str, *, user: str = "U0BOB"
) -> tuple[str, StoredMessage]:
    ts = await emu.user_posts("C0PUBLIC", text, user=user, thread_ts=card.ts)
    answer = (await emu.wait_for(lambda: by_slot(emu, f"reply:{ts}"), timeout=20))[0]
    return ts, answer


def shows_whole_answer(msg: StoredMessage | None) -> bool:
    text = block_text(msg)
    return all(escape(line) in text for line in LINES) and "still writing" not in text


@BOTH
async def test_an_answer_streams_and_ends_as_one_normal_message(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    card, _story = await start_story(emu)
    llm.feedback_reply = REPLY
    llm.set_latency(0.0, SLOW)
    ts, answer = await reply_and_wait(emu, card, "warmer light please, and closer shots")

    [start] = emu.calls_to(START_STREAM)
    assert start.params["thread_ts"] == card.ts  # a reply in the session's thread
    assert start.params["recipient_user_id"] == "U0BOB"  # to the person who asked
    assert start.params["recipient_team_id"] == emu.team_id
    appends = ok_calls(emu, APPEND_STREAM)
    assert len(appends) >= 2, "the answer appeared in several steps"
    assert all(gap >= 0.9 for gap in gaps(appends)), gaps(appends)  # throttled (Tier 4)
    assert len(ok_calls(emu, STOP_STREAM)) == 1
    # Everything streamed, escaped: the whole reply, nothing lost or doubled at the end.
    assert emu.streams.streamed_text("C0PUBLIC", answer.ts) == escape(REPLY)
    assert answer.ts == start.response["ts"]  # type: ignore[index]
    # Then an ordinary answer message: the blocks, the slot's metadata, the authors.
    assert not emu.streams.is_streaming("C0PUBLIC", answer.ts)
    assert shows_whole_answer(answer) and "<@U0BOB>" in block_text(answer)
    assert answers_after(emu, card.ts, ts) == [answer]
    assert emu.unescaped_broadcasts() == []
    [request] = feedback_requests(llm)  # one LLM call, streamed
    assert request["stream"] is True


@BOTH
async def test_a_workspace_that_cannot_stream_gets_throttled_edits_of_one_message(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    card, _story = await start_story(emu)
    emu.streams.refuse = "feature_not_enabled"
    llm.feedback_reply = REPLY
    llm.set_latency(0.0, SLOW)
    ts, answer = await reply_and_wait(emu, card, "warmer light please")
    await emu.wait_for(lambda: shows_whole_answer(emu.message("C0PUBLIC", answer.ts)), timeout=10)

    assert len(emu.calls_to(START_STREAM)) == 1  # asked once, refused
    assert ok_calls(emu, APPEND_STREAM) == []
    posted = [c for c in ok_calls(emu, "chat.postMessage") if c.response]
    assert [c.response["ts"] for c in posted if c.response["ts"] == answer.ts]  # type: ignore[index]
    edits = progress_edits(emu, answer.ts)
    assert len(edits) >= 2, "the answer grew by edits"
    assert all(gap >= 1.4 for gap in gaps(edits)), gaps(edits)  # at most one per ~1.5 s
    assert answers_after(emu, card.ts, ts) == [answer]
    first = answer.history[0] if answer.history else answer
    assert "still writing" in block_text(first)

    # The workspace is remembered: the next answer goes straight to edits.
    llm.feedback_reply = "Short and sweet & done."
    ts2, second = await reply_and_wait(emu, card, "and shorter", user="U0CAROL")
    await emu.wait_for(lambda: "Short and sweet &amp; done." in block_text(second), timeout=10)
    assert len(emu.calls_to(START_STREAM)) == 1
    assert answers_after(emu, card.ts, ts2) == [second]
    assert emu.unescaped_broadcasts() == []


@BOTH
async def test_a_reconnect_and_a_redelivery_mid_stream_keep_one_message(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest, mode: str
) -> None:
    card, _story = await start_story(emu)
    llm.feedback_reply = REPLY
    llm.set_latency(0.0, SLOW)
    ts = await emu.user_posts("C0PUBLIC", "warmer light", user="U0BOB", thread_ts=card.ts)
    await emu.wait_for(lambda: ok_calls(emu, APPEND_STREAM), timeout=10)
    if mode == "socket":
        assert await emu.drop_socket() >= 1
        await emu.wait_connected(timeout=10)
    # Slack sends the reply's event again (as after a lost ack); the app must not answer twice.
    [delivered] = [
        d.payload
        for d in emu.deliveries
        if d.kind == "events_api" and d.payload.get("event", {}).get("ts") == ts
    ]
    again = await emu.deliver_event(delivered, retry_attempt=1, retry_reason="timeout")
    assert again.ok
    answer = (await emu.wait_for(lambda: by_slot(emu, f"reply:{ts}"), timeout=20))[0]
    assert shows_whole_answer(answer)
    assert answers_after(emu, card.ts, ts) == [answer]
    assert len(emu.calls_to(START_STREAM)) == 1
    assert len(feedback_requests(llm)) == 1


@BOTH
async def test_replies_during_a_streamed_answer_get_one_answer_together(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    card, _story = await start_story(emu)
    llm.feedback_reply = REPLY
    llm.set_latency(0.0, SLOW)
    first = await emu.user_posts("C0PUBLIC", "warmer light", user="U0BOB", thread_ts=card.ts)
    await emu.wait_for(lambda: emu.calls_to(START_STREAM), timeout=10)
    second = await emu.user_posts("C0PUBLIC", "and a dog", user="U0CAROL", thread_ts=card.ts)
    third = await emu.user_posts("C0PUBLIC", "a small dog", user="U0ALICE", thread_ts=card.ts)
    together = (await emu.wait_for(lambda: by_slot(emu, f"reply:{third}"), timeout=30))[0]
    await emu.wait_for(lambda: shows_whole_answer(emu.message("C0PUBLIC", together.ts)))

    alone = by_slot(emu, f"reply:{first}")
    assert len(alone) == 1 and by_slot(emu, f"reply:{second}") == []
    assert answers_after(emu, card.ts, first) == [alone[0], together]
    text = block_text(emu.message("C0PUBLIC", together.ts))
    assert "<@U0CAROL>" in text and "<@U0ALICE>" in text  # the answer covers both
    assert len(ok_calls(emu, START_STREAM)) == 2 and len(feedback_requests(llm)) == 2


async def test_rate_limited_appends_wait_and_the_final_text_is_whole(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    card, _story = await start_story(emu)
    emu.streams.rate_limits[APPEND_STREAM] = (1, 2.5)  # far below Tier 4: 429s for sure
    llm.feedback_reply = REPLY
    llm.set_latency(0.0, SLOW)
    ts, answer = await reply_and_wait(emu, card, "warmer light")

    limited = [c for c in emu.calls_to(APPEND_STREAM) if c.status == 429]
    assert limited, "some appends were refused"
    # After a 429 the app waits Retry-After before the next append instead of hammering.
    assert len(emu.calls_to(APPEND_STREAM)) <= 2 * len(ok_calls(emu, APPEND_STREAM)) + 1
    assert emu.streams.streamed_text("C0PUBLIC", answer.ts) == escape(REPLY)
    assert shows_whole_answer(answer)
    assert answers_after(emu, card.ts, ts) == [answer]


@pytest.fixture
async def edits_app(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, redis: Redis
) -> AsyncIterator[AppUnderTest]:
    env = app_env(emu, llm, redis_server.url, mode="socket", STORYLOOP_STREAM_ANSWERS="false")
    running = await AppUnderTest(settings_from(env), redis_server.url).start()
    await emu.wait_connected()
    emu.mode = "socket"
    yield running
    await running.stop(grace_s=2)


async def test_streaming_can_be_turned_off(
    emu: SlackEmulator, llm: FakeLLM, edits_app: AppUnderTest
) -> None:
    card, _story = await start_story(emu)
    llm.feedback_reply = REPLY
    llm.set_latency(0.0, SLOW)
    ts, answer = await reply_and_wait(emu, card, "warmer light")
    await emu.wait_for(lambda: shows_whole_answer(emu.message("C0PUBLIC", answer.ts)), timeout=10)
    assert emu.calls_to(START_STREAM) == [] and emu.calls_to(APPEND_STREAM) == []
    assert len(progress_edits(emu, answer.ts)) >= 2
    assert answers_after(emu, card.ts, ts) == [answer]


async def test_an_llm_retry_mid_stream_never_shows_the_text_twice(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    card, _story = await start_story(emu)
    llm.feedback_reply = REPLY
    llm.set_latency(0.0, SLOW)
    llm.enqueue_fault("disconnect_midstream", fraction=0.6)  # the first attempt is cut off
    ts, answer = await reply_and_wait(emu, card, "warmer light")

    assert len(feedback_requests(llm)) == 2  # retried, as every LLM call is
    streamed = emu.streams.streamed_text("C0PUBLIC", answer.ts)
    # The retry starts from its first word; nothing of it is appended after the cut-off text.
    assert streamed and escape(REPLY).startswith(streamed) and streamed != escape(REPLY)
    assert shows_whole_answer(answer)
    assert answers_after(emu, card.ts, ts) == [answer]
