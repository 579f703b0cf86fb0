"""`/story delete`: what a person can name a session by, and who may delete it."""

from __future__ import annotations

import pytest

from bot.pipeline.deletion import ById, ByThread, Unreadable, may_delete, parse_delete
from bot.pipeline.models import ApprovalPolicy, Rule, Session

SID = "0123456789abcdef0123"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("delete", Unreadable()),
        ("DELETE", Unreadable()),
        (f"delete {SID}", ById(SID)),
        # The card's own link: the thread's root.
        (
            "delete https://acme.slack.com/archives/C0TALES/p1767225600000100",
            ByThread("C0TALES", "1767225600.000100"),
        ),
        # Slack may send a link wrapped in <…>, with a label.
        (
            "delete <https://acme.slack.com/archives/C0TALES/p1767225600000100|link>",
            ByThread("C0TALES", "1767225600.000100"),
        ),
        # A reply's link (the story message, a mention session's card) names its thread.
        (
            "delete https://acme.slack.com/archives/C0TALES/p1767225700000300"
            "?thread_ts=1767225600.000100&cid=C0TALES",
            ByThread("C0TALES", "1767225600.000100"),
        ),
        ("delete https://example.com/nothing", Unreadable()),
        ("delete 42", Unreadable()),
        # Prompts that happen to start with the word are stories, not deletes.
        ("delete everything", None),
        ("delete the old logo from the ad", None),
        ("deleted scenes of a heist", None),
        ("30s delete", None),
        ("", None),
    ],
)
def test_parse_delete(text: str, expected: object) -> None:
    assert parse_delete(text) == expected


def _session(policy: ApprovalPolicy | None = None) -> Session:
    return Session(
        id=SID,
        team_id="T1",
        channel_id="C1",
        owner_id="U0OWNER",
        prompt="p",
        duration_s=30,
        policy=policy or ApprovalPolicy(),
        created_at=1.0,
        updated_at=1.0,
    )


def test_the_creator_may_delete() -> None:
    assert may_delete(_session(), "U0OWNER", is_admin=False)


def test_an_admin_may_delete() -> None:
    assert may_delete(_session(), "U0ADMIN", is_admin=True)


def test_approvers_and_others_may_not() -> None:
    named = _session(ApprovalPolicy(rule=Rule.NAMED, users=("U0BOB",)))
    assert not may_delete(named, "U0BOB", is_admin=False)
    assert not may_delete(_session(), "U0CAROL", is_admin=False)
