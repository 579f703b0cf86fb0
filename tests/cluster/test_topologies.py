"""Storyloop on a real 3-primary Redis Cluster and on a Sentinel-managed primary.

- the job queue spans every primary: each workspace's jobs land on its shard's stream, one
  consumer reads them all;
- the end-to-end flow (/story → story → thread reply → approve) on the cluster;
- a Sentinel failover mid-session: the primary is killed with SIGKILL, the replica promoted,
  the app follows it, and the reply and the approval that come after it are each answered
  exactly once, on top of the story committed before it (events that arrive while no primary
  is elected are refused and left to Slack's redelivery: not tested here).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from redis.asyncio import RedisCluster

from bot.pipeline.models import TurnRole as Role
from storage import keys
from storage.connection import Client, connect
from storage.intake import Intake, Outcome
from storage.queue import JobQueue
from storage.repository import Repository
from tests.e2e.harness import AppUnderTest, action_ids, app_env, block_text, by_slot, settings_from
from tests.e2e.test_story_flow import _session_id, start_story
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator
from tests.integration.test_storage import start_trigger
from tests.support.redis_topologies import RedisClusterProcs, SentinelSetup


async def test_the_queue_spans_every_primary(redis: Client) -> None:
    assert isinstance(redis, RedisCluster)
    repo = Repository(redis, session_ttl_s=3600)
    intake = Intake(repo.scripts, session_ttl_s=3600)
    teams = [f"T{i:03d}" for i in range(36)]
    for team in teams:  # with the eager lane: the lease, fence and session keys in one script
        recorded = await intake.submit(start_trigger(team, "s1"), eager_lease_ms=5000)
        assert recorded.outcome is Outcome.ENQUEUED and recorded.fence > 0
    owners = {redis.get_node_from_key(keys.jobs_stream(team)).name for team in teams}
    assert len(owners) == 3, owners  # the workspaces' streams are spread over all primaries
    queue = JobQueue(redis, "c1")
    await queue.ensure_group()
    seen = []
    for _ in teams:
        job = await queue.read(block_ms=200)
        assert job is not None
        seen.append(job.payload["team_id"])
        await queue.ack(job.entry_id)
    assert sorted(seen) == teams
    assert await queue.read(block_ms=50) is None and await queue.depth() == 0


@asynccontextmanager
async def running_app(emu: SlackEmulator, llm: FakeLLM, url: str) -> AsyncIterator[AppUnderTest]:
    env = app_env(emu, llm, url, mode="socket")
    app = await AppUnderTest(settings_from(env), url).start()
    await emu.wait_connected()
    emu.mode = "socket"
    try:
        yield app
    finally:
        await app.stop(grace_s=2)


async def reply_and_approve(emu: SlackEmulator, app: AppUnderTest, *, reply_timeout: float) -> None:
    """The rest of the flow after the story is shown: a thread reply, answered once, then the
    approval, taken once; the session ends approved with both turns in its history."""
    card, story = await start_story(emu)
    await reply_then_approve(emu, app, card.ts, story.ts, timeout=reply_timeout)


async def reply_then_approve(
    emu: SlackEmulator, app: AppUnderTest, card_ts: str, story_ts: str, *, timeout: float
) -> None:
    ts = await emu.user_posts("C0PUBLIC", "make it funnier", user="U0BOB", thread_ts=card_ts)
    await emu.wait_for(lambda: by_slot(emu, f"reply:{ts}"), timeout=timeout)
    await emu.wait_for(lambda: action_ids(emu.message("C0PUBLIC", story_ts)) != [], timeout=5)
    ack = await emu.click(story_ts, "story_approve", user="U0ALICE")
    assert ack.ok
    await emu.wait_for(lambda: by_slot(emu, "approved"), timeout=timeout)
    await emu.wait_for(lambda: by_slot(emu, "reference_image:v1"), timeout=15)
    assert len(by_slot(emu, f"reply:{ts}")) == 1 and len(by_slot(emu, "approved")) == 1
    story = emu.message("C0PUBLIC", story_ts)
    assert story is not None and "Approved v1 by <@U0ALICE>" in block_text(story)
    sid = _session_id(story)
    session = await app.session(emu.team_id, sid)
    assert session is not None and session.approved_version == 1
    repo = app.runtime.worker.repo  # type: ignore[union-attr]
    turns = [(t.role, t.user_id) for t in await repo.history(session)]
    assert turns == [(Role.USER, "U0BOB"), (Role.ASSISTANT, None)], turns
    assert await repo.version(session, 1) is not None and await repo.version(session, 2) is None


async def test_the_story_flow_on_a_cluster(
    emu: SlackEmulator, llm: FakeLLM, redis_cluster: RedisClusterProcs, redis: Client
) -> None:
    async with running_app(emu, llm, redis_cluster.url) as app:
        assert isinstance(app.runtime.redis, RedisCluster)  # type: ignore[union-attr]
        await reply_and_approve(emu, app, reply_timeout=5)


async def _eventually(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_the_app_follows_a_sentinel_failover(
    emu: SlackEmulator, llm: FakeLLM, sentinel_setup: SentinelSetup
) -> None:
    setup = sentinel_setup
    async with running_app(emu, llm, setup.url) as app:
        card, story = await start_story(emu)
        # The story's commit has reached the replica (replication is asynchronous: see
        # docs/RELIABILITY.md for the window a failover can lose).
        probe = connect(f"redis://127.0.0.1:{setup.primary_port}/0")
        assert await probe.wait(1, 2000) == 1
        await probe.aclose()
        old = setup.primary_port
        os.kill(setup.primary.proc.pid, signal.SIGKILL)
        setup.primary.proc.wait(timeout=5)
        await _eventually(lambda: setup.primary_port_now() != old, timeout=15)
        assert setup.primary_port_now() == setup.replica_port
        # Every pooled connection pointed at the dead primary: the app must find the new one.
        await reply_then_approve(emu, app, card.ts, story.ts, timeout=20)
