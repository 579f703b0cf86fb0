"""Storage against a real redis-server: intake dedupe, CAS commits, fencing, leases, the queue."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from bot.pipeline.artifacts import ItemState, PaidItem, Shot, StoryboardVersion
from bot.pipeline.models import Session, Stage, Status, Turn, TurnRole
from bot.pipeline.triggers import Approve, Feedback, StartSession
from storage import keys
from storage.intake import Intake, Outcome
from storage.queue import JobQueue
from storage.repository import CommitConflict, EagerState, HandOff, Repository, Writes

TTL = 3600


def make_session(team: str = "T1", sid: str = "s1") -> Session:
    return Session(
        id=sid,
        team_id=team,
        channel_id="C1",
        owner_id="U1",
        prompt="p",
        duration_s=30,
        created_at=1.0,
        updated_at=1.0,
    )


def approve_click(sid: str = "s1", action_ts: str = "9.9") -> Approve:
    return Approve(
        team_id="T1",
        channel_id="C1",
        user_id="U1",
        session_id=sid,
        version=1,
        message_ts="1.1",
        action_ts=action_ts,
    )


def start_trigger(team: str = "T1", sid: str = "s1") -> StartSession:
    return StartSession(
        team_id=team, channel_id="C1", user_id="U1", session_id=sid, prompt="p", duration_s=30
    )


@pytest.fixture
def repo(redis: Redis) -> Repository:
    return Repository(redis, session_ttl_s=TTL)


@pytest.fixture
def intake(repo: Repository) -> Intake:
    return Intake(repo.scripts, session_ttl_s=TTL)


async def test_intake_enqueues_once_per_trigger(redis: Redis, intake: Intake) -> None:
    assert (await intake.submit(start_trigger())).outcome is Outcome.ENQUEUED
    assert (await intake.submit(start_trigger())).outcome is Outcome.DUPLICATE
    assert await redis.xlen(keys.jobs_stream("T1")) == 1


async def test_concurrent_identical_intake_enqueues_one(redis: Redis, intake: Intake) -> None:
    click = approve_click()
    results = await asyncio.gather(*(intake.submit(click) for _ in range(20)))
    assert [r.outcome for r in results].count(Outcome.ENQUEUED) == 1
    assert await redis.xlen(keys.jobs_stream("T1")) == 1


async def test_intake_takes_the_lease_for_the_eager_lane_only_when_free(
    redis: Redis, intake: Intake, repo: Repository
) -> None:
    """One round trip records the click and, if nobody holds the session, leases it."""

    def click(action_ts: str) -> Approve:
        return approve_click(action_ts=action_ts)

    first = await intake.submit(click("1.0"), eager_lease_ms=5000)
    assert first.outcome is Outcome.ENQUEUED and first.fence > 0
    assert await repo.holds("T1", "s1", first.fence)
    second = await intake.submit(click("2.0"), eager_lease_ms=5000)
    assert second.outcome is Outcome.ENQUEUED and second.fence == 0  # busy: the worker's job
    again = await intake.submit(click("1.0"), eager_lease_ms=5000)
    assert again.outcome is Outcome.DUPLICATE and again.fence == 0
    assert await repo.acquire("T1", "s1", 5000) == 0  # a worker waits for the lane
    assert await redis.pttl(keys.lock("T1", "s1")) <= 5000
    plain = await intake.submit(click("3.0"))
    assert plain.outcome is Outcome.ENQUEUED and plain.fence == 0

    # The job's marker says an eager attempt is running until the lane hands the job over.
    job = click("1.0").job_id
    assert await repo.eager_state("T1", job) is EagerState.RUNNING
    assert await repo.eager_state("T1", click("2.0").job_id) is None  # no lane ran that one
    # Handing off frees the lease and records how the lane left the job, only while ours.
    assert not (
        await repo.handoff("T1", "s1", first.fence + 1, job, EagerState.SHOWN, reserve_ms=5000)
    ).ours
    assert await repo.eager_state("T1", job) is EagerState.RUNNING
    assert (
        await repo.handoff("T1", "s1", first.fence, job, EagerState.SHOWN, reserve_ms=5000)
    ).ours
    assert await repo.eager_state("T1", job) is EagerState.SHOWN
    assert 0 < await redis.ttl(keys.eager("T1", job)) <= keys.EAGER_TTL_S
    # "shown": the lease stays reserved for this job's worker; no other job slips in between.
    assert await repo.acquire("T1", "s1", 5000) == 0
    assert await repo.acquire("T1", "s1", 5000, job_id=click("2.0").job_id) == 0
    assert await repo.acquire("T1", "s1", 5000, job_id=job) > first.fence  # fences only grow


async def test_the_eager_lease_comes_with_the_session_as_it_is(
    intake: Intake, repo: Repository
) -> None:
    """The intake reads the session in the round trip that leases it: the lane needs no GET."""
    s = await repo.commit(None, make_session(sid="s2"), fence=None)
    click = approve_click("s2", "5.0")
    recorded = await intake.submit(click, eager_lease_ms=5000)
    assert recorded.fence and recorded.session == s
    busy = await intake.submit(click.model_copy(update={"action_ts": "6.0"}), eager_lease_ms=5000)
    assert busy.fence == 0 and busy.session is None


async def test_feedback_intake_only_for_session_threads(
    redis: Redis, intake: Intake, repo: Repository
) -> None:
    fb = Feedback(
        team_id="T1",
        channel_id="C1",
        user_id="U2",
        session_id="",
        thread_ts="100.1",
        ts="100.2",
        text="funnier",
    )
    turn = Turn(role=TurnRole.USER, ts="100.2", user_id="U2", text="funnier")
    assert await intake.submit_feedback(fb, turn) is Outcome.NOT_OURS
    s = await repo.commit(
        None, make_session(), fence=None, writes=Writes().index_thread(make_session(), "100.1")
    )
    assert await intake.submit_feedback(fb, turn) is Outcome.ENQUEUED
    assert await intake.submit_feedback(fb, turn) is Outcome.DUPLICATE
    assert [t.text for t in await repo.history(s)] == ["funnier"]
    queue = JobQueue(redis, "c1")
    await queue.ensure_group()
    job = await queue.read(block_ms=100)
    assert job is not None and job.payload["session_id"] == "s1"


async def test_other_workspace_cannot_reach_a_session(intake: Intake, repo: Repository) -> None:
    s = make_session(team="T1")
    await repo.commit(None, s, fence=None, writes=Writes().index_thread(s, "100.1"))
    fb = Feedback(
        team_id="T2",
        channel_id="C1",
        user_id="U2",
        session_id="",
        thread_ts="100.1",
        ts="100.2",
        text="hi",
    )
    turn = Turn(role=TurnRole.USER, ts="100.2", user_id="U2", text="hi")
    assert await intake.submit_feedback(fb, turn) is Outcome.NOT_OURS
    assert await repo.get("T2", "s1") is None
    assert await repo.get("T1", "s1") is not None


async def test_commit_is_compare_and_set(repo: Repository) -> None:
    first = await repo.commit(None, make_session(), fence=None)
    assert first.rev == 1
    second = await repo.commit(
        first, first.model_copy(update={"status": Status.GENERATING}), fence=None
    )
    assert second.rev == 2
    with pytest.raises(CommitConflict, match="revision"):
        await repo.commit(first, first.model_copy(update={"prompt": "stale"}), fence=None)
    stored = await repo.get("T1", "s1")
    assert stored is not None and stored.status is Status.GENERATING and stored.prompt == "p"


async def test_fenced_commit_refused_after_lease_taken_over(repo: Repository) -> None:
    s = await repo.commit(None, make_session(), fence=None)
    old_token = await repo.acquire("T1", "s1", lease_ms=50)
    assert old_token > 0
    assert await repo.acquire("T1", "s1", lease_ms=50) == 0  # held
    await asyncio.sleep(0.1)  # the holder stalls past its lease
    new_token = await repo.acquire("T1", "s1", lease_ms=5000)
    assert new_token > old_token
    with pytest.raises(CommitConflict, match="lease"):
        await repo.commit(s, s.model_copy(update={"prompt": "stale"}), fence=old_token)
    assert not await repo.renew("T1", "s1", old_token, 5000)
    committed = await repo.commit(s, s.model_copy(update={"prompt": "new"}), fence=new_token)
    assert committed.prompt == "new"
    await repo.release("T1", "s1", old_token)  # a stale release must not free the new lease
    assert await repo.acquire("T1", "s1", lease_ms=50) == 0


async def test_commit_writes_are_atomic_with_the_session(redis: Redis, repo: Repository) -> None:
    s = make_session()
    writes = Writes().index_thread(s, "5.5").mark_done("start:T1:s1", {"deliver": ["story"]})
    await repo.commit(None, s, fence=None, writes=writes)
    assert await repo.session_for_thread("T1", "C1", "5.5") == "s1"
    assert await repo.done("start:T1:s1") == {"deliver": ["story"]}
    # A conflicting commit writes nothing at all.
    with pytest.raises(CommitConflict):
        await repo.commit(
            None,
            s.model_copy(update={"prompt": "other"}),
            fence=None,
            writes=Writes().mark_done("msg:T1:C1:2.0", {}),
        )
    assert await repo.done("msg:T1:C1:2.0") is None
    assert await redis.ttl(keys.session("T1", "s1")) > 0


async def test_message_ledger_first_record_wins(repo: Repository) -> None:
    s = make_session()
    assert await repo.record_message(s, "card", "1.1") == "1.1"
    assert await repo.record_message(s, "card", "2.2") == "1.1"
    assert await repo.message_ts(s, "card") == "1.1"


async def test_queue_reclaims_jobs_of_a_dead_consumer(redis: Redis, intake: Intake) -> None:
    await intake.submit(start_trigger())
    dead, alive = JobQueue(redis, "dead"), JobQueue(redis, "alive")
    await dead.ensure_group()
    job = await dead.read(block_ms=100)
    assert job is not None and job.deliveries == 1
    assert await alive.reclaim(min_idle_ms=10_000) == []  # still fresh
    await asyncio.sleep(0.15)
    reclaimed = await alive.reclaim(min_idle_ms=100)
    assert [j.job_id for j in reclaimed] == [job.job_id]
    assert reclaimed[0].deliveries == 2
    assert not await dead.touch(job.entry_id)  # the dead one can't renew what it lost
    assert await alive.touch(job.entry_id)
    await alive.ack(job.entry_id)
    assert await redis.xlen(keys.jobs_stream("T1")) == 0
    assert await alive.reclaim(min_idle_ms=0) == []


async def test_touch_keeps_a_running_job_from_being_reclaimed(redis: Redis, intake: Intake) -> None:
    await intake.submit(start_trigger())
    worker, other = JobQueue(redis, "w"), JobQueue(redis, "o")
    await worker.ensure_group()
    job = await worker.read(block_ms=100)
    assert job is not None
    for _ in range(3):
        await asyncio.sleep(0.06)
        assert await worker.touch(job.entry_id)
    assert await other.reclaim(min_idle_ms=100) == []


async def test_a_resent_commit_is_recognised_not_applied_twice(
    redis: Redis, repo: Repository
) -> None:
    """redis-py re-sends a script after a connection error: the second run must be a no-op."""
    s = make_session()
    writes = Writes().add_turn(s, Turn(role=TurnRole.USER, ts="1.1", user_id="U1", text="hi"))
    first = await repo.commit(None, s, fence=None, writes=writes)
    again = await repo.commit(None, s, fence=None, writes=writes)  # the same call, re-sent
    assert again.rev == first.rev == 1
    assert len(await repo.history(first)) == 1


# --- paid items and spending (images) -----------------------------------------------------


async def test_a_paid_item_is_recorded_only_under_the_lease(repo: Repository) -> None:
    s = await repo.commit(None, make_session(), fence=None)
    fence = await repo.acquire("T1", "s1", 5000)
    await repo.set_item(s, "reference_image:v1:1", PaidItem(state=ItemState.SUBMITTED), fence=fence)
    assert (await repo.items(s))["reference_image:v1:1"].state is ItemState.SUBMITTED
    with pytest.raises(CommitConflict):
        await repo.set_item(
            s, "reference_image:v1:1", PaidItem(state=ItemState.FETCHED), fence=fence + 1
        )
    assert (await repo.items(s))["reference_image:v1:1"].state is ItemState.SUBMITTED
    # The outcome's commit forgets the items with it.
    await repo.commit(
        s, s.model_copy(update={"version": 1}), fence=fence, writes=Writes().forget_items(s)
    )
    assert await repo.items(s) == {}


async def test_spending_counts_each_item_once_per_workspace_and_day(repo: Repository) -> None:
    assert await repo.record_spend("T1", "20261203", "s1:img:1", 0.04) == pytest.approx(0.04)
    # A replayed job (or redis-py re-sending the script) records the same item again: no change.
    assert await repo.record_spend("T1", "20261203", "s1:img:1", 0.04) == pytest.approx(0.04)
    assert await repo.record_spend("T1", "20261203", "s1:img:2", 0.05) == pytest.approx(0.09)
    assert await repo.spent_on("T1", "20261203") == pytest.approx(0.09)
    assert await repo.spent_on("T2", "20261203") == 0.0  # another workspace
    assert await repo.spent_on("T1", "20261204") == 0.0  # another day


async def test_stage_versions_live_beside_the_storys(repo: Repository) -> None:
    s = await repo.commit(None, make_session(), fence=None)
    board = StoryboardVersion(
        number=1,
        shots=(
            Shot(
                number=1,
                scene=1,
                duration_s=5,
                shot_type="wide",
                camera="static",
                action="a",
                audio="",
            ),
        ),
        created_at=1.0,
    )
    writes = Writes().add_artifact(s, Stage.STORYBOARD, 1, board.model_dump_json())
    s = await repo.commit(s, s.model_copy(update={"version": 1}), fence=None, writes=writes)
    assert await repo.artifact(s, Stage.STORYBOARD, 1, StoryboardVersion) == board
    assert await repo.artifacts(s, Stage.STORYBOARD, StoryboardVersion) == [(1, board)]
    assert await repo.version(s, 1) is None  # the story's versions are separate


async def test_a_new_storys_intake_creates_its_session_with_the_lanes_lease(
    redis: Redis, intake: Intake, repo: Repository
) -> None:
    """The eager lane posts the card with no commit first: the intake script writes the session
    (rev 1) it would have committed — only when there is none, and only with the lease."""
    t = start_trigger(sid="s9")
    fresh = t.new_session(default_policy=make_session().policy, now=5.0).model_copy(
        update={"rev": 1}
    )
    recorded = await intake.submit(t, eager_lease_ms=5000, create=fresh)
    assert recorded.fence > 0 and recorded.created
    assert recorded.session == fresh
    stored = await repo.get("T1", "s9")
    assert stored == fresh and stored.active_job == t.job_id
    assert 0 < await redis.ttl(keys.session("T1", "s9")) <= TTL
    # A commit from there is compare-and-set on rev 1, as after the worker's own first commit.
    moved = await repo.commit(stored, stored.model_copy(update={"thread_ts": "7.7"}), fence=None)
    assert moved.rev == 2
    # Seen before: nothing is written again, nothing is leased.
    assert (await intake.submit(t, eager_lease_ms=5000, create=fresh)).outcome is (
        Outcome.DUPLICATE
    )
    assert (await repo.get("T1", "s9")) == moved
    # Without the lease (the session is busy) the script creates nothing: the worker does.
    other = start_trigger(sid="s10")
    await redis.set(keys.lock("T1", "s10"), "someone", px=5000)
    busy = await intake.submit(
        other,
        eager_lease_ms=5000,
        create=other.new_session(default_policy=fresh.policy, now=5.0),
    )
    assert busy.fence == 0 and not busy.created
    assert await repo.get("T1", "s10") is None


async def test_the_eager_lanes_ledger_records_are_written_by_its_handoff(
    redis: Redis, intake: Intake, repo: Repository
) -> None:
    """In the lane, a message's record waits for the hand-off (one round trip for all); the
    first record of a slot still wins, and a lane message that lost is named for deletion."""
    s = make_session()
    await repo.commit(None, s, fence=None)
    ledger = keys.messages("T1", "s1")
    recorded = await intake.submit(approve_click(action_ts="3.0"), eager_lease_ms=5000)
    assert recorded.fence > 0
    job = approve_click(action_ts="3.0").job_id

    async def lane() -> tuple[str, str, object]:
        # Served from the intake's view in the lane's task (as EagerLane.start runs it).
        notice = await repo.record_message(s, "approved:story", "111.1")
        assert await redis.hget(ledger, "approved:story") is None  # not written yet
        assert await repo.message_ts(s, "approved:story") == "111.1"  # but known to the lane
        await redis.hset(ledger, "card", "999.9")  # another attempt recorded the card meanwhile
        card = await repo.record_message(s, "card", "222.2")
        out = await repo.handoff("T1", "s1", recorded.fence, job, EagerState.SHOWN, reserve_ms=5)
        return notice, card, out

    notice, card, out = await asyncio.create_task(lane())
    assert notice == "111.1" and card == "222.2"
    assert out == HandOff(True, [("card", "222.2")])  # the lane deletes its second card
    assert await redis.hget(ledger, "approved:story") == "111.1"
    assert await redis.hget(ledger, "card") == "999.9"  # the first record kept
    assert 0 < await redis.ttl(ledger) <= TTL
    assert await repo.eager_state("T1", job) is EagerState.SHOWN
