"""The review state table (review.py docstring), row by row, and the stage registry."""

from __future__ import annotations

from typing import Any

import pytest

from bot.pipeline import review
from bot.pipeline.models import Session, Stage, Status
from bot.pipeline.stages import ORDER, REGISTRY, definition, next_stage

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


def approved(**changes: Any) -> Session:
    base = {
        "stage": Stage.REFERENCE_IMAGE,
        "status": Status.QUEUED,
        "approved_by": OWNER,
        "approved_version": 2,
    }
    return make_session(**(base | changes))


def approve(
    s: Session, user_id: str = OWNER, version: int | None = None, policy: str = "owner"
) -> str | None:
    return review.cannot_approve(
        s, user_id, s.version if version is None else version, policy=policy
    )


def regenerate(s: Session, version: int | None = None) -> str | None:
    return review.cannot_regenerate(s, s.version if version is None else version)


# --- awaiting_review ---------------------------------------------------------------------------


def test_awaiting_review_owner_may_approve_and_anyone_may_regenerate() -> None:
    s = make_session()
    assert approve(s) is None
    assert regenerate(s) is None


def test_only_the_owner_may_approve_by_default_and_is_named() -> None:
    message = approve(make_session(), user_id=OTHER)
    assert message is not None
    assert f"<@{OWNER}>" in message
    assert f"<@{OTHER}>" not in message


def test_policy_anyone_lets_another_user_approve() -> None:
    assert approve(make_session(), user_id=OTHER, policy="anyone") is None


def test_outdated_button_names_both_versions() -> None:
    s = make_session(version=3)
    for message in (approve(s, version=1), regenerate(s, version=1)):
        assert message is not None
        assert "v1" in message
        assert "v3" in message


def test_retry_while_awaiting_review_is_refused_as_nothing_to_do() -> None:
    assert "nothing to retry" in review.nothing_to_retry(make_session())


# --- generating / regenerating ----------------------------------------------------------------


def test_generating_refuses_approve_and_regenerate_as_not_ready() -> None:
    s = make_session(status=Status.GENERATING, version=0)
    assert "isn't ready" in (approve(s) or "")
    assert "isn't ready" in (regenerate(s) or "")
    assert "already working" in review.nothing_to_retry(s)


def test_regenerating_refuses_everything_as_busy() -> None:
    s = make_session(status=Status.REGENERATING)
    assert "being rewritten" in (approve(s) or "")
    assert "already rewriting" in (regenerate(s) or "")
    assert "already working" in review.nothing_to_retry(s)


def test_regenerating_refuses_a_click_on_an_older_version_as_busy() -> None:
    assert "already rewriting" in (regenerate(make_session(status=Status.REGENERATING), 1) or "")


# --- failed -----------------------------------------------------------------------------------


def test_failed_with_a_version_allows_approve_and_regenerate() -> None:
    s = make_session(status=Status.FAILED, version=2, failure="timeout", failed_op="regenerate")
    assert approve(s) is None
    assert regenerate(s) is None


@pytest.mark.parametrize("action", ["approve", "regenerate"])
def test_failed_before_any_version_refuses_approve_and_regenerate(action: str) -> None:
    s = make_session(status=Status.FAILED, version=0, failed_op="generate", failure="timeout")
    message = approve(s, version=0) if action == "approve" else regenerate(s, version=0)
    assert message is not None


# --- after approval ---------------------------------------------------------------------------


def test_after_approval_approve_is_refused_naming_version_and_approver() -> None:
    message = approve(approved())
    assert message is not None
    assert "already approved" in message
    assert "v2" in message
    assert f"<@{OWNER}>" in message


def test_after_approval_regenerate_and_retry_are_refused() -> None:
    s = approved()
    assert "already approved" in (regenerate(s) or "")
    assert "nothing to retry" in review.nothing_to_retry(s)


def test_after_approval_notice_names_the_version() -> None:
    assert "approved (v2)" in review.after_approval(approved())


# --- other refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "words"),
    [
        ("not_in_channel", "/invite @storyloop"),
        ("channel_not_found", "/invite @storyloop"),
        ("is_archived", "archived"),
        ("ratelimited", "another channel"),
    ],
)
def test_cant_post_explains_what_to_do(error: str, words: str) -> None:
    assert words in review.cant_post(error)


def test_fixed_messages_are_plain_words() -> None:
    for message in (review.unknown_session(), review.no_answer(), review.gave_up()):
        assert message
        assert "Error" not in message
        assert "<" not in message


# --- stages -----------------------------------------------------------------------------------


def test_story_is_followed_by_reference_images() -> None:
    assert next_stage(Stage.STORY) is Stage.REFERENCE_IMAGE


def test_stages_run_in_order_and_complete_is_terminal() -> None:
    assert ORDER == (
        Stage.STORY,
        Stage.REFERENCE_IMAGE,
        Stage.STORYBOARD,
        Stage.VIDEO,
        Stage.COMPLETE,
    )
    assert next_stage(Stage.VIDEO) is Stage.COMPLETE
    assert next_stage(Stage.COMPLETE) is Stage.COMPLETE


def test_only_the_story_stage_is_available() -> None:
    assert [d.stage for d in REGISTRY if d.available] == [Stage.STORY]
    story = definition(Stage.STORY)
    assert story is not None
    assert story.available
    assert definition(Stage.COMPLETE) is None
