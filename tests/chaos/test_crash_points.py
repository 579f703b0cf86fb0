"""kill -9 at every named crash point, for every trigger type: exactly one outcome after restart.

Each run starts the app as a real process with ``STORYLOOP_CRASH_POINT`` set (the process
SIGKILLs itself there), makes the trigger, waits for the process to die, starts a fresh process
without the crash point and runs the checker. A short lease (1 s) lets the fresh process reclaim
the dead one's job quickly.

- ``after_intake`` dies before the ack: for a thread reply Slack redelivers the event (the
  emulator does, with short delays) and the fresh process must dedupe it; for a command or a
  click Slack never retries, so the job recorded before the crash must still produce the
  outcome.
- A thread reply is plain feedback where that reaches the point (intake, claim, LLM); a commit
  and a delivery happen for replies that ask for a rewrite, so those points use "rewrite it".
"""

from __future__ import annotations

import asyncio
import signal

import pytest
from redis.asyncio import Redis

from bot.crashpoints import POINTS, STAGE_POINTS
from tests.chaos.checker import Trace, Trigger, check, wait_quiescent
from tests.chaos.support import Replicas, chaos_env, reviewable, session_slot, start_story
from tests.e2e.harness import AppUnderTest, action_ids, settings_from
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator, StoredMessage
from tests.support.redis_server import RedisServer

TRIGGERS = ("command", "click", "reply")
FEEDBACK = "make it funnier, focus on the refill"
REWRITE = "rewrite it please"
UNREACHABLE = {
    ("after_placeholder_post", "click"): "a Regenerate click edits the story message in place; "
    "only the first generation of a session posts a placeholder",
    ("after_placeholder_post", "reply"): "a thread reply (feedback or a rewrite) never posts the "
    "story placeholder; only the first generation of a session does",
}


def _cases() -> list[object]:
    """Every point for every trigger type (16 reachable runs, about a minute in all)."""
    cases: list[object] = []
    for point in (p for p in POINTS if p not in STAGE_POINTS):
        for kind in TRIGGERS:
            marks = []
            if (point, kind) in UNREACHABLE:
                marks.append(pytest.mark.skip(reason=UNREACHABLE[(point, kind)]))
            cases.append(pytest.param(point, kind, marks=marks, id=f"{point}-{kind}"))
    return cases


def reply_text(point: str) -> str:
    return REWRITE if point in ("after_commit", "after_deliver") else FEEDBACK


async def make_trigger(
    trace: Trace, kind: str, point: str, card: StoredMessage | None, story: StoredMessage | None
) -> Trigger:
    if kind == "command":
        return await trace.command("30s eco water bottle launch")
    assert card is not None and story is not None
    if kind == "click":
        return await trace.click(story, "story_regenerate", user="U0BOB")
    return await trace.reply(card, reply_text(point), user="U0CAROL")


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("point", "kind"), _cases())
async def test_crash_point_then_restart_gives_exactly_one_outcome(
    point: str,
    kind: str,
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    redis: Redis,
    replicas: Replicas,
    trace: Trace,
) -> None:
    env = chaos_env(emu, llm, redis_server.url)
    card = story = None
    if kind != "command":
        setup = await AppUnderTest(settings_from(env), redis_server.url).start()
        try:
            await emu.wait_connected()
            _, card, story = await start_story(trace)
        finally:
            await setup.stop(grace_s=2)
    if point == "after_intake":
        # Slack redelivers an unacked event (a command or a click is never retried).
        emu.redeliver_unacked = True
        emu.retry_delays = (1.0, 2.0, 4.0)
        emu.socket_wait = 10.0

    crashing = await replicas.new("crashing", env).start(STORYLOOP_CRASH_POINT=point)
    await emu.wait_connected(timeout=20)
    acting = asyncio.create_task(make_trigger(trace, kind, point, card, story))
    code = await crashing.wait_exit(timeout=20)
    if code is None:
        acting.cancel()
        raise AssertionError(
            f"the app never reached {point} for a {kind} (still alive after 20 s)\n"
            + replicas.logs()
        )
    assert code == -signal.SIGKILL, f"exit code {code}\n{replicas.logs()}"
    assert await _sockets_gone(emu), "the dead process's socket is still open"

    survivor = await replicas.new("survivor", env).start()
    await emu.wait_connected(timeout=20)
    trigger = await asyncio.wait_for(acting, 30)
    quiet = await wait_quiescent(emu, redis, timeout=30)
    report = await check(emu, redis, trace)
    if not quiet or not report.ok:
        print(replicas.logs())
    assert quiet, "the app did not come to rest within 30 s\n" + report.render()
    report.assert_ok()
    assert survivor.alive

    sid = trigger.session or ""
    if kind == "command":
        assert len(session_slot(emu, sid, "card")) == 1
        assert len(session_slot(emu, sid, "story")) == 1
        assert reviewable(emu, sid) is not None
    elif kind == "click" or reply_text(point) == REWRITE:
        assert len(session_slot(emu, sid, "notice:2")) == 1, report.render()
        assert reviewable(emu, sid) is not None
    else:
        assert len(session_slot(emu, sid, f"reply:{trigger.ts}")) == 1, report.render()
    if point == "after_intake" and kind == "reply":
        # The event was acked only by a redelivery, and deduplicated there.
        assert trace.reply_acked(trigger)


async def _sockets_gone(emu: SlackEmulator, timeout: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while emu.open_sockets and loop.time() < deadline:
        await asyncio.sleep(0.05)
    return emu.open_sockets == 0


@pytest.mark.timeout(90)
async def test_a_job_that_kills_every_worker_gives_up_visibly(
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    redis: Redis,
    replicas: Replicas,
    trace: Trace,
) -> None:
    """A poison job (here: every process that runs it dies after the LLM answers) is retried
    up to STORYLOOP_MAX_DELIVERIES times, then ends in a visible failure with Retry — even on
    a process that would crash again, because giving up doesn't run the job."""
    env = chaos_env(emu, llm, redis_server.url, STORYLOOP_MAX_DELIVERIES="2")
    first = await replicas.new("p1", env).start(STORYLOOP_CRASH_POINT="after_llm")
    await emu.wait_connected(timeout=20)
    start = await trace.command("30s eco water bottle launch")
    assert start.ack_ok
    assert await first.wait_exit(timeout=20) == -signal.SIGKILL
    second = await replicas.new("p2", env).start(STORYLOOP_CRASH_POINT="after_llm")
    assert await second.wait_exit(timeout=20) == -signal.SIGKILL  # delivery 2: dies again
    third = await replicas.new("p3", env).start(STORYLOOP_CRASH_POINT="after_llm")
    await emu.wait_connected(timeout=20)
    sid = start.session or ""
    story = (await emu.wait_for(lambda: session_slot(emu, sid, "story"), timeout=20))[0]
    await emu.wait_for(lambda: "story_retry" in action_ids(story), timeout=20)
    quiet = await wait_quiescent(emu, redis, timeout=30)
    report = await check(emu, redis, trace)
    if not quiet or not report.ok:
        print(replicas.logs())
    assert quiet
    report.assert_ok()
    assert third.alive, "giving up must not run the job that kills the process"
    assert "giving up job" in third.log()
