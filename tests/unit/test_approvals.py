"""The approval rules: who may approve, how a quorum counts, how the workspace default parses."""

from __future__ import annotations

from typing import Any

import pytest

from bot.pipeline import review
from bot.pipeline.approvals import (
    ApprovalPolicy,
    Rule,
    approvers_of,
    current_votes,
    may_approve,
    named,
    needs_group_lookup,
    parse_policy,
)
from bot.pipeline.models import Approval, Session, Stage, Status
from bot.pipeline.transitions import Act, Advance, Event, Generate, Refuse, Vote, decide

OWNER, LI, SAM, EVE = "U0OWNER", "U0LI", "U0SAM", "U0EVE"


def session(**changes: Any) -> Session:
    fields: dict[str, Any] = {
        "id": "s1",
        "team_id": "T1",
        "channel_id": "C1",
        "owner_id": OWNER,
        "prompt": "a launch",
        "duration_s": 30,
        "status": Status.AWAITING_REVIEW,
        "version": 2,
        "created_at": 1.0,
        "updated_at": 2.0,
    }
    fields.update(changes)
    return Session(**fields)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("owner", ApprovalPolicy()),
        ("anyone", ApprovalPolicy(rule=Rule.ANYONE)),
        (" Quorum:3 ", ApprovalPolicy(rule=Rule.QUORUM, needed=3)),
        ("named:U0LI,U0SAM", ApprovalPolicy(rule=Rule.NAMED, users=(LI, SAM))),
        ("group:S0EDITORS", ApprovalPolicy(rule=Rule.NAMED, group="S0EDITORS")),
        ("named:U0LI,S0EDITORS", ApprovalPolicy(rule=Rule.NAMED, users=(LI,), group="S0EDITORS")),
    ],
)
def test_the_workspace_default_parses(text: str, expected: ApprovalPolicy) -> None:
    assert parse_policy(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "owners",
        "quorum",
        "quorum:1",
        "quorum:11",
        "quorum:x",
        "named:",
        "named:bob",
        "named:S1AA,S2BB",
        "anyone:3",
        "group:U0LI,<!channel>",
    ],
)
def test_a_malformed_default_is_refused(text: str) -> None:
    assert parse_policy(text) is None


def test_each_rule_says_who_may_approve() -> None:
    assert may_approve(session(), OWNER) and not may_approve(session(), LI)
    anyone = session(policy=ApprovalPolicy(rule=Rule.ANYONE))
    assert may_approve(anyone, EVE)
    quorum = session(policy=ApprovalPolicy(rule=Rule.QUORUM, needed=2))
    assert may_approve(quorum, EVE)
    listed = session(policy=named([LI], "S0EDITORS", "@editors"))
    assert may_approve(listed, LI)
    assert not may_approve(listed, OWNER), "named approvers replace the creator"
    assert not needs_group_lookup(listed, LI) and needs_group_lookup(listed, SAM)
    assert not may_approve(listed, SAM)
    assert may_approve(listed, SAM, members=frozenset({SAM}))


def test_named_drops_what_is_not_an_id() -> None:
    p = named(["U0LI", "U0LI", "<!channel>", "bob"], "not-a-group", "@x")
    assert p.users == (LI,) and p.group is None and p.group_handle is None


def test_refusals_name_who_can() -> None:
    text = review.only_approvers(session(policy=named([LI, SAM], "S0ED", "@editors")))
    assert f"<@{LI}>" in text and f"<@{SAM}>" in text and "@editors" in text
    assert "<!subteam" not in text, "the refusal must not ping the group"
    assert f"<@{OWNER}>" in review.only_approvers(session())


def _approve(s: Session, user: str, version: int = 2) -> object:
    e = Event(Act.APPROVE, user, stage=Stage.STORY, version=version)
    return decide(s, e, may_approve=may_approve(s, user))


def test_a_quorum_counts_each_person_once_and_advances_on_the_last() -> None:
    s = session(policy=ApprovalPolicy(rule=Rule.QUORUM, needed=3))
    assert _approve(s, LI) == Vote(Stage.STORY, 2, "approve")
    s = s.model_copy(update={"votes": (Approval(stage=Stage.STORY, version=2, user_id=LI, at=3),)})
    again = _approve(s, LI)
    assert isinstance(again, Refuse) and "already" in again.text and "1 more" not in again.text
    assert "2 more" in again.text
    assert _approve(s, SAM) == Vote(Stage.STORY, 2, "approve")
    s = s.model_copy(
        update={"votes": (*s.votes, Approval(stage=Stage.STORY, version=2, user_id=SAM, at=4))}
    )
    assert isinstance(_approve(s, EVE), Advance)


def test_votes_for_an_older_version_do_not_count() -> None:
    old = Approval(stage=Stage.STORY, version=1, user_id=LI, at=3)
    s = session(policy=ApprovalPolicy(rule=Rule.QUORUM, needed=2), votes=(old,))
    assert current_votes(s, Stage.STORY, 2, act="approve") == ()
    assert _approve(s, LI) == Vote(Stage.STORY, 2, "approve")


def test_the_video_spend_needs_the_same_quorum() -> None:
    s = session(
        stage=Stage.VIDEO,
        status=Status.AWAITING_CONFIRMATION,
        version=0,
        plan=1,
        policy=ApprovalPolicy(rule=Rule.QUORUM, needed=2),
    )
    confirm = Event(Act.CONFIRM, LI, stage=Stage.VIDEO, version=1)
    assert decide(s, confirm, may_approve=True) == Vote(Stage.VIDEO, 1, "confirm")
    vote = Approval(stage=Stage.VIDEO, version=1, user_id=LI, at=3, act="confirm")
    s = s.model_copy(update={"votes": (vote,)})
    assert isinstance(decide(s, confirm, may_approve=True), Refuse)
    other = Event(Act.CONFIRM, SAM, stage=Stage.VIDEO, version=1)
    assert isinstance(decide(s, other, may_approve=True), Generate)


def test_named_approvers_are_refused_to_others_for_the_video_spend_too() -> None:
    s = session(
        stage=Stage.VIDEO,
        status=Status.AWAITING_CONFIRMATION,
        version=0,
        plan=1,
        policy=named([LI], None),
    )
    confirm = Event(Act.CONFIRM, OWNER, stage=Stage.VIDEO, version=1)
    refused = decide(s, confirm, may_approve=may_approve(s, OWNER))
    assert isinstance(refused, Refuse) and f"<@{LI}>" in refused.text


def test_approvers_of_lists_everyone_whose_approval_counted() -> None:
    a = Approval(stage=Stage.STORY, version=2, user_id=SAM, at=5, co_approvers=(LI,))
    s = session(stage=Stage.REFERENCE_IMAGE, approvals=(a,))
    assert approvers_of(s, Stage.STORY) == (LI, SAM)
    assert approvers_of(s, Stage.STORYBOARD) == ()
