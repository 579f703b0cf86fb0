"""A job's Redis work on a real redis-server: what its lease claim reads is not read again, its
own writes keep that view true, and finishing a job is one round trip (storage/jobview.py,
claim.lua, finish.lua, commit.lua's FINISH, item.lua's spend).

Round trips are counted by Redis itself (MONITOR), never timed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from bot.pipeline.artifacts import ItemState, PaidItem
from bot.pipeline.models import Scene, Session, Story, StoryVersion, Turn, TurnRole, Usage
from bot.pipeline.triggers import Feedback
from storage import keys
from storage.intake import Intake
from storage.queue import JobQueue
from storage.repository import CommitConflict, EagerState, Repository, Writes
from storage.scripts import NAMES, source
from tests.integration.test_storage import approve_click, make_session

TTL = 3600
LEASE_MS = 30_000


@pytest.fixture
async def repo(redis: Redis) -> Repository:
    for name in NAMES:  # loaded, as in a running app: a first use's SCRIPT LOAD isn't counted
        await redis.script_load(source(name))
    return Repository(redis, session_ttl_s=TTL)


async def commands(redis: Redis, work: Callable[[], Awaitable[Any]]) -> int:
    """The round trips ``work`` made to Redis: commands clients sent while it ran (MONITOR on a
    connection of its own; those a script runs are not round trips and are left out)."""
    kwargs = redis.connection_pool.connection_kwargs
    watcher = Redis(host=kwargs["host"], port=kwargs["port"], decode_responses=True)
    marker = "end-of-work"
    sent = 0
    async with watcher.monitor() as monitor:
        await work()
        await redis.echo(marker)  # on the same connection: it comes after the work's commands
        while True:
            cmd = await monitor.next_command()
            if marker in str(cmd["command"]):
                break
            if cmd["client_type"] != "lua":
                sent += 1
    await watcher.aclose()
    return sent


def version(n: int) -> StoryVersion:
    return StoryVersion(
        number=n,
        story=Story(
            title="Bo",
            logline=f"A bottle story (draft {n})",
            narrative="It opens at dawn.",
            scenes=(Scene(number=1, duration_s=8, visuals="wide", voiceover="Meet Bo."),),
        ),
        usage=Usage(),
        created_at=1.0,
    )


async def stored_session(repo: Repository) -> Session:
    """A session at v1 with a reply in its history and a card in its ledger."""
    s = await repo.commit(None, make_session(), fence=None)
    s = await repo.commit(
        s,
        s.model_copy(update={"version": 1, "thread_ts": "1.1"}),
        fence=None,
        writes=Writes()
        .add_version(s, version(1))
        .add_turn(s, Turn(role=TurnRole.USER, ts="2.2", user_id="U2", text="shorter")),
    )
    await repo.record_message(s, "card", "1.1")
    return s


async def test_a_job_reads_what_its_claim_read_without_another_round_trip(
    redis: Redis, repo: Repository
) -> None:
    s = await stored_session(repo)
    job = approve_click().job_id
    await repo.cache_llm(job, "story:v2", '{"draft": 1}')
    await redis.set(keys.eager("T1", job), "shown")

    async def claim() -> None:
        assert await repo.acquire("T1", "s1", LEASE_MS, job_id=job) > 0

    assert await commands(redis, claim) == 1

    async def reads() -> None:
        got = await repo.get("T1", "s1")
        assert got is not None and got.rev == s.rev and got.version == 1
        assert [t.text for t in await repo.history(s)] == ["shorter"]
        assert await repo.history_length(s) == 1
        assert await repo.message_ts(s, "card") == "1.1"
        assert await repo.message_ts(s, "story") is None
        assert await repo.cached_llm(job, "story:v2") == '{"draft": 1}'
        assert await repo.done(job) is None
        assert await repo.eager_state("T1", job) is EagerState.SHOWN
        assert await repo.tombstone("T1", "s1") is None
        current = await repo.version(s, 1)
        assert current is not None and current.number == 1

    assert await commands(redis, reads) == 0
    repo.end_job()
    assert await commands(redis, lambda: repo.get("T1", "s1")) == 1  # outside a job: Redis


async def test_the_view_follows_the_jobs_own_writes(redis: Redis, repo: Repository) -> None:
    s = await stored_session(repo)
    job = approve_click().job_id
    fence = await repo.acquire("T1", "s1", LEASE_MS, job_id=job)
    await repo.cache_llm(job, "story:v2", "answer")
    assert await repo.cached_llm(job, "story:v2") == "answer"
    assert await repo.record_message(s, "story", "3.3") == "3.3"
    answer = Turn(role=TurnRole.ASSISTANT, ts="2.2", text="ok")
    s2 = await repo.commit(
        s,
        s.model_copy(update={"version": 2}),
        fence=fence,
        writes=Writes()
        .add_version(s, version(2))
        .add_turn(s, answer)
        .forget_llm_result(job, "story:v2")
        .mark_done(job, {"deliver": ["story"]}),
    )

    async def reads() -> None:
        got = await repo.get("T1", "s1")
        assert got == s2
        assert await repo.message_ts(s2, "story") == "3.3"
        assert await repo.cached_llm(job, "story:v2") is None
        assert await repo.done(job) == {"deliver": ["story"]}
        v2 = await repo.version(s2, 2)
        assert v2 is not None and v2.number == 2

    assert await commands(redis, reads) == 0
    # The commit appended a turn: the next history read is a fresh one, then kept.
    assert await commands(redis, lambda: repo.history(s2)) == 1
    assert [t.text for t in await repo.history(s2)] == ["shorter", "ok"]
    assert await redis.hget(keys.messages("T1", "s1"), "story") == "3.3"
    assert not await redis.exists(keys.llm_results(job))
    repo.end_job()


async def test_a_held_session_gives_no_view(redis: Redis, repo: Repository) -> None:
    await stored_session(repo)
    assert await repo.acquire("T1", "s1", LEASE_MS) > 0  # someone else (no job)
    job = approve_click().job_id
    assert await repo.acquire("T1", "s1", LEASE_MS, job_id=job) == 0
    await redis.hset(keys.messages("T1", "s1"), "story", "9.9")
    s = await repo.get("T1", "s1")
    assert s is not None and await repo.message_ts(s, "story") == "9.9"  # read from Redis


async def test_other_jobs_never_see_a_view(redis: Redis, repo: Repository) -> None:
    """The view is the claiming task's (and those it starts): another job, running on a task
    of its own, reads Redis."""
    s = await stored_session(repo)
    started, go = asyncio.Event(), asyncio.Event()

    async def other_job() -> str | None:
        started.set()
        await go.wait()
        return await repo.message_ts(s, "story")

    other = asyncio.create_task(other_job())  # started before the claim, like any other job
    await started.wait()
    assert await repo.acquire("T1", "s1", LEASE_MS, job_id=approve_click().job_id) > 0
    await redis.hset(keys.messages("T1", "s1"), "story", "7.7")  # written under a lost lease
    assert await repo.message_ts(s, "story") is None  # this job: as read with its lease
    go.set()
    assert await other == "7.7"
    repo.end_job()
    assert await repo.message_ts(s, "story") == "7.7"


async def test_finish_acknowledges_and_releases_in_one_round_trip(
    redis: Redis, repo: Repository
) -> None:
    intake = Intake(repo.scripts, session_ttl_s=TTL)
    queue = JobQueue(redis, "w1")
    await queue.ensure_group()
    await intake.submit(approve_click())
    queued = await queue.read(block_ms=100)
    assert queued is not None
    fence = await repo.acquire("T1", "s1", LEASE_MS, job_id=queued.job_id)

    async def finish() -> None:
        await queue.finish(queued.entry_id, "T1", "s1", fence, job_id=queued.job_id)

    assert await commands(redis, finish) == 1
    assert await redis.xlen(keys.jobs_stream("T1")) == 0
    assert (await redis.xpending(keys.jobs_stream("T1"), keys.JOBS_GROUP))["pending"] == 0
    assert not await redis.exists(keys.lock("T1", "s1"))
    repo.end_job()


async def test_finish_leaves_a_lease_that_is_no_longer_ours(redis: Redis, repo: Repository) -> None:
    intake = Intake(repo.scripts, session_ttl_s=TTL)
    queue = JobQueue(redis, "w1")
    await queue.ensure_group()
    await intake.submit(approve_click())
    queued = await queue.read(block_ms=100)
    assert queued is not None
    await redis.set(keys.lock("T1", "s1"), "42")  # taken over by a newer worker
    await queue.finish(queued.entry_id, "T1", "s1", 7)
    assert await redis.get(keys.lock("T1", "s1")) == "42"
    assert await redis.xlen(keys.jobs_stream("T1")) == 0


async def test_a_last_commit_acknowledges_the_job_and_gives_the_lease_back(
    redis: Redis, repo: Repository
) -> None:
    """A thread reply's final commit: the answer is shown, so the commit also ends the job."""
    s = await stored_session(repo)
    intake = Intake(repo.scripts, session_ttl_s=TTL)
    queue = JobQueue(redis, "w1")
    await queue.ensure_group()
    reply = Feedback(
        team_id="T1",
        channel_id="C1",
        user_id="U2",
        session_id="",
        thread_ts="1.1",
        ts="4.4",
        text="more light",
    )
    turn = Turn(role=TurnRole.USER, ts="4.4", user_id="U2", text="more light")
    await redis.set(keys.thread("T1", "C1", "1.1"), "s1")
    await intake.submit_feedback(reply, turn)
    queued = await queue.read(block_ms=100)
    assert queued is not None
    fence = await repo.acquire("T1", "s1", LEASE_MS, job_id=queued.job_id)
    await repo.commit(
        s, s.model_copy(update={"answered_until": 2}), fence=fence, finish=queued.entry_id
    )
    assert await redis.xlen(keys.jobs_stream("T1")) == 0
    assert not await redis.exists(keys.lock("T1", "s1"))

    async def finish() -> None:
        await queue.finish(queued.entry_id, "T1", "s1", fence, job_id=queued.job_id)

    assert await commands(redis, finish) == 0  # already done by the commit
    repo.end_job()


async def test_a_last_commit_without_the_lease_finishes_nothing(
    redis: Redis, repo: Repository
) -> None:
    s = await stored_session(repo)
    intake = Intake(repo.scripts, session_ttl_s=TTL)
    queue = JobQueue(redis, "w1")
    await queue.ensure_group()
    await intake.submit(approve_click())
    queued = await queue.read(block_ms=100)
    assert queued is not None
    fence = await repo.acquire("T1", "s1", LEASE_MS, job_id=queued.job_id)
    await redis.set(keys.lock("T1", "s1"), str(fence + 1))  # taken over
    with pytest.raises(CommitConflict):
        await repo.commit(s, s.model_copy(), fence=fence, finish=queued.entry_id)
    assert await redis.xlen(keys.jobs_stream("T1")) == 1  # still pending for its new owner
    repo.end_job()


async def test_a_paid_items_cost_counts_once_even_when_the_lease_is_lost(
    redis: Redis, repo: Repository
) -> None:
    s = await stored_session(repo)
    fence = await repo.acquire("T1", "s1", LEASE_MS)
    fetched = PaidItem(state=ItemState.FETCHED, cost_usd=0.04)
    spend = ("20261203", "s1:reference_image:v1:1", 0.04)
    await repo.set_item(s, "reference_image:v1:1", fetched, fence=fence, spend=spend)
    await repo.set_item(s, "reference_image:v1:1", fetched, fence=fence, spend=spend)  # re-sent
    assert await repo.spent_on("T1", "20261203") == pytest.approx(0.04)
    await redis.set(keys.lock("T1", "s1"), str(fence + 1))  # the lease is lost meanwhile
    second = ("20261203", "s1:reference_image:v1:2", 0.05)
    with pytest.raises(CommitConflict):
        await repo.set_item(s, "reference_image:v1:2", fetched, fence=fence, spend=second)
    assert await repo.spent_on("T1", "20261203") == pytest.approx(0.09)  # paid all the same
    items = await repo.items(s)
    assert list(items) == ["reference_image:v1:1"]  # the item itself is fenced out


async def test_the_eager_lanes_view_is_for_the_lane_not_the_handler(
    redis: Redis, repo: Repository
) -> None:
    """Intake reads what the lane needs with its lease; the lane's task (started by the
    handler after the intake) is served from it, the handler's own code reads Redis."""
    s = await stored_session(repo)
    intake = Intake(repo.scripts, session_ttl_s=TTL)
    click = approve_click()
    recorded = await intake.submit(click, eager_lease_ms=LEASE_MS)
    assert recorded.fence > 0
    await redis.hset(keys.messages("T1", "s1"), "approved", "5.5")  # after the intake read

    async def lane() -> tuple[str | None, int, dict[str, Any] | None]:
        return (
            await repo.message_ts(s, "approved"),
            await repo.history_length(s),
            await repo.tombstone("T1", "s1"),
        )

    assert await asyncio.create_task(lane()) == (None, 1, None)  # as read with the lease
    assert await repo.message_ts(s, "approved") == "5.5"  # the handler's task: Redis
    assert await repo.done(click.job_id) is None  # markers were not read: Redis
    await redis.set(keys.done(click.job_id), json.dumps({"deliver": []}))
    assert await asyncio.create_task(repo.done(click.job_id)) == {"deliver": []}


def test_every_key_a_claim_touches_is_in_the_workspaces_slot() -> None:
    """claim.lua (and finish.lua) on a Redis Cluster: one slot per script."""
    job = approve_click().job_id
    named = [
        keys.lock("T1", "s1"),
        keys.fence("T1", "s1"),
        keys.session("T1", "s1"),
        keys.done(job),
        keys.eager("T1", job),
        keys.tombstone("T1", "s1"),
        keys.history("T1", "s1"),
        keys.messages("T1", "s1"),
        keys.llm_results(job),
        keys.versions("T1", "s1"),
        keys.jobs_stream("T1"),
        keys.spend("T1", "20261203"),
        keys.items("T1", "s1"),
    ]
    assert len({key_slot(k.encode()) for k in named}) == 1
