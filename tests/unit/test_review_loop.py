"""The review loop's flows against in-memory ports: every stage's generate → review → feedback →
Redo / Regenerate → Approve, paid images counted call by call, refusals in ``decide``'s words,
the daily limit, and replays after a crash — in milliseconds, with no Redis, Slack or HTTP.

The jobs run as the worker runs them (``Loop.run``: the session's lease with a new fence token,
the done marker replayed if there is one). The end-to-end tests (``tests/e2e``) cover the same
loop through Bolt, Redis and the emulators.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from bot.jobs.model import Deferred, Job
from bot.jobs.stages.video import PLANS
from bot.pipeline import review as say
from bot.pipeline.approvals import ApprovalPolicy, Rule
from bot.pipeline.artifacts import (
    ImageOutcome,
    ImageSetVersion,
    ItemState,
    PaidItem,
    StoryboardVersion,
    VideoPlan,
)
from bot.pipeline.models import Session, Stage, Status, Turn, TurnRole
from bot.pipeline.triggers import (
    Approve,
    Click,
    Confirm,
    Feedback,
    Redo,
    Regenerate,
    Retry,
    StartSession,
)
from bot.slack.actions import ActionId
from storage import keys
from storage.repository import CommitConflict, Writes
from tests.unit.fakes import (
    LEASE_MS,
    CountingVideo,
    CrashAt,
    Loop,
    SimulatedCrash,
    build_loop,
    feedback_answer,
    settings_for,
)

TEAM, CHANNEL, OWNER, OTHER = "T0TEAM", "C0TALES", "U0ALICE", "U0BOB"
SID = "sess0001"
APPROVE, REGENERATE, RETRY, REDO = (
    str(ActionId.APPROVE),
    str(ActionId.REGENERATE),
    str(ActionId.RETRY),
    str(ActionId.REDO),
)
VERSIONS = "stage_versions"  # from v2 on: list, compare, restore
_action_ts = itertools.count(1)


@pytest.fixture
def loop(tmp_path: Path) -> Loop:
    return build_loop(tmp_path)


# --- driving the loop ---------------------------------------------------------------------------


async def session(loop: Loop) -> Session:
    found = await loop.store.get(TEAM, SID)
    assert found is not None
    return found


def start_trigger(policy: ApprovalPolicy | None = None) -> StartSession:
    return StartSession(
        team_id=TEAM,
        channel_id=CHANNEL,
        user_id=OWNER,
        session_id=SID,
        prompt="eco water bottle launch",
        duration_s=30,
        policy=policy,
    )


async def start(loop: Loop, policy: ApprovalPolicy | None = None) -> Session:
    await loop.run(start_trigger(policy))
    return await session(loop)


async def reply(loop: Loop, text: str, *, user: str = OWNER) -> str:
    """A thread reply: recorded by the intake (the turn is in the history), then its job."""
    trigger = await record_reply(loop, text, f"1800000000.{next(_action_ts):06d}", user=user)
    await loop.run(trigger)
    return trigger.ts


async def record_reply(loop: Loop, text: str, ts: str, *, user: str = OWNER) -> Feedback:
    """A thread reply's intake only: its turn in the history, as handlers/messages.py makes
    it; the returned trigger is its job, not run yet."""
    s = await session(loop)
    assert s.thread_ts is not None
    loop.store.add_user_turn(s, Turn(role=TurnRole.USER, ts=ts, user_id=user, text=text))
    return Feedback(
        team_id=TEAM,
        channel_id=CHANNEL,
        user_id=user,
        session_id=SID,
        thread_ts=s.thread_ts,
        ts=ts,
        text=text,
    )


def click_trigger(
    kind: type[Click],
    *,
    stage: Stage,
    version: int,
    item: int | None = None,
    user: str = OWNER,
) -> Click:
    fields: dict[str, object] = {
        "team_id": TEAM,
        "channel_id": CHANNEL,
        "user_id": user,
        "session_id": SID,
        "stage": stage,
        "version": version,
        "message_ts": "1700000001.000001",
        "action_ts": f"1900000000.{next(_action_ts):06d}",
    }
    if item is not None:
        fields["item"] = item
    return kind.model_validate(fields)


async def click(
    loop: Loop,
    kind: type[Click],
    *,
    version: int | None = None,
    stage: Stage | None = None,
    item: int | None = None,
    user: str = OWNER,
) -> Job:
    """A button of the current stage and version, unless told otherwise."""
    s = await session(loop)
    trigger = click_trigger(
        kind,
        stage=stage or s.stage,
        version=s.version if version is None else version,
        item=item,
        user=user,
    )
    return await loop.run(trigger)


async def images(loop: Loop, number: int) -> ImageSetVersion:
    found = await loop.store.artifact(
        await session(loop), Stage.REFERENCE_IMAGE, number, ImageSetVersion
    )
    assert found is not None
    return found


async def to_images(loop: Loop) -> Session:
    await start(loop)
    await click(loop, Approve)
    s = await session(loop)
    assert (s.stage, s.status, s.version) == (Stage.REFERENCE_IMAGE, Status.AWAITING_REVIEW, 1)
    return s


def only_ephemeral(loop: Loop) -> str:
    assert len(loop.chat.ephemerals) == 1, [e.text for e in loop.chat.ephemerals]
    return loop.chat.ephemerals[0].msg.text


# --- story ---------------------------------------------------------------------------------------


async def test_start_posts_the_card_and_writes_story_v1_for_review(loop: Loop) -> None:
    s = await start(loop)

    assert (s.stage, s.status, s.version, s.active_job) == (
        Stage.STORY,
        Status.AWAITING_REVIEW,
        1,
        None,
    )
    card, story = loop.chat.slot("card"), loop.chat.slot("story")
    assert card is not None and card.thread_ts is None and s.thread_ts == card.ts
    assert story is not None and story.thread_ts == card.ts and s.story_message_ts == story.ts
    assert "The Bottle That Came Back" in story.text
    assert story.actions == [APPROVE, REGENERATE]
    assert loop.writer.count("story") == 1
    version = await loop.store.version(s, 1)
    assert version is not None and version.story.total_duration_s == 30
    # The thread is indexed (so replies find the session) and the job's done marker says
    # what to show again after a crash.
    assert loop.store.string(keys.thread(TEAM, CHANNEL, card.ts)) == SID
    job = loop.jobs[-1]
    assert await loop.store.done(job.id) == {
        "team": TEAM,
        "session": SID,
        "deliver": ["story", "card"],
    }
    assert loop.store.cached_llm_keys() == []


async def test_a_lease_check_redis_cant_answer_skips_a_progress_edit_not_the_story(
    tmp_path: Path,
) -> None:
    """The live edit's lease check meets Redis down: that edit is skipped; the LLM's answer is
    kept (not asked for again) and v1 is committed and shown."""
    loop = build_loop(tmp_path, STORYLOOP_PROGRESS_INTERVAL=0.1)  # an edit is due at once
    loop.store.unreachable_lease_checks = 1
    s = await start(loop)
    assert loop.store.unreachable_lease_checks == 0  # the check was made, and failed
    assert (s.status, s.version) == (Status.AWAITING_REVIEW, 1)
    assert loop.writer.count("story") == 1
    story = loop.chat.slot("story")
    assert story is not None and "The Bottle That Came Back" in story.text


async def test_a_redelivered_start_replays_its_delivery_and_writes_nothing_again(
    loop: Loop,
) -> None:
    await start(loop)
    posts, commits = len(loop.chat.posts), loop.store.commits

    await loop.run(loop.jobs[0].trigger, deliveries=2)

    assert loop.writer.count("story") == 1
    assert len(loop.chat.posts) == posts and loop.store.commits == commits


async def test_feedback_is_answered_in_the_thread_and_stored_as_an_assistant_turn(
    loop: Loop,
) -> None:
    await start(loop)
    ts = await reply(loop, "make it brighter, more sunlight")

    answer = loop.chat.slot(f"reply:{ts}")
    assert answer is not None and "make it brighter" in answer.text.lower()
    s = await session(loop)
    history = await loop.store.history(s)
    assert [t.role for t in history] == [TurnRole.USER, TurnRole.ASSISTANT]
    turn = history[1]
    assert turn.ts == ts and turn.stage is Stage.STORY
    assert turn.planned_changes == ("Make it brighter",)
    # Turns [0, answered_until) have their answer: the reply (the answer itself comes after).
    assert s.answered_until == 1 and s.requested_changes == ("Make it brighter",)
    assert s.version == 1 and s.status is Status.AWAITING_REVIEW  # an answer isn't a version
    # The LLM saw the reply; its cached answer went with the commit.
    assert "more sunlight" in str(loop.writer.calls[-1].messages)
    assert loop.store.cached_llm_keys() == []


async def test_regenerate_writes_v2_from_the_feedback_and_posts_a_notice(loop: Loop) -> None:
    await start(loop)
    ts = await reply(loop, "make it brighter, more sunlight")
    await click(loop, Regenerate, version=1)

    s = await session(loop)
    assert (s.version, s.status) == (2, Status.AWAITING_REVIEW)
    v2 = await loop.store.version(s, 2)
    assert v2 is not None and v2.feedback_ts == (ts,)
    assert s.incorporated_until == 2
    assert loop.chat.slot("notice:2") is not None
    prompt = str(loop.writer.calls[-1].messages)
    assert "more sunlight" in prompt and "Make it brighter" in prompt
    story = loop.chat.slot("story")
    assert story is not None and "take 2" in story.text  # the one story message, edited

    # The v1 button is out of date now: refused in decide's words, nothing written.
    commits = loop.store.commits
    await click(loop, Regenerate, version=1)
    assert only_ephemeral(loop) == say.outdated(s, 1)
    assert loop.store.commits == commits and loop.writer.count("story") == 2


async def test_only_the_owner_may_approve(loop: Loop) -> None:
    s = await start(loop)
    await click(loop, Approve, user=OTHER)

    assert only_ephemeral(loop) == say.only_approvers(s)
    assert (await session(loop)).stage is Stage.STORY


async def test_a_refusal_whose_done_mark_redis_cant_take_is_sent_once_by_the_retry(
    loop: Loop,
) -> None:
    """Redis fails as the refused click's job marks itself done: nothing has been sent yet, and
    the retry sends the one refusal (a response_url post can't be looked up to avoid a second)."""
    s = await start(loop)
    trigger = click_trigger(Approve, stage=s.stage, version=s.version, user=OTHER)
    loop.store.unreachable_marks = 1
    with pytest.raises(ConnectionError):
        await loop.run(trigger)
    assert loop.chat.ephemerals == []
    await loop.run(trigger, deliveries=2)
    assert only_ephemeral(loop) == say.only_approvers(s)
    await loop.run(trigger, deliveries=3)  # a later replay: done, nothing sent again
    assert len(loop.chat.ephemerals) == 1


async def test_a_stale_job_cannot_commit_once_its_lease_is_taken_over(loop: Loop) -> None:
    await start(loop)
    trigger = click_trigger(Regenerate, stage=Stage.STORY, version=1)
    stale = await loop.store.acquire(TEAM, SID, LEASE_MS, job_id=trigger.job_id)
    loop.store.expire_lease(TEAM, SID)  # it paused past its lease…
    assert await loop.store.acquire(TEAM, SID, LEASE_MS) > stale  # …and another job took it

    with pytest.raises(CommitConflict, match="lease lost"):
        await loop.flows.run(Job(trigger.job_id, trigger, "1-0", 1, stale))
    assert loop.writer.count("story") == 1 and (await session(loop)).version == 1


# --- reference images ---------------------------------------------------------------------------


async def test_approving_the_story_makes_each_planned_image_once_and_shows_the_set(
    loop: Loop,
) -> None:
    s = await to_images(loop)

    assert loop.writer.count("ImagePlanDraft") == 1
    assert loop.images.calls == 3
    assert loop.images.prompts == ["A cheerful hero", "A harbour", "Warm pastel look"]
    files = loop.files.in_thread(s.thread_ts or "", ".png")
    assert len(files) == 3 and all(f.data.startswith(b"\x89PNG") for f in files)
    v1 = await images(loop, 1)
    assert v1.complete and [i.file_id for i in v1.images] == [f.file_id for f in files]
    review = loop.chat.slot("reference_image:v1")
    assert review is not None and review.thread_ts == s.thread_ts
    assert review.actions == [REDO, REDO, REDO, APPROVE, REGENERATE]
    progress = loop.chat.slot("reference_image:v1:progress")
    assert progress is not None and "3 of 3 made" in progress.text
    # The approval: who and which version, its notice, the story without buttons.
    assert [(a.stage, a.version, a.user_id) for a in s.approvals] == [(Stage.STORY, 1, OWNER)]
    assert loop.chat.slot("approved") is not None
    story = loop.chat.slot("story")
    assert story is not None and story.actions == []
    # Paid: the actual cost is the session's and the workspace's day's; the items are gone.
    assert s.spent_usd == pytest.approx(v1.cost_usd) and v1.cost_usd > 0
    assert await loop.store.spent_on(TEAM, loop.ctx.today()) == pytest.approx(v1.cost_usd)
    assert await loop.store.items(s) == {} and s.estimate_usd is None
    assert list((loop.ctx.spool / TEAM / SID).glob("*")) == []


async def test_an_approval_after_a_regeneration_makes_the_images_as_a_first_set(
    loop: Loop,
) -> None:
    """The eager lane records the approval, the worker resumes the job: the image set is the
    stage's first (GENERATE), not a regeneration left over from the story's — which would
    count a reply sent before the approval as answered and never answer it (found by the
    fault loop, seed 42)."""
    await start(loop)
    await click(loop, Regenerate, version=1)  # the story's last generation was a regeneration
    s = await session(loop)
    ts = f"1800000000.{next(_action_ts):06d}"
    loop.store.add_user_turn(s, Turn(role=TurnRole.USER, ts=ts, user_id=OTHER, text="warmer"))
    approve = click_trigger(Approve, stage=Stage.STORY, version=2)
    fence = await loop.store.acquire(TEAM, SID, LEASE_MS)  # the lane's lease, from the intake
    with pytest.raises(Deferred):
        await loop.flows.run(Job(approve.job_id, approve, "", 0, fence, eager=True, session=s))
    await loop.store.release(TEAM, SID, fence)
    await loop.run(approve)  # the worker does the rest of the job

    s = await session(loop)
    assert (s.stage, s.version) == (Stage.REFERENCE_IMAGE, 1)
    assert s.answered_until < len(await loop.store.history(s))  # the reply still has its turn
    reply_trigger = Feedback(
        team_id=TEAM,
        channel_id=CHANNEL,
        user_id=OTHER,
        session_id=SID,
        thread_ts=s.thread_ts or "",
        ts=ts,
        text="warmer",
    )
    await loop.run(reply_trigger)
    assert loop.chat.slot(f"reply:{ts}") is not None


async def test_redo_remakes_only_that_image_and_keeps_the_others(loop: Loop) -> None:
    await to_images(loop)
    v1 = await images(loop, 1)
    loop.writer.answers.append(feedback_answer("Image 2 will be sunnier.", targets=[2]))
    await reply(loop, "make image 2 brighter")

    await click(loop, Redo, item=2)

    assert loop.images.calls == 4  # exactly one more paid call
    assert loop.images.prompts[-1] == "A harbour in bright sunlight"
    assert "Make it brighter" in str(loop.writer.calls[-1].messages)  # the targeted change
    v2 = await images(loop, 2)
    assert v2.redo_of == 2 and v2.complete
    assert [i.file_id for i in v2.images][0::2] == [i.file_id for i in v1.images][0::2]
    assert [i.made_in for i in v2.images] == [1, 2, 1]
    assert v2.images[1].file_id not in {i.file_id for i in v1.images}
    assert v2.cost_usd == pytest.approx(v1.cost_usd / 3)
    # A new review message; the old one is superseded, without buttons.
    old, new = loop.chat.slot("reference_image:v1"), loop.chat.slot("reference_image:v2")
    assert old is not None and old.actions == [] and "Superseded" in old.text
    assert new is not None and new.actions == [REDO, REDO, REDO, APPROVE, REGENERATE, VERSIONS]
    assert "redo of image 2" in new.text


async def test_a_refused_image_fails_alone_and_blocks_approval_until_redone(loop: Loop) -> None:
    words = "The image service's safety system refused this image's prompt."
    loop.images.fail_next("moderation_blocked", words, after=1)  # the second image
    s = await to_images(loop)

    assert loop.images.calls == 3  # not a stopper: the third image is still made
    v1 = await images(loop, 1)
    assert [i.outcome for i in v1.images] == [
        ImageOutcome.MADE,
        ImageOutcome.FAILED,
        ImageOutcome.MADE,
    ]
    assert v1.images[1].failure == words and v1.images[1].failure_code == "moderation_blocked"
    assert len(loop.files.files) == 2
    review = loop.chat.slot("reference_image:v1")
    assert review is not None and review.actions == [REDO, REDO, REDO, REGENERATE]  # no Approve
    assert "Couldn't be made" in review.text

    commits = loop.store.commits
    await click(loop, Approve)
    assert only_ephemeral(loop) == say.incomplete(s, [2])
    assert loop.store.commits == commits and (await session(loop)).stage is Stage.REFERENCE_IMAGE

    await click(loop, Redo, item=2)
    assert loop.images.calls == 4 and (await images(loop, 2)).complete
    await click(loop, Approve)
    assert (await session(loop)).stage is Stage.STORYBOARD


async def test_a_daily_limit_the_estimate_would_cross_fails_before_any_paid_call(
    tmp_path: Path,
) -> None:
    loop = build_loop(tmp_path, STORYLOOP_DAILY_SPEND_LIMIT_USD=1.0)
    await loop.store.record_spend(TEAM, loop.ctx.today(), "other-session:item", 0.9)
    await start(loop)
    job = await click(loop, Approve)  # 3 images at $0.05 estimated: $1.05 > $1.00

    assert loop.images.calls == 0
    s = await session(loop)
    assert (s.stage, s.status, s.version) == (Stage.REFERENCE_IMAGE, Status.FAILED, 0)
    assert s.failure == say.over_budget(1.0) and s.failed_op == "generate"
    failure = loop.chat.slot(f"fail:{job.id}")
    assert failure is not None and failure.actions == [RETRY]
    assert await loop.store.spent_on(TEAM, loop.ctx.today()) == pytest.approx(0.9)

    # Once the limit allows it, Retry makes the set.
    loop.ctx.settings = settings_for(tmp_path / "data", STORYLOOP_DAILY_SPEND_LIMIT_USD=5.0)
    await click(loop, Retry)
    assert loop.images.calls == 3 and (await session(loop)).status is Status.AWAITING_REVIEW


async def test_a_replay_uploads_a_fetched_image_from_the_spool_without_calling_again(
    tmp_path: Path,
) -> None:
    loop = build_loop(tmp_path, crash=CrashAt("after_image"))
    await start(loop)
    approve = click_trigger(Approve, stage=Stage.STORY, version=1)
    with pytest.raises(SimulatedCrash):
        await loop.run(approve)

    s = await session(loop)
    items = await loop.store.items(s)
    first = items["reference_image:v1:1"]
    assert first.state is ItemState.FETCHED and first.spool and Path(first.spool).exists()
    assert loop.images.calls == 1 and loop.files.files == []

    loop.ctx.crash = CrashAt(None)
    await loop.run(approve, deliveries=2)  # the same job, re-delivered after the crash

    assert loop.images.calls == 3  # images 2 and 3; image 1 came from the spool
    assert loop.writer.count("ImagePlanDraft") == 1  # the plan was cached for the job
    v1 = await images(loop, 1)
    assert v1.complete and len(loop.files.files) == 3
    assert loop.chat.slots("approved") == ["approved"]  # its notice once, not twice
    s = await session(loop)
    assert s.spent_usd == pytest.approx(v1.cost_usd)
    assert await loop.store.spent_on(TEAM, loop.ctx.today()) == pytest.approx(v1.cost_usd)


async def test_a_replay_never_repeats_a_call_that_was_out_when_the_process_died(
    loop: Loop,
) -> None:
    await start(loop)
    loop.images.crash_next()
    approve = click_trigger(Approve, stage=Stage.STORY, version=1)
    with pytest.raises(SimulatedCrash):
        await loop.run(approve)
    s = await session(loop)
    assert (await loop.store.items(s))["reference_image:v1:1"].state is ItemState.SUBMITTED

    await loop.run(approve, deliveries=2)

    assert loop.images.calls == 3  # the interrupted call + images 2 and 3
    v1 = await images(loop, 1)
    assert v1.images[0].failure_code == "interrupted" and "may have been billed" in (
        v1.images[0].failure or ""
    )
    assert [i.outcome for i in v1.images][1:] == [ImageOutcome.MADE, ImageOutcome.MADE]


# --- storyboard and the end of the line ----------------------------------------------------------


async def test_approving_the_images_makes_the_storyboard_pages_and_its_markdown_file(
    loop: Loop,
) -> None:
    await to_images(loop)
    await click(loop, Approve)

    s = await session(loop)
    assert (s.stage, s.status, s.version) == (Stage.STORYBOARD, Status.AWAITING_REVIEW, 1)
    board = await loop.store.artifact(s, Stage.STORYBOARD, 1, StoryboardVersion)
    assert board is not None and board.total_duration_s == 30
    assert [shot.references for shot in board.shots] == [("Harbour", "Style frame"), ("Hero",), ()]
    markdown = loop.files.in_thread(s.thread_ts or "", ".md")
    assert [f.filename for f in markdown] == ["storyboard-v1.md"]
    assert b"| # |" in markdown[0].data
    assert loop.chat.slots("storyboard:v1:p") == ["storyboard:v1:progress", "storyboard:v1:p1"]
    page = loop.chat.slot("storyboard:v1:p1")
    assert page is not None and page.actions == [APPROVE, REGENERATE] and "Shot 1" in page.text
    approved = loop.chat.slot("reference_image:v1")
    assert approved is not None and approved.actions == [] and "Approved v1" in approved.text
    assert loop.images.calls == 3  # the storyboard makes no paid calls
    # Story feedback doesn't carry over: the new stage's conversation starts empty.
    assert s.requested_changes == () and s.stage_started_turn == 0


async def test_approving_the_storyboard_shows_a_video_plan_and_spends_nothing(
    loop: Loop,
) -> None:
    await to_images(loop)
    await click(loop, Approve)
    await click(loop, Approve)

    s = await session(loop)
    assert (s.stage, s.status, s.active_job) == (Stage.VIDEO, Status.AWAITING_CONFIRMATION, None)
    assert [(a.stage, a.version) for a in s.approvals] == [
        (Stage.STORY, 1),
        (Stage.REFERENCE_IMAGE, 1),
        (Stage.STORYBOARD, 1),
    ]
    plan = loop.chat.slot("video:plan:1")
    assert plan is not None and "Estimated cost" in plan.text
    assert plan.actions == ["video_confirm", "video_cancel"]
    assert s.plan == 1 and s.estimate_usd and s.estimate_usd > 0
    video = loop.ctx.video
    assert isinstance(video, CountingVideo) and video.calls == []  # nothing before a confirm
    # Approve and Redo wait for the plan to be confirmed or cancelled.
    await click(loop, Approve, version=0)
    assert "confirm it" in only_ephemeral(loop)


async def test_a_quorum_covers_every_approval_and_the_video_spend(loop: Loop) -> None:
    third = "U0CAROL"
    await start(loop, ApprovalPolicy(rule=Rule.QUORUM, needed=2))
    for stage in (Stage.STORY, Stage.REFERENCE_IMAGE, Stage.STORYBOARD):
        await click(loop, Approve, user=OWNER)
        s = await session(loop)
        assert s.stage is stage and [v.user_id for v in s.votes] == [OWNER], stage
        await click(loop, Approve, user=third)
        s = await session(loop)
        assert s.stage is not stage and s.votes == ()
        assert s.approvals[-1].co_approvers == (OWNER,) and s.approvals[-1].user_id == third
    assert s.status is Status.AWAITING_CONFIRMATION
    video = loop.ctx.video
    assert isinstance(video, CountingVideo)
    await click(loop, Confirm, version=s.plan, user=OTHER)
    loop.chat.ephemerals.clear()
    await click(loop, Confirm, version=s.plan, user=OTHER)
    assert "already" in only_ephemeral(loop)
    assert video.calls == [], "one confirmation of two spends nothing"
    assert (await session(loop)).status is Status.AWAITING_CONFIRMATION
    await click(loop, Confirm, version=s.plan, user=OWNER)
    assert video.calls, "the second person's confirmation starts the render"


async def test_try_again_after_a_failed_render_is_answered_by_a_new_plan(loop: Loop) -> None:
    await to_images(loop)
    await click(loop, Approve)
    await click(loop, Approve)
    await click(loop, Confirm, version=(await session(loop)).plan)
    s = await session(loop)
    assert (s.status, s.version) == (Status.FAILED, 0)  # these fakes can't join clips

    ts = await reply(loop, "try again")
    s = await session(loop)
    # A new plan (nothing spent until it is confirmed), named as the reply's answer: the reply
    # is answered, so the next one isn't answered together with it.
    assert (s.status, s.plan) == (Status.AWAITING_CONFIRMATION, 2)
    assert s.answered_until == len(await loop.store.history(s))
    plan = await loop.store.artifact(s, PLANS, 2, VideoPlan)
    assert plan is not None and plan.feedback_ts == (ts,)
    assert loop.chat.slot("video:plan:2") is not None


# --- the fakes keep the store's rules -----------------------------------------------------------


async def test_the_memory_store_commits_compare_and_set_fenced_and_recognises_a_resend(
    loop: Loop,
) -> None:
    s = await start(loop)
    committed = await loop.store.commit(s, s.model_copy(update={"prompt": "changed"}), fence=None)
    with pytest.raises(CommitConflict, match="revision changed"):
        await loop.store.commit(s, s.model_copy(update={"prompt": "lost"}), fence=None)
    # The same commit sent again (redis-py's re-send) finds its data in place: applied once.
    commits = loop.store.commits
    again = committed.model_copy(update={"rev": s.rev})
    assert await loop.store.commit(s, again, fence=None) == committed
    assert loop.store.commits == commits

    # Items and commits under a lease need its token; the writes go with the commit.
    fence = await loop.store.acquire(TEAM, SID, LEASE_MS)
    await loop.store.set_item(
        s, "reference_image:v1:1", PaidItem(state=ItemState.PLANNED), fence=fence
    )
    with pytest.raises(CommitConflict, match="lease lost"):
        await loop.store.set_item(s, "x", PaidItem(state=ItemState.PLANNED), fence=fence - 1)
    writes = Writes().forget_items(s).mark_done("job-x", {"deliver": []})
    with pytest.raises(CommitConflict, match="lease lost"):
        await loop.store.commit(committed, committed, fence=fence + 1, writes=writes)
    assert await loop.store.items(s) != {} and await loop.store.done("job-x") is None
    await loop.store.commit(committed, committed, fence=fence, writes=writes)
    assert await loop.store.items(s) == {} and await loop.store.done("job-x") == {"deliver": []}


async def test_a_rewrite_ask_the_first_version_already_took_in_gets_a_note_not_a_second_version(
    tmp_path: Path,
) -> None:
    """A reply asking for a rewrite lands while v1 is still being written (its job was held up:
    here a crash after the placeholder), so v1 is written from it. Its own job then says so —
    no v2 from the same words, no second LLM call (seen in the cluster fault loop)."""
    loop = build_loop(tmp_path, crash=CrashAt("after_placeholder_post"))
    with pytest.raises(SimulatedCrash):
        await loop.run(start_trigger())
    s = await session(loop)
    assert s.thread_ts is not None and s.version == 0
    ts = "1800000000.999999"
    ask = await record_reply(loop, "rewrite it please", ts)
    loop.ctx.crash = CrashAt(None)
    await loop.run(start_trigger(), deliveries=2)  # v1, written with the ask in its history
    v1 = await loop.store.version(await session(loop), 1)
    assert v1 is not None and v1.feedback_ts == (ts,)

    await loop.run(ask)
    s = await session(loop)
    assert (s.version, s.status) == (1, Status.AWAITING_REVIEW)
    assert loop.writer.count("story") == 1
    note = loop.chat.slot(f"reply:{ts}")
    assert note is not None and "v1 was written after your message" in note.text
    assert s.answered_until == 1  # the ask is answered: a later reply starts after it
