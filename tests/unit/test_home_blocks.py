"""The App Home builder: groups, paging, limits, escaping, action ids and button values."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.pipeline.approvals import named
from bot.pipeline.models import Approval, ApprovalPolicy, Rule, Session, Stage, Status
from bot.slack.actions import HomeAction, HomePageValue
from bot.slack.home_blocks import (
    MAX_VIEW_BLOCKS,
    MINE_PER_PAGE,
    TEAM_PER_PAGE,
    Group,
    group_of,
    home_page,
    home_view,
    status_words,
    waits_for,
)
from bot.slack.story_blocks import block_text_length
from tests.emulators.slack_state import validate_view

NOW = 1_767_225_600.0


def make(
    sid: str = "s1",
    *,
    owner: str = "U0ALICE",
    status: Status = Status.AWAITING_REVIEW,
    stage: Stage = Stage.STORY,
    policy: ApprovalPolicy | None = None,
    prompt: str = "a lighthouse keeper",
    at: float = NOW,
    **extra: Any,
) -> Session:
    return Session(
        id=sid,
        team_id="T0TEAM",
        channel_id="C0PUBLIC",
        owner_id=owner,
        prompt=prompt,
        duration_s=30,
        stage=stage,
        status=status,
        version=extra.pop("version", 1),
        policy=policy or ApprovalPolicy(),
        created_at=at,
        updated_at=at,
        **extra,
    )


def texts(view: dict[str, Any]) -> str:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(view["blocks"])
    return "\n".join(found)


def buttons(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        e["action_id"]: e for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]
    }


# --- whose approval a session waits for ---------------------------------------------------------


def test_owner_rule_waits_for_the_creator_only() -> None:
    s = make()
    assert waits_for(s, "U0ALICE") and not waits_for(s, "U0BOB")


@pytest.mark.parametrize(
    "status", [s for s in Status if s not in (Status.AWAITING_REVIEW, Status.AWAITING_CONFIRMATION)]
)
def test_nothing_waits_unless_shown_for_review_or_confirmation(status: Status) -> None:
    assert not waits_for(make(status=status), "U0ALICE")


def test_named_rule_waits_for_the_named_not_for_group_members() -> None:
    s = make(policy=named(["U0BOB"], "S0EDITORS", "@editors"))
    assert waits_for(s, "U0BOB")
    assert not waits_for(s, "U0CAROL")  # maybe in @editors: unknown without asking Slack
    assert not waits_for(s, "U0ALICE")  # the creator isn't named


def test_quorum_waits_for_whoever_has_not_voted_on_this_version() -> None:
    vote = Approval(stage=Stage.STORY, version=2, user_id="U0BOB", at=NOW)
    old = Approval(stage=Stage.STORY, version=1, user_id="U0CAROL", at=NOW)
    s = make(policy=ApprovalPolicy(rule=Rule.QUORUM, needed=3), version=2, votes=(vote, old))
    assert not waits_for(s, "U0BOB")
    assert waits_for(s, "U0CAROL")  # her vote was for an older version
    assert waits_for(s, "U0ALICE")


def test_a_video_plan_waits_for_confirmation_votes_by_plan() -> None:
    vote = Approval(stage=Stage.VIDEO, version=3, user_id="U0BOB", at=NOW, act="confirm")
    s = make(
        stage=Stage.VIDEO,
        status=Status.AWAITING_CONFIRMATION,
        policy=ApprovalPolicy(rule=Rule.QUORUM, needed=2),
        plan=3,
        votes=(vote,),
        estimate_usd=1.2,
    )
    assert not waits_for(s, "U0BOB") and waits_for(s, "U0ALICE")
    assert "Video plan (≈ $1.20): waiting for confirmation" in status_words(s)


def test_groups() -> None:
    assert group_of(make(), "U0ALICE") is Group.WAITING
    assert group_of(make(), "U0BOB") is Group.IN_PROGRESS
    done = make(stage=Stage.COMPLETE, status=Status.DONE)
    assert group_of(done, "U0ALICE") is Group.DONE
    assert status_words(done) == "🎉 Complete"
    assert group_of(make(status=Status.FAILED), "U0ALICE") is Group.IN_PROGRESS


# --- the view ------------------------------------------------------------------------------


def test_groups_are_ordered_waiting_in_progress_done_newest_first() -> None:
    mine = [
        make("done1", stage=Stage.COMPLETE, status=Status.DONE, at=NOW + 5),
        make("prog1", status=Status.GENERATING, at=NOW + 4),
        make("wait1", at=NOW + 3),
        make("prog2", status=Status.FAILED, at=NOW + 2),
        make("wait2", at=NOW + 1),
    ]
    page = home_page("U0ALICE", mine, [], 0, 0)
    assert [s.id for _, s in page.mine] == ["wait1", "wait2", "prog1", "prog2", "done1"]
    view = home_view(page, {}, now=NOW)
    ids = [b["block_id"] for b in view["blocks"]]
    assert ids.index("group_waiting") < ids.index("mine_wait1") < ids.index("group_in_progress")
    assert ids.index("group_in_progress") < ids.index("group_done") < ids.index("mine_done1")
    assert "Waiting for your approval* (2)" in texts(view)


def test_new_story_button_and_no_paging_on_one_page() -> None:
    view = home_view(home_page("U0ALICE", [make()], [make()], 1, 0), {}, now=NOW)
    assert view["type"] == "home"
    assert list(buttons(view)) == [HomeAction.NEW_STORY.value]
    assert "Page" not in texts(view)


def test_paging_buttons_carry_validated_pages() -> None:
    mine = [make(f"m{n}", at=NOW - n) for n in range(25)]
    team = [make(f"t{n}", owner="U0BOB", at=NOW - n) for n in range(TEAM_PER_PAGE)]
    first = home_view(home_page("U0ALICE", mine, team, 35, 0), {}, now=NOW)
    assert list(buttons(first)) == [HomeAction.NEW_STORY, HomeAction.NEXT]
    assert HomePageValue.parse(buttons(first)[HomeAction.NEXT]["value"]) == HomePageValue(page=1)
    assert "Page 1 of 4" in texts(first)
    middle_page = home_page("U0ALICE", mine, team, 35, 1)
    assert [s.id for _, s in middle_page.mine] == [f"m{n}" for n in range(10, 20)]
    middle = buttons(home_view(middle_page, {}, now=NOW))
    assert list(middle) == [HomeAction.NEW_STORY, HomeAction.PREVIOUS, HomeAction.NEXT]
    assert json.loads(middle[HomeAction.PREVIOUS]["value"]) == {"v": 1, "page": 0}
    last = home_page("U0ALICE", mine, [], 35, 99)  # past the end: the last page
    assert last.page == 3 and last.mine == []
    last_view = home_view(last, {}, now=NOW)
    assert list(buttons(last_view)) == [HomeAction.NEW_STORY, HomeAction.PREVIOUS]
    assert "Nothing on this page" in texts(last_view)


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "3",
        '{"page":1}',
        '{"v":1,"page":-1}',
        '{"v":1,"page":51}',
        '{"v":1,"page":true}',
        '{"v":1,"page":"2"}',
        '{"v":2,"page":1}',
        '{"v":1,"page":1,"x":0}',
        '{"v":1,"page":1' + " " * 300 + "}",
    ],
)
def test_forged_page_values_are_refused(raw: str | None) -> None:
    assert HomePageValue.parse(raw) is None


def test_worst_case_fits_slack_limits() -> None:
    long = "x" * 2000
    mine = [make(f"m{n:02d}", prompt=long, at=NOW - n) for n in range(50)]
    team = [make(f"t{n:02d}", owner="U0BOB", prompt=long) for n in range(TEAM_PER_PAGE)]
    links = {
        s.id: f"https://acme.slack.com/archives/C0PUBLIC/p{n:016d}"
        for n, s in enumerate(mine + team)
    }
    view = home_view(home_page("U0ALICE", mine, team, 100, 1), links, now=NOW)
    validate_view(view)  # the emulator's Block Kit rules, 100 blocks and the text cap included
    assert len(view["blocks"]) <= MAX_VIEW_BLOCKS
    assert len(view["blocks"]) <= 8 + 3 + MINE_PER_PAGE + TEAM_PER_PAGE + 4
    assert block_text_length(view["blocks"]) < 11_000


def test_prompts_are_clipped_and_escaped_and_links_checked() -> None:
    evil = "<!channel> ping & <@U0BOB> " + "very long " * 30
    s = make(prompt=evil, thread_ts="1.1")
    view = home_view(home_page("U0ALICE", [s], [], 0, 0), {"s1": "https://x.y/a|b>c"}, now=NOW)
    text = texts(view)
    assert "<!channel>" not in text and "&lt;!channel&gt; ping &amp; &lt;@U0BOB&gt;" in text
    assert "…" in text and "very long " * 30 not in text
    assert "https://x.y" not in text  # an unsafe link is left out, the prompt stays
    ok = home_view(
        home_page("U0ALICE", [s], [], 0, 0),
        {"s1": "https://acme.slack.com/archives/C1/p1"},
        now=NOW,
    )
    assert "*<https://acme.slack.com/archives/C1/p1|&lt;!channel&gt; ping" in texts(ok)


def test_each_line_says_stage_owner_and_when() -> None:
    s = make(owner="U0BOB", stage=Stage.STORYBOARD, status=Status.GENERATING)
    line = texts(home_view(home_page("U0ALICE", [], [s], 1, 0), {}, now=NOW))
    assert "Storyboard: making the first version" in line
    assert "<@U0BOB>" in line
    assert f"<!date^{int(NOW)}^" in line and "2026-01-01 00:00 UTC" in line


def test_empty_home() -> None:
    view = home_view(home_page("U0ALICE", [], [], 0, 0), {}, now=NOW)
    assert "show up here" in texts(view) and "No stories in this workspace yet" in texts(view)
    validate_view(view)


@pytest.mark.parametrize("status", list(Status))
def test_every_status_has_words(status: Status) -> None:
    for stage in Stage:
        assert status_words(make(stage=stage, status=status))
