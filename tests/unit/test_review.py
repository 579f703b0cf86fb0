"""The review loop's words: every refusal names what to do, in plain words, for every stage.

Which refusal a trigger gets is the state table's business (``test_transitions.py``); here we
check what a person reads.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.pipeline import review
from bot.pipeline.approvals import ApprovalPolicy, Rule, may_approve
from bot.pipeline.models import Approval, Session, Stage, Status
from bot.pipeline.stages import reviewed

OWNER = "U0ALICE"
OTHER = "U0BOB"


def make_session(**changes: Any) -> Session:
    fields: dict[str, Any] = {
        "id": "sess_1",
        "team_id": "T0TEAM",
        "channel_id": "C0TALES",
        "owner_id": OWNER,
        "prompt": "eco water bottle launch",
        "duration_s": 30,
        "stage": Stage.STORY,
        "status": Status.AWAITING_REVIEW,
        "version": 2,
        "created_at": 1.0,
        "updated_at": 2.0,
    }
    fields.update(changes)
    return Session(**fields)


def test_only_the_owner_may_approve_by_default_and_anyone_with_the_policy() -> None:
    s = make_session()
    assert may_approve(s, OWNER)
    assert not may_approve(s, OTHER)
    anyone = make_session(policy=ApprovalPolicy(rule=Rule.ANYONE))
    assert may_approve(anyone, OTHER)


@pytest.mark.parametrize("stage", [d.stage for d in reviewed()])
def test_the_approver_refusal_names_who_can_and_what_else_to_do(stage: Stage) -> None:
    text = review.only_approvers(make_session(stage=stage))
    assert f"<@{OWNER}>" in text and "feedback" in text


def test_already_approved_names_version_and_approver() -> None:
    s = make_session(
        stage=Stage.REFERENCE_IMAGE,
        approvals=(Approval(stage=Stage.STORY, version=3, user_id=OTHER, at=1.0),),
    )
    text = review.already_approved(s, Stage.STORY)
    assert "already approved" in text and "v3" in text and f"<@{OTHER}>" in text


def test_outdated_names_both_versions_and_the_stage() -> None:
    s = make_session(stage=Stage.STORYBOARD, version=4)
    text = review.outdated(s, 2)
    assert "v2" in text and "v4" in text and "storyboard" in text


def test_incomplete_set_names_the_missing_images() -> None:
    text = review.incomplete(make_session(stage=Stage.REFERENCE_IMAGE), [2, 4])
    assert "2, 4" in text and "Redo" in text


def test_over_budget_says_what_resets_and_who_can_raise_it() -> None:
    text = review.over_budget(5.0)
    assert "$5.00" in text and "midnight UTC" in text and "Retry" in text


@pytest.mark.parametrize(
    ("error", "words"),
    [
        ("not_in_channel", "/invite @storyloop"),
        ("channel_not_found", "/invite @storyloop"),
        ("is_archived", "archived"),
        ("restricted_action", "another channel"),
    ],
)
def test_cant_post_explains_what_to_do(error: str, words: str) -> None:
    assert words in review.cant_post(error)


def test_after_approval_note_points_to_what_is_collected() -> None:
    queued = make_session(stage=Stage.VIDEO, status=Status.QUEUED, version=0)
    assert "isn't available" in review.after_approval(queued)
    done = make_session(stage=Stage.COMPLETE, status=Status.QUEUED, version=0)
    assert "complete" in review.after_approval(done)


def test_fixed_messages_are_plain_words() -> None:
    s = make_session(status=Status.REGENERATING)
    for text in (
        review.unknown_session(),
        review.no_answer(),
        review.gave_up(),
        review.busy(s),
        review.nothing_to_retry(s),
        review.not_ready(s),
        review.stale_stage(s),
    ):
        assert text and "Exception" not in text and "Traceback" not in text and "{" not in text
