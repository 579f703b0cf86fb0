"""One test per guarantee of the promise: nothing a user did is lost, nothing is done twice.

Every test drives the app as real OS processes (``python -m bot run``) against the Slack and
OpenAI emulators and ends with the checker (``tests/chaos/checker.py``) over everything Slack
recorded and everything Redis holds. Tests that need to kill Redis get their own redis-server.
Each app bug these tests found was first pinned as ``xfail(strict=True)``, then fixed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.pipeline.models import Stage, Status
from handlers import replies
from storage import keys
from tests.chaos.checker import Report, Trace, Trigger, check, wait_quiescent
from tests.chaos.support import (
    Replica,
    Replicas,
    chaos_env,
    reviewable,
    session_of_id,
    session_slot,
    start_story,
    wait_until,
)
from tests.e2e.harness import action_ids, app_env, block_text, slot_of
from tests.emulators import slack_payloads as payloads
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import ResponsePost, SlackEmulator
from tests.support.redis_server import RedisServer

CHANNEL = "C0PUBLIC"
OWNER = "U0ALICE"
RAW_ERRORS = ("Traceback", "Error", "error:", "redis", "Redis", "exception", "500")


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A redis-server this test may SIGKILL, SIGSTOP and restart (AOF, appendfsync always)."""
    server = RedisServer(tmp_path / "own-redis")
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        os.kill(server.proc.pid, signal.SIGCONT)
    server.stop()


@pytest.fixture
async def own_redis_client(own_redis: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(own_redis.url, decode_responses=True, socket_timeout=5)
    yield client
    await client.aclose()


async def settle_and_check(
    emu: SlackEmulator, redis: Redis, trace: Trace, replicas: Replicas, *, timeout: float = 30
) -> Report:
    quiet = await wait_quiescent(emu, redis, timeout=timeout)
    report = await check(emu, redis, trace)
    if not quiet or not report.ok:
        print(report.render())
        print(replicas.logs())
    assert quiet, f"no rest within {timeout} s\n{report.render()}"
    return report


async def one_replica(
    replicas: Replicas, emu: SlackEmulator, env: dict[str, str], name: str = "a"
) -> Replica:
    replica = await replicas.new(name, env).start()
    await emu.wait_connected(timeout=20)
    return replica


def responses_to(emu: SlackEmulator, trigger: Trigger) -> list[ResponsePost]:
    """What the app posted to this trigger's response_url."""
    url_id = (trigger.response_url or "").rsplit("/", 1)[-1]
    return [r for r in emu.responses if r.url_id == url_id and r.status == 200]


def polite(text: str) -> bool:
    return bool(text.strip()) and not any(marker in text for marker in RAW_ERRORS)


# --- (a) concurrent clicks: one winner, polite refusals ----------------------------------------


@pytest.mark.timeout(90)
async def test_a_twenty_concurrent_clicks_have_one_winner(
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    redis: Redis,
    replicas: Replicas,
    trace: Trace,
) -> None:
    await one_replica(replicas, emu, chaos_env(emu, llm, redis_server.url))
    start, _card, story = await start_story(trace)
    sid = start.session or ""
    users = ["U0ALICE", "U0BOB", "U0CAROL", "U0DAVE"]

    clicks = await asyncio.gather(
        *(trace.click(story, "story_regenerate", user=users[i % 4]) for i in range(20))
    )
    assert all(c.ack_ok for c in clicks)
    await emu.wait_for(lambda: reviewable(emu, sid), timeout=20)
    report = await settle_and_check(emu, redis, trace, replicas)
    report.assert_ok()
    session = await session_of_id(redis, emu.team_id, sid)
    assert session is not None and session.version == 2
    assert sorted(await redis.hkeys(keys.versions(emu.team_id, sid))) == ["1", "2"]
    assert len(session_slot(emu, sid, "notice:2")) == 1
    refused = [r for c in clicks for r in responses_to(emu, c)]
    assert len(refused) == 19, [r.text for r in refused]
    assert all(polite(r.text) for r in refused), [r.text for r in refused]

    story_v2 = reviewable(emu, sid)
    assert story_v2 is not None and "Story v2" in block_text(story_v2)
    approvals = await asyncio.gather(
        *(trace.click(story_v2, "story_approve", user=OWNER) for _ in range(20))
    )
    assert all(c.ack_ok for c in approvals)
    await emu.wait_for(lambda: session_slot(emu, sid, "approved"), timeout=20)
    report = await settle_and_check(emu, redis, trace, replicas)
    report.assert_ok()
    session = await session_of_id(redis, emu.team_id, sid)
    assert session is not None and session.stage is not Stage.STORY
    assert session.approved_version == 2
    assert len(session_slot(emu, sid, "approved")) == 1
    refused = [r for c in approvals for r in responses_to(emu, c)]
    assert len(refused) == 19 and all(polite(r.text) for r in refused), [r.text for r in refused]


# --- (b) Slack re-deliveries and double events --------------------------------------------------


@pytest.mark.timeout(60)
async def test_b_redelivered_and_double_events_get_one_answer(
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    redis: Redis,
    replicas: Replicas,
    trace: Trace,
) -> None:
    await one_replica(replicas, emu, chaos_env(emu, llm, redis_server.url))
    start, card, _story = await start_story(trace)
    sid = start.session or ""

    # One message event, delivered with retry_attempt 0 then 1..3 (same event_id and ts) ...
    reply = await trace.reply(card, "shorter voice-over please", deliver=False)
    msg = emu.message(CHANNEL, reply.ts or "")
    assert msg is not None
    event = payloads.message_event(
        msg, channel_type="channel", team_id=emu.team_id, parent_user_id=emu.bot_user_id
    )
    envelope = payloads.event_callback(
        event,
        team_id=emu.team_id,
        app_id=emu.app_id,
        bot_user_id=emu.bot_user_id,
        event_id="Ev0CHAOSRETRY1",
        event_time=int(time.time()),
    )
    acks = [await emu.deliver_event(envelope, retry_attempt=0)]
    for attempt in (1, 2, 3):
        acks.append(
            await emu.deliver_event(envelope, retry_attempt=attempt, retry_reason="timeout")
        )
    # ... and the same redelivery racing itself.
    acks += await asyncio.gather(
        *(emu.deliver_event(envelope, retry_attempt=1, retry_reason="timeout") for _ in range(4))
    )
    assert all(a.ok for a in acks)

    await emu.wait_for(lambda: session_slot(emu, sid, f"reply:{reply.ts}"), timeout=15)

    # A mention arrives as both a `message` and an `app_mention` event.
    mention = await trace.reply(card, f"<@{emu.bot_user_id}> can you add a hook line?")
    kinds = [
        d.payload["event"]["type"]
        for d in emu.deliveries
        if (d.payload.get("event") or {}).get("ts") == mention.ts
    ]
    assert sorted(kinds) == ["app_mention", "message"]

    await emu.wait_for(lambda: session_slot(emu, sid, f"reply:{mention.ts}"), timeout=15)
    report = await settle_and_check(emu, redis, trace, replicas)
    report.assert_ok()
    assert len(session_slot(emu, sid, f"reply:{reply.ts}")) == 1
    assert len(session_slot(emu, sid, f"reply:{mention.ts}")) == 1
    assert len(llm.requests) == 3  # the story and one answer per reply, nothing twice


# --- (c) two replicas -------------------------------------------------------------------------


@pytest.mark.timeout(150)
async def test_c_two_replicas_ten_sessions_no_duplicates(
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    redis: Redis,
    replicas: Replicas,
    trace: Trace,
) -> None:
    env = chaos_env(emu, llm, redis_server.url)
    first = await replicas.new("a", env).start()
    second = await replicas.new("b", env).start()
    await emu.wait_connected(timeout=20, count=2)
    llm.set_latency(0.05, 3000)

    async def session_life(i: int) -> None:
        owner = ["U0ALICE", "U0BOB", "U0CAROL"][i % 3]
        start, card, story = await start_story(trace, f"30s product teaser number {i}", user=owner)
        sid = start.session or ""
        await asyncio.gather(
            trace.reply(card, f"make teaser {i} warmer", user="U0DAVE"),
            trace.reply(card, f"and mention the price in {i}", user="U0ERIN"),
        )
        if i % 2 == 0:
            await asyncio.gather(
                trace.click(story, "story_regenerate", user="U0DAVE"),
                trace.click(story, "story_regenerate", user="U0ERIN"),
            )
            await emu.wait_for(lambda: session_slot(emu, sid, "notice:2"), timeout=30)
            story = await emu.wait_for(lambda: reviewable(emu, sid), timeout=30)
        await asyncio.gather(
            trace.click(story, "story_approve", user=owner),
            trace.click(story, "story_approve", user=owner),
        )
        await emu.wait_for(lambda: session_slot(emu, sid, "approved"), timeout=30)
        await trace.reply(card, f"one more idea for {i}", user="U0DAVE")

    await asyncio.wait_for(asyncio.gather(*(session_life(i) for i in range(10))), 100)
    report = await settle_and_check(emu, redis, trace, replicas)
    report.assert_ok()
    assert report.outcomes["story-card"] == 10
    assert report.outcomes["approved"] == 10  # one approval per session ...
    # ... one regeneration per even session (a reply it took in before the reply's own answer
    # counts that notice as its outcome too, so count the notices, not the outcomes) ...
    notices = [m for m in emu.bot_messages() if slot_of(m) == "notice:2"]
    assert len(notices) == 5 and report.outcomes["notice"] >= 5
    assert report.outcomes["response"] == 15  # ... and a polite refusal for every other click
    assert first.alive and second.alive
    # Both replicas served Slack (the emulator round-robins deliveries over the two sockets).
    assert len({d.result.socket_id for d in emu.deliveries if d.result.ok}) >= 2


# --- (d) Slack accepted the post but the connection reset --------------------------------------


@pytest.mark.timeout(60)
async def test_d_reset_after_accept_on_the_reply_post_gives_one_reply(
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    redis: Redis,
    replicas: Replicas,
    trace: Trace,
) -> None:
    # Answers posted with chat.postMessage (the path of a workspace that can't stream); the
    # same fault on chat.startStream is tests/chaos/test_stream_crashes.py's.
    env = chaos_env(emu, llm, redis_server.url, STORYLOOP_STREAM_ANSWERS="false")
    await one_replica(replicas, emu, env)
    start, card, _story = await start_story(trace)
    sid = start.session or ""
    emu.reset_after_accept("chat.postMessage")
    trace.fault("slack_reset_after_accept", "chat.postMessage")
    reply = await trace.reply(card, "make it funnier")
    await emu.wait_for(lambda: session_slot(emu, sid, f"reply:{reply.ts}"), timeout=15)
    report = await settle_and_check(emu, redis, trace, replicas)
    report.assert_ok()
    assert len(session_slot(emu, sid, f"reply:{reply.ts}")) == 1
    assert any(c.error == "connection_reset_after_accept" for c in emu.calls)


# --- (e) fenced commits: a paused worker's stale result is never shown -------------------------


@pytest.mark.timeout(90)
async def test_e_paused_worker_result_is_fenced_out(
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    redis: Redis,
    replicas: Replicas,
    trace: Trace,
) -> None:
    env = chaos_env(emu, llm, redis_server.url)
    a = await one_replica(replicas, emu, env, "a")
    llm.set_latency(0.2, 40)  # ~6 s of streaming per story
    start = await trace.command("30s eco water bottle launch")
    sid = start.session or ""
    story = (await emu.wait_for(lambda: session_slot(emu, sid, "story"), timeout=10))[0]
    await emu.wait_for(
        lambda: any("characters so far" in block_text(v) for v in [*story.history, story]),
        timeout=10,
    )
    a.stop()
    trace.fault("sigstop", "replica a, mid-generation")
    b = await one_replica(replicas, emu, env, "b")
    await emu.wait_for(lambda: reviewable(emu, sid), timeout=30)
    final_edits = len(story.history)
    a.cont()
    trace.fault("sigcont", "replica a")
    fenced = await wait_until(
        lambda: "lost its session" in a.log() or "lease was taken over" in a.log(), timeout=20
    )
    report = await settle_and_check(emu, redis, trace, replicas)
    report.assert_ok()
    assert fenced, "replica a never tried (and failed) to commit its stale result\n" + a.log()
    assert a.alive and b.alive
    assert await redis.hkeys(keys.versions(emu.team_id, sid)) == ["1"]
    assert len(session_slot(emu, sid, "story")) == 1
    shown = emu.message(CHANNEL, story.ts)
    assert shown is not None and "Story v1" in block_text(shown)
    assert "story_approve" in action_ids(shown)
    later = [v.text for v in story.history[final_edits:]]
    assert not any("Generating" in t or "Writing" in t for t in later), later


@pytest.mark.timeout(90)
@pytest.mark.parametrize("in_flight", ["slow_slack", "rate_limited"])
@pytest.mark.parametrize("method", ["chat.postMessage", "chat.startStream"])
async def test_e2_paused_worker_in_flight_post_leaves_no_duplicate(
    in_flight: str,
    method: str,
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    redis: Redis,
    replicas: Replicas,
    trace: Trace,
) -> None:
    # The answer's first call in flight when its worker freezes: a post (a workspace that can't
    # stream) or the start of a stream.
    streams = "true" if method == "chat.startStream" else "false"
    env = chaos_env(emu, llm, redis_server.url, STORYLOOP_STREAM_ANSWERS=streams)
    a = await one_replica(replicas, emu, env, "a")
    start, card, _story = await start_story(trace)
    sid = start.session or ""
    posts = len(emu.calls_to(method))
    if in_flight == "slow_slack":
        emu.delay(method, 6)  # Slack applies a.'s first answer call only after 6 s
        trace.fault("slack_delay", f"{method} 6 s")
    else:
        emu.fail_next(method, status=429, retry_after=4)  # a. backs off 4 s
        trace.fault("slack_429", f"{method}, Retry-After 4")
    reply = await trace.reply(card, "make it warmer")
    await emu.wait_for(lambda: len(emu.calls_to(method)) > posts, timeout=10)
    emu.delay(method, 0)
    a.stop()  # ... and a. freezes past its lease with the post in flight
    trace.fault("sigstop", "replica a, reply post in flight")
    await one_replica(replicas, emu, env, "b")
    await emu.wait_for(lambda: session_slot(emu, sid, f"reply:{reply.ts}"), timeout=20)
    await asyncio.sleep(6 if in_flight == "slow_slack" else 1)
    a.cont()
    trace.fault("sigcont", "replica a")
    await wait_until(lambda: "lost its session" in a.log(), timeout=15)
    report = await settle_and_check(emu, redis, trace, replicas)
    report.assert_ok()
    assert len(session_slot(emu, sid, f"reply:{reply.ts}")) == 1
    # A streamed message has no slot until it is finished: count every answer in the thread.
    answers = [
        m
        for m in emu.thread(CHANNEL, card.ts)
        if m.user == emu.bot_user_id and m.ts > reply.ts and not m.deleted
    ]
    assert len(answers) == 1, [m.text for m in answers]


@pytest.mark.timeout(90)
async def test_e3_paused_worker_stale_edit_never_hides_the_story(
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    redis: Redis,
    replicas: Replicas,
    trace: Trace,
) -> None:
    env = chaos_env(emu, llm, redis_server.url)
    a = await one_replica(replicas, emu, env, "a")
    start, _card, story = await start_story(trace)
    sid = start.session or ""
    updates = len(emu.calls_to("chat.update"))
    emu.fail_next("chat.update", status=429, retry_after=4)
    trace.fault("slack_429", "chat.update, Retry-After 4")
    await trace.click(story, "story_regenerate", user="U0BOB")
    await emu.wait_for(lambda: len(emu.calls_to("chat.update")) > updates, timeout=10)
    a.stop()  # a. freezes while backing off its placeholder edit
    trace.fault("sigstop", "replica a, placeholder edit backing off")
    await one_replica(replicas, emu, env, "b")
    await emu.wait_for(lambda: session_slot(emu, sid, "notice:2"), timeout=30)
    a.cont()
    trace.fault("sigcont", "replica a")
    await wait_until(lambda: "lost its session" in a.log(), timeout=15)
    report = await settle_and_check(emu, redis, trace, replicas)
    report.assert_ok()
    shown = emu.message(CHANNEL, story.ts)
    assert shown is not None and "story_approve" in action_ids(shown), block_text(shown)


# --- (f) bounded retries ----------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_f_story_gives_up_visibly_when_slack_refuses_every_post(
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    redis: Redis,
    replicas: Replicas,
    trace: Trace,
) -> None:
    env = chaos_env(emu, llm, redis_server.url, STORYLOOP_MAX_DELIVERIES="3")
    await one_replica(replicas, emu, env)
    emu.fail_next("chat.postMessage", status=500, count=1000)
    trace.fault("slack_500", "every chat.postMessage")
    start = await trace.command("30s eco water bottle launch")
    assert start.ack_ok
    gave_up = await emu.wait_for(lambda: responses_to(emu, start), timeout=20)
    assert len(gave_up) == 1 and polite(gave_up[0].text), gave_up[0].text
    attempts = len(emu.calls_to("chat.postMessage"))
    assert attempts <= 4, attempts  # about one per delivery, three deliveries
    await asyncio.sleep(4)  # several lease periods: nothing keeps retrying
    assert len(emu.calls_to("chat.postMessage")) == attempts
    report = await settle_and_check(emu, redis, trace, replicas)
    report.assert_ok()


@pytest.mark.timeout(60)
async def test_f2_reply_gives_up_when_slack_refuses_every_post(
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    redis: Redis,
    replicas: Replicas,
    trace: Trace,
) -> None:
    env = chaos_env(emu, llm, redis_server.url, STORYLOOP_MAX_DELIVERIES="3")
    await one_replica(replicas, emu, env)
    _start, card, _story = await start_story(trace)
    # A streamed answer starts with chat.startStream, falling back to chat.postMessage: both fail.
    emu.fail_next("chat.startStream", status=500, count=1000)
    emu.fail_next("chat.postMessage", status=500, count=1000)
    trace.fault("slack_500", "every chat.startStream and chat.postMessage")
    reply = await trace.reply(card, "make it warmer", user="U0BOB")
    await asyncio.sleep(6)  # three deliveries at a 1 s lease, and then some
    attempts = len(emu.calls_to("chat.postMessage")) + len(emu.calls_to("chat.startStream"))
    await asyncio.sleep(4)
    now = len(emu.calls_to("chat.postMessage")) + len(emu.calls_to("chat.startStream"))
    assert now == attempts, "still retrying"
    assert await redis.xlen(keys.jobs_stream(emu.team_id)) == 0, "the reply job is still pending"
    # The author is told in plain words (an ephemeral: posting in the thread is what fails).
    told = [e for e in emu.ephemerals_for(reply.user) if e.source == "chat.postEphemeral"]
    assert told and polite(told[-1].text)


# --- (g) Redis restart --------------------------------------------------------------------------


@pytest.mark.timeout(90)
async def test_g_redis_sigkill_and_restart_loses_no_acked_reply(
    emu: SlackEmulator,
    llm: FakeLLM,
    own_redis: RedisServer,
    own_redis_client: Redis,
    replicas: Replicas,
    trace: Trace,
) -> None:
    redis = own_redis_client
    a = await one_replica(replicas, emu, chaos_env(emu, llm, own_redis.url))
    start, card, _story = await start_story(trace)
    sid = start.session or ""
    llm.set_latency(1.5, None)  # the answer takes a while: Redis dies before it is posted
    reply = await trace.reply(card, "make it warmer, mention the refill", user="U0BOB")
    assert trace.reply_acked(reply)
    own_redis.kill()
    trace.fault("redis_sigkill")
    await asyncio.sleep(1.5)
    await asyncio.to_thread(own_redis.start)
    trace.fault("redis_restart", "from AOF")
    llm.set_latency(0.0, None)
    await emu.wait_for(lambda: session_slot(emu, sid, f"reply:{reply.ts}"), timeout=30)
    # The app reconnected by itself: new work goes through.
    after, _card2, _story2 = await start_story(trace, "15s after the restart")
    report = await settle_and_check(emu, redis, trace, replicas)
    report.assert_ok()
    assert a.alive and a.starts == 1
    assert len(session_slot(emu, sid, f"reply:{reply.ts}")) == 1
    assert after.ack_ok


# --- (h) Redis unreachable ------------------------------------------------------------------------


@pytest.mark.timeout(90)
async def test_h_redis_down_gets_fast_friendly_answers(
    emu: SlackEmulator,
    llm: FakeLLM,
    own_redis: RedisServer,
    own_redis_client: Redis,
    replicas: Replicas,
    trace: Trace,
) -> None:
    redis = own_redis_client
    await one_replica(replicas, emu, chaos_env(emu, llm, own_redis.url))
    http_env = app_env(emu, llm, own_redis.url, mode="http", STORYLOOP_LEASE_SECONDS="1")
    http = await replicas.new("http", http_env).start()
    events_url = f"http://127.0.0.1:{http_env['PORT']}/slack/events"
    assert await wait_until(lambda: "listening" in http.log(), timeout=20), http.log()
    emu.mode = "socket"
    start, card, story = await start_story(trace)
    sid = start.session or ""

    own_redis.kill()
    trace.fault("redis_sigkill", "stays down")
    command = await trace.command("15s while redis is down")
    assert command.ack_ok and emu.ack_latencies[-1][1] < 3.0
    assert command.ack_text == replies.UNAVAILABLE
    click = await trace.click(story, "story_regenerate", user="U0BOB")
    assert click.ack_ok and emu.ack_latencies[-1][1] < 3.0
    answer = await emu.wait_for(lambda: responses_to(emu, click), timeout=5)
    assert answer[0].text == replies.UNAVAILABLE

    emu.mode, emu.events_url = "http", events_url
    emu.redeliver_unacked, emu.retry_delays = True, (3.0, 5.0, 8.0)
    reply = await trace.reply(card, "make it warmer", user="U0BOB")
    first = next(
        d.result for d in emu.deliveries if d.payload.get("event", {}).get("ts") == reply.ts
    )
    assert first.status is not None and first.status >= 500, first
    assert first.seconds < 3.0, first

    await asyncio.to_thread(own_redis.start)  # Slack's retry then finds Redis back
    trace.fault("redis_restart", "from AOF")
    await emu.wait_for(lambda: session_slot(emu, sid, f"reply:{reply.ts}"), timeout=30)
    report = await settle_and_check(emu, redis, trace, replicas)
    report.assert_ok()
    assert await session_of_id(redis, emu.team_id, command.session or "") is None


@pytest.mark.timeout(90)
async def test_h2_redis_hung_gets_fast_friendly_answers(
    emu: SlackEmulator,
    llm: FakeLLM,
    own_redis: RedisServer,
    own_redis_client: Redis,
    replicas: Replicas,
    trace: Trace,
) -> None:
    redis = own_redis_client
    await one_replica(replicas, emu, chaos_env(emu, llm, own_redis.url))
    await start_story(trace)
    assert own_redis.proc is not None
    os.kill(own_redis.proc.pid, signal.SIGSTOP)
    trace.fault("redis_sigstop")
    try:
        command = await trace.command("15s while redis hangs")
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)
        trace.fault("redis_sigcont")
    report = await settle_and_check(emu, redis, trace, replicas)
    assert command.ack_ok, f"no ack within 3 s: {command.ack_error}"
    assert command.ack_text == replies.UNAVAILABLE
    report.assert_ok()


# --- (i) Socket Mode reconnects during a burst ---------------------------------------------------


@pytest.mark.timeout(90)
async def test_i_socket_refresh_and_drop_during_a_burst(
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    redis: Redis,
    replicas: Replicas,
    trace: Trace,
) -> None:
    await one_replica(replicas, emu, chaos_env(emu, llm, redis_server.url))
    start, card, _story = await start_story(trace)
    sid = start.session or ""
    emu.redeliver_unacked, emu.retry_delays, emu.socket_wait = True, (1.0, 2.0, 4.0), 10.0
    users = ["U0BOB", "U0CAROL", "U0DAVE"]

    async def burst() -> list[Trigger]:
        sent = []
        for i in range(10):
            sent.append(
                asyncio.create_task(trace.reply(card, f"idea {i}: more energy", user=users[i % 3]))
            )
            await asyncio.sleep(0.05)
        return list(await asyncio.gather(*sent))

    async def disrupt() -> None:
        await asyncio.sleep(0.12)
        await emu.push_disconnect("refresh_requested")
        trace.fault("socket_disconnect_frame", "refresh_requested")
        await asyncio.sleep(0.15)
        await emu.drop_socket()
        trace.fault("socket_drop", "abrupt")

    sent, _ = await asyncio.gather(burst(), disrupt())
    await emu.wait_for(lambda: emu.open_sockets, timeout=30)
    report = await settle_and_check(emu, redis, trace, replicas, timeout=45)
    report.assert_ok()
    assert all(trace.reply_acked(r) for r in sent)
    session = await session_of_id(redis, emu.team_id, sid)
    assert session is not None and session.status is Status.AWAITING_REVIEW


# --- a reply in the card's thread before the thread is indexed -----------------------------------


@pytest.mark.timeout(60)
async def test_reply_right_after_the_card_appears_is_answered(
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    redis: Redis,
    replicas: Replicas,
    trace: Trace,
) -> None:
    await one_replica(replicas, emu, chaos_env(emu, llm, redis_server.url))
    # The card post reaches Slack but its response is lost; finding it again takes a moment.
    emu.reset_after_accept("chat.postMessage")
    emu.delay("conversations.history", 3)
    trace.fault("slack_reset_after_accept", "card post")
    trace.fault("slack_delay", "conversations.history 3 s")
    start = await trace.command("30s eco water bottle launch")
    sid = start.session or ""
    card = (await emu.wait_for(lambda: session_slot(emu, sid, "card"), timeout=10))[0]
    reply = await trace.reply(card, "make it warmer", user="U0BOB")
    assert trace.reply_acked(reply)
    emu.delay("conversations.history", 0)
    await emu.wait_for(lambda: reviewable(emu, sid), timeout=20)
    report = await settle_and_check(emu, redis, trace, replicas)
    report.assert_ok()
