"""Round trips a session's jobs no longer make (issue 12), counted by Redis itself (MONITOR):
a reply's stream mark set by its intake, a worker that doesn't ask for a lease the eager lane
still holds, a claim that also reads the approved versions and the paid items, and delivery
records written by the job's finish. Each test also shows the data is where it was before.
"""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from bot.pipeline import slots
from bot.pipeline.artifacts import ItemState, PaidItem
from bot.pipeline.models import Approval, Session, Stage, Turn, TurnRole
from bot.pipeline.triggers import Approve, Feedback
from bot.slack.streams import STREAM_MARK
from storage import keys
from storage.intake import Intake
from storage.queue import JobQueue, QueuedJob
from storage.repository import CommitConflict, Repository, Writes
from storage.scripts import NAMES, source
from tests.integration.test_job_view import LEASE_MS, TTL, commands, stored_session, version
from tests.integration.test_storage import approve_click, make_session


@pytest.fixture
async def repo(redis: Redis) -> Repository:
    for name in NAMES:
        await redis.script_load(source(name))
    return Repository(redis, session_ttl_s=TTL)


@pytest.fixture
async def queue(redis: Redis) -> JobQueue:
    q = JobQueue(redis, "w1")
    await q.ensure_group()
    return q


async def claimed_click(
    repo: Repository, queue: JobQueue
) -> tuple[Session, Approve, QueuedJob, int]:
    """A stored session, an Approve click queued for it, read and claimed by a worker."""
    s = await stored_session(repo)
    click = approve_click()
    await Intake(repo.scripts, session_ttl_s=TTL).submit(click)
    queued = await queue.read(block_ms=100)
    assert queued is not None
    fence = await repo.acquire("T1", "s1", LEASE_MS, job_id=click.job_id)
    return s, click, queued, fence


def reply(ts: str) -> tuple[Feedback, Turn]:
    feedback = Feedback(
        team_id="T1",
        channel_id="C1",
        user_id="U2",
        session_id="",
        thread_ts="1.1",
        ts=ts,
        text="more light",
    )
    return feedback, Turn(role=TurnRole.USER, ts=ts, user_id="U2", text="more light")


def test_the_stream_mark_is_the_one_the_answer_streams_look_for() -> None:
    assert STREAM_MARK == slots.STREAM_MARK
    assert slots.stream_mark(slots.reply("4.4")) == "reply:4.4" + STREAM_MARK


async def test_a_replys_intake_sets_its_answers_stream_mark(
    redis: Redis, repo: Repository, queue: JobQueue
) -> None:
    """One round trip records the reply, queues its job and marks its answer's slot; the job
    finds the mark in its claim and writes nothing more for it."""
    s = await stored_session(repo)
    await redis.set(keys.thread("T1", "C1", "1.1"), "s1")
    intake = Intake(repo.scripts, session_ttl_s=TTL)

    async def submit() -> None:
        await intake.submit_feedback(*reply("4.4"))

    assert await commands(redis, submit) == 1
    mark = slots.stream_mark(slots.reply("4.4"))
    assert await redis.hget(keys.messages("T1", "s1"), mark) == "1"
    assert 0 < await redis.ttl(keys.messages("T1", "s1")) <= TTL
    queued = await queue.read(block_ms=100)
    assert queued is not None and not queued.laned
    assert await repo.acquire("T1", "s1", LEASE_MS, job_id=queued.job_id) > 0
    assert await commands(redis, lambda: repo.message_ts(s, mark)) == 0
    assert await repo.message_ts(s, mark) == "1"
    repo.end_job()


async def test_a_reply_to_a_thread_not_yet_indexed_gets_no_mark(
    redis: Redis, repo: Repository
) -> None:
    """Kept aside for its session to adopt: there is no session to mark yet (its job does)."""
    intake = Intake(repo.scripts, session_ttl_s=TTL)
    await intake.submit_feedback(*reply("4.4"), replying_to_us=True)
    assert await redis.llen(keys.early_replies("T1", "C1", "1.1")) == 1
    assert not await redis.keys("*:msgs")


async def test_a_job_the_eager_lane_holds_is_marked_for_the_worker(
    redis: Redis, repo: Repository, queue: JobQueue
) -> None:
    """The worker waits before its first claim of such a job (bot/jobs/worker.py) instead of
    spending a round trip on a lease the lane still holds."""
    await stored_session(repo)
    intake = Intake(repo.scripts, session_ttl_s=TTL)
    laned = await intake.submit(approve_click(action_ts="9.1"), eager_lease_ms=LEASE_MS)
    assert laned.fence > 0
    busy = await intake.submit(approve_click(action_ts="9.2"), eager_lease_ms=LEASE_MS)
    assert busy.fence == 0  # the lane of the first holds the session: queued only
    plain = await intake.submit(approve_click(action_ts="9.3"))
    assert plain.fence == 0
    read = [await queue.read(block_ms=100) for _ in range(3)]
    assert [(q.job_id, q.laned) for q in read if q is not None] == [
        (approve_click(action_ts="9.1").job_id, True),
        (approve_click(action_ts="9.2").job_id, False),
        (approve_click(action_ts="9.3").job_id, False),
    ]


async def test_a_claim_reads_the_approved_versions_and_the_paid_items(
    redis: Redis, repo: Repository
) -> None:
    """A later stage's job reads the story it follows and the items it is paying for: both come
    with the claim, and the job's own item writes and its commit keep them true."""
    s = await stored_session(repo)  # the story at v1
    approved = Approval(stage=Stage.STORY, version=1, user_id="U1", at=2.0)
    s = await repo.commit(
        s,
        s.model_copy(
            update={"stage": Stage.REFERENCE_IMAGE, "version": 0, "approvals": (approved,)}
        ),
        fence=None,
    )
    fence = await repo.acquire("T1", "s1", LEASE_MS)
    first = PaidItem(state=ItemState.FETCHED, cost_usd=0.04)
    await repo.set_item(s, "reference_image:v1:1", first, fence=fence)
    await repo.release("T1", "s1", fence)

    fence = await repo.acquire("T1", "s1", LEASE_MS, job_id=approve_click().job_id)

    async def reads() -> None:
        story = await repo.version(s, s.version_of(Stage.STORY))
        assert story is not None and story.number == 1
        assert await repo.items(s) == {"reference_image:v1:1": first}

    assert await commands(redis, reads) == 0
    second = PaidItem(state=ItemState.SUBMITTED)
    await repo.set_item(s, "reference_image:v1:2", second, fence=fence)
    assert await commands(redis, lambda: repo.items(s)) == 0
    assert await repo.items(s) == {"reference_image:v1:1": first, "reference_image:v1:2": second}
    s = await repo.commit(
        s, s.model_copy(update={"version": 1}), fence=fence, writes=Writes().forget_items(s)
    )
    assert await commands(redis, lambda: repo.items(s)) == 0
    assert await repo.items(s) == {}
    assert not await redis.exists(keys.items("T1", "s1"))
    repo.end_job()


async def test_a_claim_of_a_story_without_versions_reads_none(
    redis: Redis, repo: Repository
) -> None:
    s = await repo.commit(None, make_session(), fence=None)
    assert await repo.acquire("T1", "s1", LEASE_MS, job_id=approve_click().job_id) > 0
    assert await repo.items(s) == {}
    assert await commands(redis, lambda: repo.version(s, 1)) == 1  # not in the view: Redis
    repo.end_job()


async def test_deferred_records_are_written_by_the_jobs_finish(
    redis: Redis, repo: Repository, queue: JobQueue
) -> None:
    s, click, queued, fence = await claimed_click(repo, queue)
    repo.defer_records(click.job_id, on=True)

    async def post() -> None:
        assert await repo.record_message(s, "notice:2", "5.5") == "5.5"
        assert await repo.record_message(s, "notice:2", "6.6") == "5.5"  # first wins, here too

    assert await commands(redis, post) == 0
    assert await repo.message_ts(s, "notice:2") == "5.5"
    assert await redis.hget(keys.messages("T1", "s1"), "notice:2") is None  # not yet
    repo.defer_records(click.job_id, on=False)
    assert await commands(redis, lambda: repo.record_message(s, "other", "7.7")) == 1

    async def finish() -> None:
        lost = await queue.finish(
            queued.entry_id, "T1", "s1", fence, job_id=click.job_id, ledger_ttl_s=TTL
        )
        assert lost == []

    assert await commands(redis, finish) == 1
    assert await redis.hget(keys.messages("T1", "s1"), "notice:2") == "5.5"
    assert await redis.xlen(keys.jobs_stream("T1")) == 0
    assert not await redis.exists(keys.lock("T1", "s1"))
    repo.end_job()


async def test_a_deferred_record_that_loses_its_slot_is_named(
    redis: Redis, repo: Repository, queue: JobQueue
) -> None:
    """Another attempt recorded the slot meanwhile (this one lost its lease while it posted):
    the first record stays, the finish names ours for the worker to delete."""
    s, click, queued, fence = await claimed_click(repo, queue)
    repo.defer_records(click.job_id, on=True)
    await repo.record_message(s, "notice:2", "5.5")
    await redis.hset(keys.messages("T1", "s1"), "notice:2", "4.4")  # the other attempt's
    lost = await queue.finish(
        queued.entry_id, "T1", "s1", fence, job_id=click.job_id, ledger_ttl_s=TTL
    )
    assert lost == [("notice:2", "5.5")]
    assert await redis.hget(keys.messages("T1", "s1"), "notice:2") == "4.4"
    repo.end_job()


async def test_records_kept_after_a_last_commit_are_still_written(
    redis: Redis, repo: Repository, queue: JobQueue
) -> None:
    """A last commit acknowledged the job already: the finish writes only the records."""
    s, click, queued, fence = await claimed_click(repo, queue)
    await repo.commit(
        s,
        s.model_copy(update={"version": 2}),
        fence=fence,
        writes=Writes().add_version(s, version(2)),
        finish=queued.entry_id,
    )
    repo.defer_records(click.job_id, on=True)
    await repo.record_message(s, "notice:2", "5.5")
    lost = await queue.finish(
        queued.entry_id, "T1", "s1", fence, job_id=click.job_id, ledger_ttl_s=TTL
    )
    assert lost == []
    assert await redis.hget(keys.messages("T1", "s1"), "notice:2") == "5.5"
    assert await redis.xlen(keys.jobs_stream("T1")) == 0
    repo.end_job()


async def test_outside_a_workers_job_records_are_never_deferred(
    redis: Redis, repo: Repository
) -> None:
    s = await stored_session(repo)
    repo.defer_records(approve_click().job_id, on=True)  # no job view: nothing to keep them
    assert await commands(redis, lambda: repo.record_message(s, "notice:2", "5.5")) == 1
    assert await redis.hget(keys.messages("T1", "s1"), "notice:2") == "5.5"


async def test_a_shared_images_file_is_recorded_with_its_items_state(
    redis: Redis, repo: Repository
) -> None:
    """One round trip for the item's new state and its file's ledger record, both fenced."""
    s = await stored_session(repo)
    fence = await repo.acquire("T1", "s1", LEASE_MS)
    uploaded = PaidItem(state=ItemState.UPLOADED, file_id="F1")
    slot = "file:reference_image:v1:1"

    async def write() -> None:
        shared = await repo.set_item(
            s, "reference_image:v1:1", uploaded, fence=fence, record=(slot, "F1")
        )
        assert shared == "F1"

    assert await commands(redis, write) == 1
    assert await redis.hget(keys.messages("T1", "s1"), slot) == "F1"
    assert await repo.items(s) == {"reference_image:v1:1": uploaded}
    # First record wins: a second file for the slot is not recorded over it.
    again = PaidItem(state=ItemState.UPLOADED, file_id="F2")
    assert (
        await repo.set_item(s, "reference_image:v1:1", again, fence=fence, record=(slot, "F2"))
        == "F1"
    )
    # Without the lease neither is written.
    await redis.set(keys.lock("T1", "s1"), str(fence + 1))
    with pytest.raises(CommitConflict):
        await repo.set_item(
            s, "reference_image:v1:2", uploaded, fence=fence, record=("file:x", "F3")
        )
    assert await redis.hget(keys.messages("T1", "s1"), "file:x") is None
    assert "reference_image:v1:2" not in await repo.items(s)


async def test_a_streamed_answers_record_goes_with_its_cached_llm_answer(
    redis: Redis, repo: Repository
) -> None:
    """bot/jobs/feedback.py: the stream's ts is kept while the LLM writes, then written by
    the round trip that caches the answer; a slot another attempt recorded first is named."""
    s = await stored_session(repo)
    job = "msg:T1:C1:4.4"
    assert await repo.acquire("T1", "s1", LEASE_MS, job_id=job) > 0
    repo.defer_records(job, on=True)
    assert await commands(redis, lambda: repo.record_message(s, "reply:4.4", "5.5")) == 0
    repo.defer_records(job, on=False)

    async def cache() -> None:
        assert await repo.cache_llm(job, "reply:4.4", '{"answer": 1}') == []

    assert await commands(redis, cache) == 1
    assert await redis.hget(keys.messages("T1", "s1"), "reply:4.4") == "5.5"
    assert await redis.hget(keys.llm_results(job), "reply:4.4") == '{"answer": 1}'

    repo.defer_records(job, on=True)
    await repo.record_message(s, "reply:6.6", "7.7")
    await redis.hset(keys.messages("T1", "s1"), "reply:6.6", "7.0")  # another attempt's
    assert await repo.cache_llm(job, "reply:6.6", "{}") == [("reply:6.6", "7.7")]
    repo.end_job()


async def test_a_commit_writes_the_records_the_job_kept(redis: Redis, repo: Repository) -> None:
    s = await stored_session(repo)
    job = "msg:T1:C1:4.4"
    fence = await repo.acquire("T1", "s1", LEASE_MS, job_id=job)
    repo.defer_records(job, on=True)
    await repo.record_message(s, "reply:4.4", "5.5")
    await repo.commit(s, s.model_copy(update={"answered_until": 1}), fence=fence)
    assert await redis.hget(keys.messages("T1", "s1"), "reply:4.4") == "5.5"
    repo.end_job()


async def test_a_stopped_job_writes_what_it_kept_and_keeps_nothing_after(
    redis: Redis, repo: Repository
) -> None:
    """A job stopped before its finish (its lease lost): what it kept is written, first record
    wins (ours lost: named for deletion); a post still in flight then records at once."""
    s = await stored_session(repo)
    job = "msg:T1:C1:4.4"
    assert await repo.acquire("T1", "s1", LEASE_MS, job_id=job) > 0
    repo.defer_records(job, on=True)
    await repo.record_message(s, "reply:4.4", "5.5")
    await repo.record_message(s, "notice:2", "6.6")
    await redis.hset(keys.messages("T1", "s1"), "notice:2", "6.0")  # the new owner's
    assert await repo.close_job(job) == [("notice:2", "6.6")]
    assert await redis.hget(keys.messages("T1", "s1"), "reply:4.4") == "5.5"
    assert await redis.hget(keys.messages("T1", "s1"), "notice:2") == "6.0"
    await redis.hset(keys.messages("T1", "s1"), "reply:8.8", "8.0")
    # Still deferring, but the job is closed: the in-flight post's record is written now and
    # loses to the slot's first record (post_once then deletes its message).
    assert await repo.record_message(s, "reply:8.8", "8.9") == "8.0"
    assert await repo.close_job(job) == []
    repo.end_job()
