"""The review loop's state table: every stage, status and trigger has one decision.

``decide`` is pure, so the whole table is checked here in milliseconds; the end-to-end tests
check that the flows carry decisions out.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from bot.pipeline.models import Approval, Session, Stage, Status
from bot.pipeline.stages import REGISTRY, definition, next_stage, reviewed, spec
from bot.pipeline.transitions import (
    Act,
    Advance,
    Answer,
    Decision,
    Event,
    Generate,
    Note,
    Op,
    Refuse,
    Stop,
    decide,
)

OWNER = "U0OWNER"
PRIOR = {
    Stage.STORY: (),
    Stage.REFERENCE_IMAGE: (Stage.STORY,),
    Stage.STORYBOARD: (Stage.STORY, Stage.REFERENCE_IMAGE),
    Stage.VIDEO: (Stage.STORY, Stage.REFERENCE_IMAGE, Stage.STORYBOARD),
    Stage.COMPLETE: (Stage.STORY, Stage.REFERENCE_IMAGE, Stage.STORYBOARD, Stage.VIDEO),
}


def session(stage: Stage, status: Status, version: int, **extra: Any) -> Session:
    approvals = tuple(
        Approval(stage=done, version=1, user_id=OWNER, at=1.0) for done in PRIOR[stage]
    )
    return Session(
        id="s1",
        team_id="T1",
        channel_id="C1",
        owner_id=OWNER,
        prompt="p",
        duration_s=30,
        stage=stage,
        status=status,
        version=version,
        approvals=approvals,
        created_at=1.0,
        updated_at=1.0,
        **extra,
    )


def expected(stage: Stage, status: Status, version: int, act: Act) -> type[Decision] | None:
    """The table in ``transitions``' docstring, written out again independently."""
    available = stage in {d.stage for d in reviewed()}
    if act is Act.REPLY:
        if not available or status in (Status.QUEUED, Status.UNPOSTABLE):
            return Note
        return Answer
    if not available or status in (Status.QUEUED, Status.UNPOSTABLE):
        return Refuse
    if stage is Stage.VIDEO:
        return expected_video(status, version, act)
    if act in (Act.CONFIRM, Act.CANCEL):
        return Refuse
    if status in (Status.STARTING, Status.GENERATING, Status.REGENERATING):
        return Refuse
    if act is Act.RETRY:
        return Generate if status is Status.FAILED else Refuse
    if version == 0 or status not in (Status.AWAITING_REVIEW, Status.FAILED):
        return Refuse
    if act is Act.APPROVE:
        return Advance
    if act is Act.REDO:
        return Generate if spec(stage).item else Refuse
    return Generate


def expected_video(status: Status, version: int, act: Act) -> type[Decision] | None:
    busy = (Status.STARTING, Status.GENERATING, Status.REGENERATING)
    if act is Act.CONFIRM:
        return Generate if status is Status.AWAITING_CONFIRMATION else Refuse
    if act is Act.CANCEL:
        return Stop if status in (Status.AWAITING_CONFIRMATION, *busy) else Refuse
    if status in busy:
        return Refuse
    if act is Act.RETRY:
        return Generate if status in (Status.FAILED, Status.CANCELLED) else Refuse
    if version == 0 or status not in (Status.AWAITING_REVIEW, Status.FAILED):
        return Refuse
    return Advance if act is Act.APPROVE else Generate


CASES = list(
    itertools.product(
        [*Stage],
        [*Status],
        [0, 2],
        [Act.APPROVE, Act.REGENERATE, Act.REDO, Act.RETRY, Act.REPLY, Act.CONFIRM, Act.CANCEL],
    )
)


@pytest.mark.parametrize(("stage", "status", "version", "act"), CASES)
def test_every_stage_status_and_trigger_has_its_decision(
    stage: Stage, status: Status, version: int, act: Act
) -> None:
    s = session(stage, status, version, failed_op="regenerate", plan=version)
    event = Event(act, OWNER, stage=None if act is Act.REPLY else stage, version=version, item=1)
    d = decide(s, event, may_approve=True, items=3)
    want = expected(stage, status, version, act)
    assert type(d) is want, (stage, status, version, act, d)
    if isinstance(d, Refuse):
        assert d.text and "Traceback" not in d.text
    if isinstance(d, Generate):
        assert d.stage is stage
    if isinstance(d, Advance):
        assert d.stage is stage and d.version == version and d.to is next_stage(stage)
        found = definition(d.to)
        if d.to is Stage.COMPLETE:
            assert d.to_status is Status.DONE
        else:
            assert d.to_status is (
                Status.GENERATING if found is not None and found.available else Status.QUEUED
            )


def test_approval_moves_each_stage_on_and_the_video_completes_the_session() -> None:
    d = decide(
        session(Stage.STORY, Status.AWAITING_REVIEW, 2),
        Event(Act.APPROVE, OWNER, stage=Stage.STORY, version=2),
        may_approve=True,
    )
    assert d == Advance(Stage.STORY, 2, Stage.REFERENCE_IMAGE, Status.GENERATING)
    d = decide(
        session(Stage.STORYBOARD, Status.AWAITING_REVIEW, 1),
        Event(Act.APPROVE, OWNER, stage=Stage.STORYBOARD, version=1),
        may_approve=True,
    )
    assert d == Advance(Stage.STORYBOARD, 1, Stage.VIDEO, Status.GENERATING)
    d = decide(
        session(Stage.VIDEO, Status.AWAITING_REVIEW, 1, plan=1),
        Event(Act.APPROVE, OWNER, stage=Stage.VIDEO, version=1),
        may_approve=True,
    )
    assert d == Advance(Stage.VIDEO, 1, Stage.COMPLETE, Status.DONE)


def test_nothing_is_spent_on_video_without_a_confirmation_of_the_newest_plan() -> None:
    waiting = session(Stage.VIDEO, Status.AWAITING_CONFIRMATION, 0, plan=2)
    confirm = Event(Act.CONFIRM, OWNER, stage=Stage.VIDEO, version=2)
    assert decide(waiting, confirm, may_approve=True) == Generate(Stage.VIDEO, Op.RENDER)
    d = decide(waiting, confirm, may_approve=False)
    assert isinstance(d, Refuse) and "confirm spending" in d.text
    old = Event(Act.CONFIRM, OWNER, stage=Stage.VIDEO, version=1)
    d = decide(waiting, old, may_approve=True)
    assert isinstance(d, Refuse) and "plan 1" in d.text
    rendering = session(Stage.VIDEO, Status.GENERATING, 0, plan=2)
    d = decide(rendering, confirm, may_approve=True)
    assert isinstance(d, Refuse) and "already" in d.text
    cancel = Event(Act.CANCEL, OWNER, stage=Stage.VIDEO, version=2)
    assert decide(rendering, cancel, may_approve=True) == Stop(Stage.VIDEO)


def test_who_may_approve_is_checked_first_at_every_stage() -> None:
    for stage in (d.stage for d in reviewed()):
        d = decide(
            session(stage, Status.AWAITING_REVIEW, 1),
            Event(Act.APPROVE, "U0OTHER", stage=stage, version=1),
            may_approve=False,
        )
        assert isinstance(d, Refuse) and f"<@{OWNER}>" in d.text


def test_buttons_of_an_approved_stage_are_refused_as_already_approved() -> None:
    s = session(Stage.REFERENCE_IMAGE, Status.AWAITING_REVIEW, 1)
    for act in (Act.APPROVE, Act.REGENERATE, Act.RETRY):
        d = decide(s, Event(act, OWNER, stage=Stage.STORY, version=1), may_approve=True)
        assert isinstance(d, Refuse) and "already approved" in d.text


def test_buttons_of_a_stage_not_reached_yet_are_refused_as_stale() -> None:
    s = session(Stage.STORY, Status.AWAITING_REVIEW, 1)
    d = decide(s, Event(Act.APPROVE, OWNER, stage=Stage.STORYBOARD, version=1), may_approve=True)
    assert isinstance(d, Refuse) and "isn't at" in d.text


def test_an_older_version_is_refused_with_both_numbers() -> None:
    s = session(Stage.REFERENCE_IMAGE, Status.AWAITING_REVIEW, 3)
    d = decide(
        s, Event(Act.REDO, OWNER, stage=Stage.REFERENCE_IMAGE, version=2, item=1), may_approve=True
    )
    assert isinstance(d, Refuse) and "v2" in d.text and "v3" in d.text


@pytest.mark.parametrize("item", [None, 0, 4, 99])
def test_redo_out_of_range_is_refused(item: int | None) -> None:
    s = session(Stage.REFERENCE_IMAGE, Status.AWAITING_REVIEW, 1)
    event = Event(Act.REDO, OWNER, stage=Stage.REFERENCE_IMAGE, version=1, item=item)
    d = decide(s, event, may_approve=True, items=3)
    assert isinstance(d, Refuse) and "3" in d.text


def test_redo_in_range_remakes_that_item() -> None:
    s = session(Stage.REFERENCE_IMAGE, Status.AWAITING_REVIEW, 1)
    event = Event(Act.REDO, OWNER, stage=Stage.REFERENCE_IMAGE, version=1, item=2)
    assert decide(s, event, may_approve=True, items=3) == Generate(
        Stage.REFERENCE_IMAGE, Op.REDO, 2
    )


def test_a_set_with_missing_images_cant_be_approved() -> None:
    s = session(Stage.REFERENCE_IMAGE, Status.AWAITING_REVIEW, 1)
    event = Event(Act.APPROVE, OWNER, stage=Stage.REFERENCE_IMAGE, version=1)
    d = decide(s, event, may_approve=True, items=4, missing=(2, 4))
    assert isinstance(d, Refuse) and "2, 4" in d.text


def test_retry_reruns_what_failed() -> None:
    first = session(Stage.STORY, Status.FAILED, 0)
    retry = Event(Act.RETRY, OWNER, stage=Stage.STORY, version=0)
    assert decide(first, retry, may_approve=True) == Generate(Stage.STORY, Op.GENERATE)
    redo = session(Stage.REFERENCE_IMAGE, Status.FAILED, 2, failed_op="redo", failed_item=3)
    retry = Event(Act.RETRY, OWNER, stage=Stage.REFERENCE_IMAGE, version=2)
    assert decide(redo, retry, may_approve=True) == Generate(Stage.REFERENCE_IMAGE, Op.REDO, 3)


def test_writing_try_again_after_a_failed_first_story_retries_it() -> None:
    """Issue 10 (6a): "try again" in the thread must retry, as the Retry button does."""
    s = session(Stage.STORY, Status.FAILED, 0)
    d = decide(s, Event(Act.REPLY, OWNER, wants_regenerate=True), may_approve=False)
    assert d == Generate(Stage.STORY, Op.GENERATE)
    d = decide(s, Event(Act.REPLY, OWNER), may_approve=False)
    assert d == Answer(Stage.STORY)


def test_asking_for_a_new_version_in_the_thread_regenerates_the_current_stage() -> None:
    for stage in (d.stage for d in reviewed()):
        s = session(stage, Status.AWAITING_REVIEW, 1)
        d = decide(s, Event(Act.REPLY, OWNER, wants_regenerate=True), may_approve=False)
        assert d == Generate(stage, Op.REGENERATE)


def test_the_registry_is_ordered_and_ends_complete() -> None:
    stages = [d.stage for d in REGISTRY]
    assert stages == [Stage.STORY, Stage.REFERENCE_IMAGE, Stage.STORYBOARD, Stage.VIDEO]
    assert [next_stage(s) for s in stages] == [*stages[1:], Stage.COMPLETE]
    assert next_stage(Stage.COMPLETE) is Stage.COMPLETE
