"""kill -9 while a thread answer streams: after restart the thread has exactly one answer
message, showing the whole answer — counted in the emulator's thread, not inferred from the
app's state (a streaming message carries no metadata, so the checker's slots alone can't see a
second one).

Each run makes a story reviewable in an in-process app, starts a real replica process with
``STORYLOOP_CRASH_POINT`` set, posts a reply whose answer streams for a few seconds, lets the
process SIGKILL itself, and starts a fresh replica on the same Redis:

- ``stream_started``: chat.startStream answered, its ts not yet recorded — the restarted job
  must find the message in the thread (ours, after the reply, no metadata) and adopt it;
- ``mid_stream@2``: the ts is recorded and text appended twice — the restarted job must stop
  that stream and finish the same message;
- ``after_llm``: the whole answer streamed and cached, the stream never stopped — the restarted
  job finishes the message from the cache, without asking the LLM again.
"""

from __future__ import annotations

import signal

import pytest
from redis.asyncio import Redis

from bot.slack.mrkdwn import escape
from tests.chaos.checker import Trace, check, wait_quiescent
from tests.chaos.support import Replicas, chaos_env, session_slot, start_story
from tests.e2e.harness import AppUnderTest, block_text, settings_from
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator, StoredMessage
from tests.emulators.slack_streams import APPEND_STREAM, START_STREAM
from tests.support.redis_server import RedisServer

LINES = [
    f"{i}. Scene {i}: warmer light & a closer shot, <!here> stays text — 😀" for i in range(12)
]
REPLY = "Here is the plan:\n" + "\n".join(LINES)


def answers_after(emu: SlackEmulator, thread_ts: str, ts: str) -> list[StoredMessage]:
    return [m for m in emu.thread("C0PUBLIC", thread_ts) if m.is_bot and float(m.ts) > float(ts)]


def feedback_requests(llm: FakeLLM) -> int:
    return sum(1 for r in llm.requests if "feedback_reply" in str(r["json"].get("response_format")))


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("point", "asks_again"),
    [("stream_started", True), ("mid_stream@2", True), ("after_llm", False)],
)
async def test_kill_9_while_an_answer_streams_leaves_one_whole_answer(
    point: str,
    asks_again: bool,
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    redis: Redis,
    replicas: Replicas,
    trace: Trace,
) -> None:
    env = chaos_env(emu, llm, redis_server.url)
    setup = await AppUnderTest(settings_from(env), redis_server.url).start()
    try:
        await emu.wait_connected()
        trigger, card, _story = await start_story(trace)
    finally:
        await setup.stop(grace_s=2)
    sid = trigger.session or ""

    crashing = await replicas.new("crashing", env).start(STORYLOOP_CRASH_POINT=point)
    await emu.wait_connected(timeout=20)
    llm.feedback_reply = REPLY
    llm.set_latency(0.0, 100)  # about three seconds of streaming
    reply = await trace.reply(card, "warmer light and closer shots", user="U0BOB")
    code = await crashing.wait_exit(timeout=30)
    assert code == -signal.SIGKILL, f"never reached {point}\n{replicas.logs()}"
    assert len(emu.calls_to(START_STREAM)) == 1
    before = answers_after(emu, card.ts, reply.ts or "")
    assert len(before) == 1, "the crashed attempt left its streaming message"
    if point.startswith("mid_stream"):
        assert emu.streams.is_streaming("C0PUBLIC", before[0].ts)
        assert len([c for c in emu.calls_to(APPEND_STREAM) if c.ok]) == 2

    await replicas.new("survivor", env).start()
    await emu.wait_connected(timeout=20)
    answer = (await emu.wait_for(lambda: session_slot(emu, sid, f"reply:{reply.ts}"), 30))[0]
    await emu.wait_for(lambda: not emu.streams.is_streaming("C0PUBLIC", answer.ts), timeout=10)

    quiet = await wait_quiescent(emu, redis, timeout=40)
    report = await check(emu, redis, trace)
    if not quiet or not report.ok:
        print(replicas.logs())
    assert quiet, report.render()
    report.assert_ok()
    assert answers_after(emu, card.ts, reply.ts or "") == [answer]  # the same one message
    assert answer.ts == before[0].ts
    shown = block_text(emu.message("C0PUBLIC", answer.ts))
    assert all(escape(line) in shown for line in LINES), shown
    assert "still writing" not in shown and "<@U0BOB>" in shown
    assert len(emu.calls_to(START_STREAM)) == 1  # never a second stream
    assert feedback_requests(llm) == (2 if asks_again else 1)
    assert emu.unescaped_broadcasts() == []


@pytest.mark.timeout(120)
async def test_a_reply_recorded_while_a_cut_off_stream_waits_is_answered_in_its_message(
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    redis: Redis,
    replicas: Replicas,
    trace: Trace,
) -> None:
    """The crashed job's reply and one recorded before the restart are answered together, in
    the message the crashed attempt began: one answer message for both, never a second one
    beside a half-written first."""
    env = chaos_env(emu, llm, redis_server.url)
    setup = await AppUnderTest(settings_from(env), redis_server.url).start()
    try:
        await emu.wait_connected()
        trigger, card, _story = await start_story(trace)
    finally:
        await setup.stop(grace_s=2)
    sid = trigger.session or ""

    crashing = await replicas.new("crashing", env).start(STORYLOOP_CRASH_POINT="mid_stream")
    await emu.wait_connected(timeout=20)
    llm.feedback_reply = REPLY
    llm.set_latency(0.0, 100)
    first = await trace.reply(card, "warmer light", user="U0BOB")
    assert await crashing.wait_exit(timeout=30) == -signal.SIGKILL, replicas.logs()
    [began] = answers_after(emu, card.ts, first.ts or "")

    # A listener without a worker records the next reply; nothing answers it yet.
    listener = await AppUnderTest(settings_from(env), redis_server.url).start(worker=False)
    try:
        await emu.wait_connected()
        second = await trace.reply(card, "and a dog", user="U0CAROL")
    finally:
        await listener.stop(grace_s=2)

    await replicas.new("survivor", env).start()
    await emu.wait_connected(timeout=20)
    together = (await emu.wait_for(lambda: session_slot(emu, sid, f"reply:{second.ts}"), 30))[0]
    quiet = await wait_quiescent(emu, redis, timeout=40)
    report = await check(emu, redis, trace)
    if not quiet or not report.ok:
        print(replicas.logs())
    assert quiet, report.render()
    report.assert_ok()
    assert together.ts == began.ts  # the message the crashed attempt began
    assert answers_after(emu, card.ts, first.ts or "") == [together]
    assert not emu.streams.is_streaming("C0PUBLIC", together.ts)
    text = block_text(emu.message("C0PUBLIC", together.ts))
    assert "still writing" not in text and escape(LINES[-1]) in text
    assert "<@U0BOB>" in text and "<@U0CAROL>" in text
    assert len(emu.calls_to(START_STREAM)) == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault", ["reset_after_accept", "http_500"])
async def test_a_failed_start_stream_call_never_doubles_the_answer(
    fault: str,
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    redis: Redis,
    replicas: Replicas,
    trace: Trace,
) -> None:
    """chat.startStream's answer is lost: Slack started the stream but the connection reset
    (the app must find and adopt it), or Slack answered 500 without starting it (the app must
    see there is none and answer by edits) — one whole answer message either way."""
    env = chaos_env(emu, llm, redis_server.url)
    await replicas.new("a", env).start()
    await emu.wait_connected(timeout=20)
    trigger, card, _story = await start_story(trace)
    sid = trigger.session or ""
    if fault == "reset_after_accept":
        emu.reset_after_accept(START_STREAM)
    else:
        emu.fail_next(START_STREAM, status=500)
    trace.fault(fault, START_STREAM)
    llm.feedback_reply = REPLY
    llm.set_latency(0.0, 100)
    reply = await trace.reply(card, "warmer light", user="U0BOB")
    answer = (await emu.wait_for(lambda: session_slot(emu, sid, f"reply:{reply.ts}"), 20))[0]
    quiet = await wait_quiescent(emu, redis, timeout=30)
    report = await check(emu, redis, trace)
    if not quiet or not report.ok:
        print(replicas.logs())
    assert quiet, report.render()
    report.assert_ok()
    assert answers_after(emu, card.ts, reply.ts or "") == [answer]
    assert not emu.streams.is_streaming("C0PUBLIC", answer.ts)
    text = block_text(emu.message("C0PUBLIC", answer.ts))
    assert escape(LINES[-1]) in text and "still writing" not in text
    assert len(emu.calls_to(START_STREAM)) == 1  # never started again
    assert feedback_requests(llm) == 1
