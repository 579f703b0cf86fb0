"""Versions: the restore decision's table, the rows and the copy a restore commits, the Versions
modal within Slack's limits, and the handler's parsing of clicks inside the modal."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from bot.jobs.restore import restore_steps
from bot.pipeline.artifacts import (
    ClipResult,
    ImageArtifact,
    ImageKind,
    ImageOutcome,
    ImageSetVersion,
    ImageSpec,
    VideoVersion,
)
from bot.pipeline.diffs import Run, story_diff
from bot.pipeline.models import (
    Approval,
    Scene,
    Session,
    Stage,
    Status,
    Story,
    StoryVersion,
    Turn,
    TurnRole,
    Usage,
)
from bot.pipeline.transitions import Refuse
from bot.pipeline.triggers import Approve, Redo, Regenerate, Restore
from bot.pipeline.versions import (
    RestoreRequest,
    RestoreTo,
    VersionRow,
    changes_of,
    decide_restore,
    restored_copy,
    rows,
)
from bot.slack.actions import (
    COMPARE_BLOCK,
    MAX_BUTTON_VALUE_CHARS,
    RestoreButtonValue,
    VersionsAction,
    VersionsMetadata,
)
from bot.slack.mrkdwn import escape
from bot.slack.version_blocks import (
    MAX_VIEW_BLOCKS,
    PAGE_SIZE,
    VIEW_TEXT_BUDGET,
    compare_view,
    notice_view,
    render_runs,
    restored_notice,
    versions_view,
)
from handlers.versions import compare_choice, parse_view_click, restore_trigger
from storage.repository import Writes
from tests.unit.fakes import (
    CountingSpeech,
    CountingVideo,
    CrashAt,
    Loop,
    SimulatedCrash,
    build_loop,
)
from tests.unit.test_review_loop import APPROVE as LOOP_APPROVE
from tests.unit.test_review_loop import CHANNEL, SID, TEAM, click, start, to_images
from tests.unit.test_review_loop import OWNER as LOOP_OWNER
from tests.unit.test_review_loop import REGENERATE as LOOP_REGENERATE
from tests.unit.test_review_loop import session as loop_session

OWNER = "U0OWNER"
PRIOR = {
    Stage.STORY: (),
    Stage.REFERENCE_IMAGE: (Stage.STORY,),
    Stage.STORYBOARD: (Stage.STORY, Stage.REFERENCE_IMAGE),
    Stage.VIDEO: (Stage.STORY, Stage.REFERENCE_IMAGE, Stage.STORYBOARD),
    Stage.COMPLETE: (Stage.STORY, Stage.REFERENCE_IMAGE, Stage.STORYBOARD, Stage.VIDEO),
}


def session(
    stage: Stage = Stage.STORY, status: Status = Status.AWAITING_REVIEW, version: int = 3, **kw: Any
) -> Session:
    prior = tuple(Approval(stage=d, version=1, user_id=OWNER, at=1.0) for d in PRIOR[stage])
    approvals = kw.pop("approvals", prior)
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
        **kw,
    )


def request(
    stage: Stage = Stage.STORY, version: int = 1, current: int = 3, **kw: Any
) -> RestoreRequest:
    fields: dict[str, Any] = {
        "team_id": "T1",
        "channel_id": "C1",
        "user_id": "U0BOB",
        "session_id": "s1",
        "modal_session": "s1",
        "stage": stage,
        "version": version,
        "current": current,
    }
    return RestoreRequest(**(fields | kw))


# --- the decision table ------------------------------------------------------------------------

# (name, session, request, found, expected: RestoreTo or words the refusal contains)
CASES: list[tuple[str, Session | None, RestoreRequest, bool, RestoreTo | str]] = [
    ("restores v1 as v4", session(), request(), True, RestoreTo(Stage.STORY, 1, 4, 3)),
    ("restores v2 as v4", session(), request(version=2), True, RestoreTo(Stage.STORY, 2, 4, 3)),
    (
        "after a failed newer attempt",
        session(status=Status.FAILED),
        request(),
        True,
        RestoreTo(Stage.STORY, 1, 4, 3),
    ),
    (
        "images",
        session(Stage.REFERENCE_IMAGE),
        request(Stage.REFERENCE_IMAGE),
        True,
        RestoreTo(Stage.REFERENCE_IMAGE, 1, 4, 3),
    ),
    (
        "storyboard",
        session(Stage.STORYBOARD, version=2),
        request(Stage.STORYBOARD, current=2),
        True,
        RestoreTo(Stage.STORYBOARD, 1, 3, 2),
    ),
    (
        "video under review",
        session(Stage.VIDEO, version=2, plan=3),
        request(Stage.VIDEO, current=2),
        True,
        RestoreTo(Stage.VIDEO, 1, 3, 2),
    ),
    (
        "video after a cancelled plan",
        session(Stage.VIDEO, Status.CANCELLED, version=2, plan=3),
        request(Stage.VIDEO, current=2),
        True,
        RestoreTo(Stage.VIDEO, 1, 3, 2),
    ),
    # Hostile: another session's button, another workspace's session, forged numbers.
    ("another session", session(), request(session_id="s2"), True, "doesn't belong"),
    ("no session here", None, request(), False, "can't find that story session"),
    ("another workspace", session(), request(team_id="T2"), True, "can't find"),
    ("another channel", session(), request(channel_id="C2"), True, "can't find"),
    ("version 0", session(), request(version=0), False, "no version numbered 0"),
    ("version -1", session(), request(version=-1), False, "no version numbered -1"),
    ("version 99", session(), request(version=99), False, "no v99 of the story"),
    ("not stored", session(), request(version=2), False, "no v2 of the story"),
    ("the current one", session(), request(version=3), True, "already the current version"),
    # Races: the running job wins; a list drawn before a change is out of date.
    (
        "generating",
        session(status=Status.GENERATING, version=0),
        request(current=0),
        False,
        "right now",
    ),
    ("regenerating", session(status=Status.REGENERATING), request(), True, "right now"),
    (
        "starting",
        session(status=Status.STARTING, version=0),
        request(current=0),
        False,
        "right now",
    ),
    ("moved on", session(version=4), request(current=3), True, "it was v3, it's now v4"),
    # Other stages and states.
    (
        "stage approved",
        session(Stage.REFERENCE_IMAGE),
        request(Stage.STORY),
        True,
        "already approved",
    ),
    ("stage not reached", session(), request(Stage.STORYBOARD), True, "isn't at"),
    (
        "plan awaiting confirmation",
        session(Stage.VIDEO, Status.AWAITING_CONFIRMATION, version=2, plan=3),
        request(Stage.VIDEO, current=2),
        True,
        "confirm or cancel",
    ),
    (
        "complete",
        session(Stage.COMPLETE, Status.DONE, version=0),
        request(Stage.COMPLETE, current=0),
        True,
        "complete",
    ),
    ("unpostable", session(status=Status.UNPOSTABLE), request(), True, "can't find"),
    ("queued", session(status=Status.QUEUED), request(), True, "isn't available"),
    (
        "nothing yet",
        session(status=Status.FAILED, version=0),
        request(current=0),
        False,
        "isn't ready",
    ),
]


@pytest.mark.parametrize(
    ("s", "r", "found", "expected"),
    [pytest.param(s, r, f, e, id=name) for name, s, r, f, e in CASES],
)
def test_restore_decision_table(
    s: Session | None, r: RestoreRequest, found: bool, expected: RestoreTo | str
) -> None:
    d = decide_restore(s, r, found=found)
    if isinstance(expected, RestoreTo):
        assert d == expected
    else:
        assert isinstance(d, Refuse), d
        assert expected in d.text, d.text
        assert "<!" not in d.text  # our words never ping anyone


def test_every_status_of_every_stage_has_one_answer() -> None:
    for stage in Stage:
        for status in Status:
            for version in (0, 1, 3):
                s = session(stage, status, version, plan=1)
                d = decide_restore(s, request(stage, version=1, current=version), found=version > 1)
                restorable = (
                    stage is not Stage.COMPLETE
                    and status in (Status.AWAITING_REVIEW, Status.FAILED, Status.CANCELLED)
                    and version > 1
                )
                assert isinstance(d, RestoreTo) == restorable, (stage, status, version, d)


# --- rows and the restored copy -------------------------------------------------------------------


def story_version(n: int, *, feedback: tuple[str, ...] = (), summary: str = "") -> StoryVersion:
    story = Story(
        title=f"Bo {n}",
        logline="l",
        narrative=f"narrative {n}",
        scenes=(Scene(number=1, duration_s=8, visuals="v", voiceover="o"),),
    )
    return StoryVersion(
        number=n,
        story=story,
        usage=Usage(prompt_tokens=5, completion_tokens=7),
        feedback_ts=feedback,
        summary_of_changes=summary,
        created_at=1767225600.0 + n,
    )


def test_rows_say_who_asked_and_what_changed_newest_first() -> None:
    history = [
        Turn(role=TurnRole.USER, ts="1.1", user_id="U0BOB", text="funnier"),
        Turn(role=TurnRole.ASSISTANT, ts="1.1", text="ok"),
        Turn(role=TurnRole.USER, ts="1.2", user_id="U0CAROL", text="a dog"),
        Turn(role=TurnRole.USER, ts="1.3", user_id="U0BOB", text="and a cat"),
    ]
    restored = restored_copy(story_version(1), number=4, by="U0DAN", at=9.0)
    found = rows(
        [
            story_version(1),
            story_version(2, feedback=("1.1",), summary="Funnier."),
            story_version(3, feedback=("1.2", "1.3", "9.9")),
            restored,
        ],
        history,
    )
    assert [r.number for r in found] == [4, 3, 2, 1]
    assert found[1].asked_by == ("U0CAROL", "U0BOB")  # each author once; unknown ts skipped
    assert found[2].asked_by == ("U0BOB",) and found[2].changes == "Funnier."
    assert found[3].changes == "First version."
    assert (found[0].restored_from, found[0].restored_by) == (1, "U0DAN")
    assert "Restored from v1" in found[0].changes


def test_restored_copy_is_the_content_renumbered_with_no_cost_and_no_usage() -> None:
    spec = ImageSpec(index=1, name="Hero", kind=ImageKind.CHARACTER, role="r", prompt="p")
    made = ImageArtifact(
        spec=spec, outcome=ImageOutcome.MADE, file_id="F1", cost_usd=0.04, made_in=1
    )
    images = ImageSetVersion(
        number=2,
        images=(made,),
        cost_usd=0.04,
        redo_of=1,
        feedback_ts=("1.1",),
        created_at=1.0,
        summary_of_changes="Brighter.",
        usage=Usage(prompt_tokens=3),
    )
    copy = restored_copy(images, number=5, by="U0BOB", at=7.0)
    assert isinstance(copy, ImageSetVersion)
    assert copy.images == images.images  # the same files, nothing made again
    assert (copy.number, copy.created_at, copy.cost_usd, copy.redo_of) == (5, 7.0, 0.0, None)
    assert (copy.feedback_ts, copy.usage, copy.summary_of_changes) == ((), Usage(), "")
    assert (copy.restored_from, copy.restored_by) == (2, "U0BOB")
    video = VideoVersion(
        number=1,
        plan=2,
        file_id="V1",
        cost_usd=1.5,
        created_at=1.0,
        clips=(ClipResult(index=1, scene=1, file_id="C1", seconds=8, cost_usd=1.5, made_in=1),),
    )
    again = restored_copy(video, number=3, by="U0BOB", at=2.0)
    assert isinstance(again, VideoVersion)
    assert (again.plan, again.file_id, again.clips, again.cost_usd) == (2, "V1", video.clips, 0.0)
    text = restored_copy(story_version(1), number=2, by="U0BOB", at=2.0)
    assert isinstance(text, StoryVersion) and text.story == story_version(1).story
    assert text.usage == Usage()


def test_restore_steps_show_it_like_a_new_version() -> None:
    assert restore_steps(RestoreTo(Stage.STORY, 1, 4, 3), "U0BOB") == [
        "restored:story:4:1:U0BOB",
        "story",
        "card",
    ]
    assert restore_steps(RestoreTo(Stage.REFERENCE_IMAGE, 1, 3, 2), "U0BOB") == [
        "restored:reference_image:3:1:U0BOB",
        "review:reference_image:3",
        "review:reference_image:2",
        "card",
    ]


def test_changes_of_a_video_redo() -> None:
    video = VideoVersion(number=2, plan=3, clips=(), redo_of=2, created_at=1.0)
    assert changes_of(video) == "Redo of scene 2."


# --- the modal within Slack's limits --------------------------------------------------------------


def all_texts(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = []
        for key, value in node.items():
            out += [value] if key == "text" and isinstance(value, str) else all_texts(value)
        return out
    if isinstance(node, list):
        return [t for item in node for t in all_texts(item)]
    return []


def assert_view_within_limits(view: dict[str, Any]) -> None:
    assert view["type"] == "modal" and len(view["title"]["text"]) <= 24
    assert len(view.get("private_metadata", "")) <= 3000
    blocks = view["blocks"]
    assert 0 < len(blocks) <= MAX_VIEW_BLOCKS
    ids = [b["block_id"] for b in blocks if "block_id" in b]
    assert len(ids) == len(set(ids))
    for block in blocks:
        if block["type"] == "section":
            assert 0 < len(block["text"]["text"]) <= 3000
        if block["type"] == "actions":
            assert 0 < len(block["elements"]) <= 25
            for e in block["elements"]:
                if e["type"] == "static_select":
                    assert len(e["options"]) <= 100
                    assert e["initial_option"] in e["options"]
                    assert all(len(o["value"]) <= 150 for o in e["options"])
        for e in [block.get("accessory"), *(block.get("elements") or [])]:
            if isinstance(e, dict) and e.get("type") == "button":
                assert len(e["text"]["text"]) <= 75 and len(e.get("value", "")) <= 2000
    assert sum(len(t) for t in all_texts(blocks)) <= VIEW_TEXT_BUDGET


def row(n: int, **kw: Any) -> VersionRow:
    fields: dict[str, Any] = {
        "number": n,
        "created_at": 1767225600.0,
        "asked_by": (),
        "changes": "x",
    }
    return VersionRow(**(fields | kw))


def test_versions_view_lists_marks_and_binds_restore_buttons() -> None:
    s = session(version=3, approvals=())
    view = versions_view(s, Stage.STORY, [row(1), row(2, asked_by=("U0BOB",)), row(3)])
    assert_view_within_limits(view)
    meta = VersionsMetadata.parse(view["private_metadata"])
    assert meta == VersionsMetadata(session="s1", stage=Stage.STORY, current=3, page=0)
    sections = {
        b["block_id"]: b for b in view["blocks"] if re.fullmatch(r"version_\d+", b["block_id"])
    }
    assert list(sections) == ["version_3", "version_2", "version_1"]
    assert "*v3* · current" in sections["version_3"]["text"]["text"]
    assert "accessory" not in sections["version_3"]  # the current one can't be restored
    assert "asked by <@U0BOB>" in sections["version_2"]["text"]["text"]
    assert re.search(
        r"<!date\^1767225600\^\{date_short_pretty\} \{time\}\|2026-01-01 00:00 UTC>",
        sections["version_1"]["text"]["text"],
    )
    button = sections["version_1"]["accessory"]
    assert button["action_id"] == VersionsAction.RESTORE
    assert RestoreButtonValue.parse(button["value"]) == RestoreButtonValue(
        session="s1", stage=Stage.STORY, version=1, current=3
    )
    compare = next(b for b in view["blocks"] if b["block_id"] == COMPARE_BLOCK)
    older, newer, go = compare["elements"]
    assert (older["initial_option"]["value"], newer["initial_option"]["value"]) == ("2", "3")
    assert go["action_id"] == VersionsAction.COMPARE


def test_an_approved_stage_lists_without_restore() -> None:
    s = session(Stage.REFERENCE_IMAGE, version=2)
    s = s.model_copy(
        update={"approvals": (Approval(stage=Stage.STORY, version=2, user_id=OWNER, at=1.0),)}
    )
    view = versions_view(s, Stage.STORY, [row(1), row(2), row(3)])
    text = "\n".join(all_texts(view["blocks"]))
    assert "*v2* · current · ✅ approved" in text and "no longer restored" in text
    assert not [b for b in view["blocks"] if "accessory" in b]


def test_many_long_versions_are_paged_and_stay_within_limits() -> None:
    long = "&<>*~ " * 400  # far past what a row shows, and every character Slack parses
    many = [
        row(n, asked_by=tuple(f"U0{k:04d}" for k in range(12)), changes=long) for n in range(1, 58)
    ]
    s = session(version=57)
    first = versions_view(s, Stage.STORY, many)
    assert_view_within_limits(first)
    shown = [b["block_id"] for b in first["blocks"] if re.fullmatch(r"version_\d+", b["block_id"])]
    assert len(shown) == PAGE_SIZE and shown[0] == "version_57"
    text = "\n".join(all_texts(first["blocks"]))
    assert "Page 1 of 6" in text and "and 7 more" in text and "<script" not in text
    assert "&amp;&lt;&gt;" in text
    last = versions_view(s, Stage.STORY, many, page=99)  # a forged page: the last one
    assert_view_within_limits(last)
    assert VersionsMetadata.parse(last["private_metadata"]).page == 5  # type: ignore[union-attr]
    paging = next(b for b in last["blocks"] if b["block_id"] == "versions_paging")
    assert [(e["action_id"], e["value"]) for e in paging["elements"]] == [("versions_newer", "4")]


def test_compare_view_clips_a_huge_diff_and_says_so() -> None:
    words = " ".join(f"word{i}" for i in range(3000))
    a = story_version(1)
    b = story_version(2)
    big_a = a.model_copy(update={"story": a.story.model_copy(update={"narrative": words})})
    big_b = b.model_copy(
        update={"story": b.story.model_copy(update={"narrative": words.replace("0 ", "0 new ")})}
    )
    scenes = tuple(
        Scene(number=k, duration_s=2, visuals=f"scene {k} " + "x " * 200, voiceover="o")
        for k in range(1, 60)
    )
    big_b = big_b.model_copy(update={"story": big_b.story.model_copy(update={"scenes": scenes})})
    view = compare_view(session(version=2), Stage.STORY, story_diff(big_a, big_b))
    assert_view_within_limits(view)
    text = "\n".join(all_texts(view["blocks"]))
    assert "v1 → v2" in text and "longer than Slack shows" in text


def test_compare_view_of_a_small_diff_shows_everything() -> None:
    view = compare_view(
        session(version=2), Stage.STORY, story_diff(story_version(1), story_version(2))
    )
    assert_view_within_limits(view)
    text = "\n".join(all_texts(view["blocks"]))
    assert "*Title* · changed\nBo ~1~ *2*" in text
    assert "longer than Slack" not in text and "Unchanged:" in text


def test_runs_render_readably_and_safely() -> None:
    runs = (
        Run("same", "Hi <!channel> "),
        Run("removed", "*bold* claim\n\nnext "),
        Run("added", "~new~ & fair"),
    )
    out = render_runs(runs)
    star, tilde = "\N{ASTERISK OPERATOR}", "\N{TILDE OPERATOR}"
    assert out == (
        f"Hi &lt;!channel&gt; ~{star}bold{star} claim~\n\n~next~ *{tilde}new{tilde} &amp; fair*"
    )
    assert "<!" not in out


def test_notice_views_and_the_restored_notice() -> None:
    meta = VersionsMetadata(session="s1", stage=Stage.VIDEO, current=2)
    with_way_back = notice_view(meta, Stage.VIDEO, "Restoring v1.")
    assert_view_within_limits(with_way_back)
    assert with_way_back["title"]["text"] == "Video versions"
    bare = notice_view(None, None, escape("<nope>"))
    assert_view_within_limits(bare)
    assert bare["private_metadata"] == ""
    msg = restored_notice(Stage.REFERENCE_IMAGE, "U0BOB", 1, 3)
    assert msg.text == "↩️ <@U0BOB> restored v1 as v3"
    assert "Reference images v3 is a copy of v1" in json.dumps(msg.blocks)


# --- parsing clicks inside the modal --------------------------------------------------------------


def view_click(value: object, metadata: str, state: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": {"id": "T1"},
        "user": {"id": "U0BOB", "team_id": "T1"},
        "container": {"type": "view", "view_id": "V1"},
        "view": {"id": "V1", "private_metadata": metadata, "state": {"values": state or {}}},
        "actions": [{"action_id": "version_restore", "value": value, "action_ts": "1.5"}],
    }


def test_a_restore_click_becomes_a_trigger_bound_to_the_modal() -> None:
    meta = VersionsMetadata(session="s1", stage=Stage.STORY, current=3).encode()
    value = RestoreButtonValue(session="s2", stage=Stage.STORY, version=1, current=3)
    click = parse_view_click(view_click(value.encode(), meta))
    assert click is not None and click.meta is not None
    trigger = restore_trigger(click, value, session())
    assert (trigger.session_id, trigger.modal_session, trigger.channel_id) == ("s2", "s1", "C1")
    assert trigger.job_id == "restore:T1:s2:U0BOB:1.5"
    assert (trigger.version, trigger.current, trigger.message_ts) == (1, 3, "V1")


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "abc",
        json.dumps({"v": 3, "session": "s1", "stage": "story", "version": "abc", "current": 3}),
        json.dumps({"v": 3, "session": "s1", "stage": "story", "version": True, "current": 3}),
        json.dumps({"v": 3, "session": "s 1", "stage": "story", "version": 1, "current": 3}),
        json.dumps({"v": 2, "session": "s1", "stage": "story", "version": 1}),
        json.dumps({"session": "s1", "stage": "story", "version": 1, "current": 3}),
        json.dumps({"v": 3, "session": "s1", "stage": "story", "version": 1, "current": 3, "x": 1}),
        "x" * (MAX_BUTTON_VALUE_CHARS + 1),
    ],
)
def test_forged_restore_values_do_not_parse(raw: object) -> None:
    assert RestoreButtonValue.parse(raw) is None


def test_forged_numbers_that_parse_reach_the_decision() -> None:
    for n in (0, -1, 99):
        raw = RestoreButtonValue(session="s1", stage=Stage.STORY, version=n, current=3).encode()
        assert RestoreButtonValue.parse(raw) is not None


def test_compare_choice_reads_the_selects_or_falls_back_to_previous_and_current() -> None:
    meta = VersionsMetadata(session="s1", stage=Stage.STORY, current=3)

    def state(old: str, new: str) -> dict[str, Any]:
        return {
            COMPARE_BLOCK: {
                VersionsAction.COMPARE_FROM.value: {"selected_option": {"value": old}},
                VersionsAction.COMPARE_TO.value: {"selected_option": {"value": new}},
            }
        }

    assert compare_choice(state("1", "3"), meta) == (1, 3)
    assert compare_choice({}, meta) == (2, 3)
    assert compare_choice(state("-1", "x" * 50), meta) == (2, 3)
    assert compare_choice({}, meta.model_copy(update={"current": 1})) is None


# --- the restore flow over the in-memory ports (every stage, replays, no LLM or paid call) --------

_ts = itertools.count(1)


def restore(s: Session, version: int = 1, *, current: int | None = None, **kw: Any) -> Restore:
    fields: dict[str, Any] = {
        "team_id": TEAM,
        "channel_id": CHANNEL,
        "user_id": LOOP_OWNER,
        "session_id": SID,
        "modal_session": SID,
        "stage": s.stage,
        "version": version,
        "current": s.version if current is None else current,
        "message_ts": "V0MODAL",
        "action_ts": f"1950000000.{next(_ts):06d}",
    }
    return Restore(**(fields | kw))


def calls(loop: Loop) -> tuple[int, int, int, int]:
    """LLM calls, image calls, uploads, video and speech calls: none of them may move."""
    video, speech = loop.ctx.video, loop.ctx.speech
    assert isinstance(video, CountingVideo) and isinstance(speech, CountingSpeech)
    return (
        len(loop.writer.calls),
        loop.images.calls,
        len(loop.files.files),
        len(video.calls) + speech.calls,
    )


async def test_restoring_a_story_version_edits_the_story_and_posts_one_notice(
    tmp_path: Path,
) -> None:
    loop = build_loop(tmp_path)
    await start(loop)
    await click(loop, Regenerate)
    s = await loop_session(loop)
    before = calls(loop)
    loop.ctx.crash = CrashAt("after_commit")  # the restore commits, then the process dies
    trigger = restore(s, 1)
    with pytest.raises(SimulatedCrash):
        await loop.run(trigger)
    loop.ctx.crash = CrashAt(None)
    await loop.run(trigger, deliveries=2)  # re-delivered: its done marker is replayed

    s = await loop_session(loop)
    assert (s.version, s.status, s.active_job) == (3, Status.AWAITING_REVIEW, None)
    v1, v3 = await loop.store.version(s, 1), await loop.store.version(s, 3)
    assert v1 is not None and v3 is not None and v3.story == v1.story
    assert loop.chat.slots("restored:") == ["restored:story:3:1:U0ALICE"]
    notice = loop.chat.slot("restored:story:3:1:U0ALICE")
    assert notice is not None and "↩️ <@U0ALICE> restored v1 as v3" in notice.text
    story = loop.chat.slot("story")
    assert story is not None and "Story v3" in story.text and "restored from v1" in story.text
    assert story.actions == [LOOP_APPROVE, LOOP_REGENERATE, VersionsAction.OPEN.value]
    assert calls(loop) == before


async def test_restoring_images_reuses_their_files_and_stays_a_base_for_redo(
    tmp_path: Path,
) -> None:
    loop = build_loop(tmp_path)
    await to_images(loop)
    await click(loop, Regenerate)
    s = await loop_session(loop)
    before = calls(loop)
    await loop.run(restore(s, 1))

    s = await loop_session(loop)
    assert (s.stage, s.version, s.status) == (Stage.REFERENCE_IMAGE, 3, Status.AWAITING_REVIEW)
    v1 = await loop.store.artifact(s, Stage.REFERENCE_IMAGE, 1, ImageSetVersion)
    v3 = await loop.store.artifact(s, Stage.REFERENCE_IMAGE, 3, ImageSetVersion)
    assert v1 is not None and v3 is not None and v3.images == v1.images
    assert calls(loop) == before  # no LLM, no image, no upload
    review = loop.chat.slot("reference_image:v3")
    assert review is not None and "restored from v1" in review.text
    assert VersionsAction.OPEN.value in review.actions and LOOP_APPROVE in review.actions
    old = loop.chat.slot("reference_image:v2")
    assert old is not None and old.actions == [] and "Superseded" in old.text
    # Redo on the restored set remakes one image and keeps v1's files for the others.
    await click(loop, Redo, item=2)
    v4 = await loop.store.artifact(s, Stage.REFERENCE_IMAGE, 4, ImageSetVersion)
    assert v4 is not None and loop.images.calls == before[1] + 1
    assert [i.file_id for i in v4.images][0::2] == [i.file_id for i in v1.images][0::2]


async def test_restoring_a_storyboard_shows_its_pages_without_the_llm(tmp_path: Path) -> None:
    loop = build_loop(tmp_path)
    await to_images(loop)
    await click(loop, Approve)
    await click(loop, Regenerate)
    s = await loop_session(loop)
    assert (s.stage, s.version) == (Stage.STORYBOARD, 2)
    llm = len(loop.writer.calls)
    await loop.run(restore(s, 1))

    s = await loop_session(loop)
    assert s.version == 3 and len(loop.writer.calls) == llm
    page = loop.chat.slot("storyboard:v3:p1")
    assert page is not None and "restored from v1" in page.text
    assert page.actions == [LOOP_APPROVE, LOOP_REGENERATE, VersionsAction.OPEN.value]
    markdown = [f.filename for f in loop.files.in_thread(s.thread_ts or "", ".md")]
    assert markdown == ["storyboard-v1.md", "storyboard-v2.md", "storyboard-v3.md"]  # free text


async def video_session(loop: Loop, status: Status = Status.AWAITING_REVIEW) -> Session:
    """A session at the video stage with two rendered versions (the render itself, with real
    clips, is tests/e2e/test_video_flow.py's)."""
    await to_images(loop)
    await click(loop, Approve)
    await click(loop, Approve)
    s = await loop_session(loop)
    assert s.stage is Stage.VIDEO and s.plan == 1
    writes = Writes()
    for n in (1, 2):
        clips = (ClipResult(index=1, scene=1, file_id=f"C{n}", seconds=8, cost_usd=1.0, made_in=n),)
        version = VideoVersion(
            number=n,
            plan=1,
            clips=clips,
            file_id=f"V{n}",
            duration_s=8.0,
            cost_usd=1.0,
            created_at=1.0,
        )
        writes.add_artifact(s, Stage.VIDEO.value, n, version.model_dump_json())
    seeded = s.model_copy(update={"status": status, "version": 2})
    return await loop.store.commit(s, seeded, fence=None, writes=writes)


async def test_restoring_a_video_reuses_its_files_and_spends_nothing(tmp_path: Path) -> None:
    loop = build_loop(tmp_path)
    s = await video_session(loop)
    before, spent = calls(loop), s.spent_usd
    await loop.run(restore(s, 1))

    s = await loop_session(loop)
    assert (s.version, s.status, s.plan) == (3, Status.AWAITING_REVIEW, 1)
    v3 = await loop.store.artifact(s, Stage.VIDEO, 3, VideoVersion)
    assert v3 is not None and (v3.file_id, v3.clips[0].file_id, v3.cost_usd) == ("V1", "C1", 0.0)
    assert calls(loop) == before and s.spent_usd == spent  # the images' cost, nothing more
    review = loop.chat.slot("video:v3")
    assert review is not None and "Video v3" in review.text and "restored from v1" in review.text
    assert loop.chat.slots("restored:") == ["restored:video:3:1:U0ALICE"]


async def test_a_video_plan_waiting_for_confirmation_is_not_restored_over(tmp_path: Path) -> None:
    loop = build_loop(tmp_path)
    s = await video_session(loop, Status.AWAITING_CONFIRMATION)
    await loop.run(restore(s, 1))
    assert "confirm or cancel" in loop.chat.ephemerals[-1].text
    after = await loop_session(loop)
    assert (after.version, after.rev) == (s.version, s.rev)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"version": 0}, "version numbered 0"),
        ({"version": 2}, "already the current version"),
        ({"current": 1}, "changed since you opened"),
        ({"session_id": "sess0002"}, "doesn't belong"),
        ({"channel_id": "C0ELSEWHERE"}, "can't find that story session"),
    ],
)
async def test_refused_restores_change_nothing(
    tmp_path: Path, change: dict[str, Any], words: str
) -> None:
    loop = build_loop(tmp_path)
    await start(loop)
    await click(loop, Regenerate)
    s = await loop_session(loop)
    job = await loop.run(restore(s, **({"version": 1} | change)))
    assert words in loop.chat.ephemerals[-1].text
    after = await loop_session(loop)
    assert (after.version, after.rev) == (2, s.rev)
    assert await loop.store.done(job.id) == {"deliver": []}
    assert loop.chat.slots("restored:") == []
