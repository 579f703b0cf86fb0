"""Block Kit builders of the video stage: the plan says the cost before anything is spent, buttons
decode to the stage, plan, version and scene, text can't ping or link, and every screen fits
Slack's limits at the largest plan the settings allow; the card words the new statuses."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.pipeline.artifacts import ClipPlan, ClipResult, VideoPlan, VideoVersion
from bot.pipeline.models import Session, Stage, Status
from bot.slack import blocks as kit
from bot.slack import video_blocks
from bot.slack.actions import ActionId, StageButtonValue, parse_button
from bot.slack.blocks import PlanState, Rendered, RenderOutcome, ReviewState
from tests.unit.test_blocks import (
    EVIL,
    OWNER,
    actions_blocks,
    approved,
    assert_only_intended_controls,
    assert_within_limits,
    make_session,
)

VIDEO, BOARD, IMAGES = Stage.VIDEO, Stage.STORYBOARD, Stage.REFERENCE_IMAGE
PLAN_STATES: tuple[PlanState, ...] = ("confirm", "confirmed", "cancelled", "superseded")
REVIEW_STATES: tuple[ReviewState, ...] = ("review", "approved", "superseded")
OUTCOMES: tuple[RenderOutcome, ...] = ("done", "cancelled", "failed")
HOSTILE = "<!channel> <!here> <@U123> &amp;"
MAXIMAL = "&" * 3000 + EVIL


def video_session(**changes: Any) -> Session:
    fields: dict[str, Any] = {
        "id": "sess_5",
        "stage": VIDEO,
        "status": Status.AWAITING_CONFIRMATION,
        "plan": 3,
        "spent_usd": 1.23,
    }
    return make_session(**{**fields, **changes})


def clip(index: int, scene: int | None = None, **changes: Any) -> ClipPlan:
    fields: dict[str, Any] = {
        "seconds": 8,
        "scene_s": 6,
        "prompt": "Scene 1 of a short video. Wide, slow push-in: the bottle wakes up.",
        "reference": "Hero",
    }
    return ClipPlan(index=index, scene=scene or index, **{**fields, **changes})


def plan(*clips: ClipPlan, number: int = 2, **changes: Any) -> VideoPlan:
    if not clips:
        clips = (clip(1), clip(2, seconds=12, scene_s=12, reference=None))
    fields: dict[str, Any] = {
        "model": "sora-2",
        "size": "1280x720",
        "voiceover": True,
        "estimate_usd": 2.4,
        "created_at": 3.0,
    }
    return VideoPlan(number=number, clips=clips, **{**fields, **changes})


def result(index: int, scene: int | None = None, *, made_in: int = 2, **changes: Any) -> ClipResult:
    fields: dict[str, Any] = {"seconds": 8, "cost_usd": 0.8, "file_id": f"F{index}"}
    return ClipResult(index=index, scene=scene or index, made_in=made_in, **{**fields, **changes})


def video(*clips: ClipResult, number: int = 2, **changes: Any) -> VideoVersion:
    if not clips:
        clips = (result(1), result(2))
    fields: dict[str, Any] = {
        "plan": 2,
        "file_id": "F0",
        "duration_s": 14.0,
        "voiceover": True,
        "cost_usd": 1.6,
        "created_at": 4.0,
    }
    return VideoVersion(number=number, clips=clips, **{**fields, **changes})


def sections(msg: Rendered) -> list[dict[str, Any]]:
    return [b for b in msg.blocks if b["type"] == "section"]


def context_texts(msg: Rendered) -> list[str]:
    return [e["text"] for b in msg.blocks if b["type"] == "context" for e in b["elements"]]


def decoded(element: dict[str, Any]) -> StageButtonValue:
    value = parse_button(element["value"])
    assert isinstance(value, StageButtonValue)
    return value


def assert_accessories_within_limits(msg: Rendered) -> None:
    for block in sections(msg):
        if accessory := block.get("accessory"):
            assert accessory["type"] == "button"
            assert 0 < len(accessory["text"]["text"]) <= 75
            assert len(accessory["value"]) <= 2000


def clip_lines(msg: Rendered) -> list[str]:
    texts = [b["text"]["text"] for b in sections(msg) if "_clips" in b["block_id"]]
    return "\n".join(texts).split("\n")


# --- the plan ---------------------------------------------------------------------------------


def test_plan_layout_waiting_for_confirmation() -> None:
    msg = kit.video_plan(video_session(), plan(), state="confirm")
    assert_within_limits(msg)
    assert msg.blocks[0] == {
        "type": "header",
        "block_id": "plan2_title",
        "text": {"type": "plain_text", "text": "Video plan", "emoji": True},
    }
    assert context_texts(msg)[0] == (
        "2 clips · 18 s of video (target 30 s) · 20 s rendered · model sora-2"
        " · size 1280x720 · voice-over on"
    )
    assert clip_lines(msg) == [
        "*Scene 1* · 8 s clip (6 s used) · ref: Hero"
        " — _Scene 1 of a short video. Wide, slow push-in: the bottle wakes up._",
        "*Scene 2* · 12 s clip (12 s used) · no reference image"
        " — _Scene 1 of a short video. Wide, slow push-in: the bottle wakes up._",
    ]
    estimate = next(b for b in sections(msg) if b["block_id"] == "plan2_estimate")
    assert estimate["text"]["text"] == "*Estimated cost: ≈ $2.40* (before anything is spent)"
    assert context_texts(msg)[-1] == "Nothing is paid until someone allowed to approve confirms."
    assert msg.text == "Video plan: 2 clips, ≈ $2.40"


def test_plan_buttons_confirm_or_cancel_that_plan() -> None:
    msg = kit.video_plan(video_session(), plan(number=4), state="confirm")
    (actions,) = actions_blocks(msg)
    assert actions["block_id"] == "plan_v4"
    generate, cancel = actions["elements"]
    assert (generate["action_id"], generate["text"]["text"]) == (
        ActionId.CONFIRM,
        "Generate video (≈ $2.40)",
    )
    assert generate["style"] == "primary"
    assert (cancel["action_id"], cancel["text"]["text"]) == (ActionId.CANCEL, "Cancel")
    assert cancel["style"] == "danger"
    for element in (generate, cancel):
        assert decoded(element) == StageButtonValue(session="sess_5", stage=VIDEO, version=4)


def test_plan_meta_without_partly_used_clips_and_without_voice_over() -> None:
    clips = (clip(1, seconds=4, scene_s=4), clip(2, seconds=8, scene_s=8))
    msg = kit.video_plan(video_session(), plan(*clips, voiceover=False), state="confirm")
    assert context_texts(msg)[0] == (
        "2 clips · 12 s of video (target 30 s) · model sora-2 · size 1280x720 · voice-over off"
    )


def test_a_redo_plan_names_its_scene() -> None:
    redo = plan(clip(3, seconds=8, scene_s=8, reference=None), redo_of=3, estimate_usd=0.8)
    msg = kit.video_plan(video_session(), redo, state="confirm")
    assert_within_limits(msg)
    assert msg.blocks[0]["text"]["text"] == "Video plan — redo of scene 3"
    assert context_texts(msg)[0].startswith("1 clip · 8 s of video (scene 3 only) · model")
    assert msg.text == "Video plan — redo of scene 3: 1 clip, ≈ $0.80"


def test_a_scene_split_over_several_clips_says_which_part() -> None:
    clips = (
        clip(1, 1, seconds=12, scene_s=12),
        clip(2, 1, seconds=4, scene_s=3),
        clip(3, 2, seconds=4, scene_s=4),
    )
    lines = clip_lines(kit.video_plan(video_session(), plan(*clips), state="confirm"))
    assert [line.split(" · ")[0] for line in lines] == [
        "*Scene 1, clip 1 of 2*",
        "*Scene 1, clip 2 of 2*",
        "*Scene 2*",
    ]


@pytest.mark.parametrize(
    ("state", "by", "footer"),
    [
        ("confirmed", "U0BOB", "✅ Confirmed by <@U0BOB> — rendering…"),
        ("confirmed", None, "✅ Confirmed — rendering…"),
        ("cancelled", "U0BOB", "🚫 Cancelled by <@U0BOB> — nothing more is spent"),
        ("cancelled", None, "🚫 Cancelled — nothing more is spent"),
        ("superseded", "U0BOB", "⏭️ Replaced by a newer plan"),
    ],
)
def test_plan_states_without_buttons(state: PlanState, by: str | None, footer: str) -> None:
    msg = kit.video_plan(video_session(), plan(), state=state, by=by)
    assert_within_limits(msg)
    assert actions_blocks(msg) == []
    assert context_texts(msg)[-1] == footer
    assert "*Estimated cost: ≈ $2.40*" in sections(msg)[-1]["text"]["text"], "the cost stays"


@pytest.mark.parametrize(
    ("estimate", "label"),
    [
        (0.0, "Generate video (≈ $0.00)"),
        (0.042, "Generate video (≈ $0.042)"),
        (0.0999, "Generate video (≈ $0.10)"),
        (3.2, "Generate video (≈ $3.20)"),
        (1234.5, "Generate video (≈ $1,234.50)"),
    ],
)
def test_plan_money_formatting(estimate: float, label: str) -> None:
    msg = kit.video_plan(video_session(), plan(estimate_usd=estimate), state="confirm")
    (actions,) = actions_blocks(msg)
    assert actions["elements"][0]["text"]["text"] == label
    shown = label.removeprefix("Generate video (").removesuffix(")")
    assert (
        sections(msg)[-1]["text"]["text"] == f"*Estimated cost: {shown}* (before anything is spent)"
    )


def test_an_absurd_estimate_keeps_the_button_within_limits() -> None:
    msg = kit.video_plan(video_session(), plan(estimate_usd=1e60), state="confirm")
    assert_within_limits(msg)


@pytest.mark.parametrize("state", PLAN_STATES)
def test_plan_text_cannot_ping_or_link(state: PlanState) -> None:
    hostile = plan(
        clip(1, prompt=HOSTILE + EVIL, reference=HOSTILE + EVIL),
        model=HOSTILE,
        size=EVIL,
    )
    msg = kit.video_plan(video_session(), hostile, state=state, by="U0BOB")
    assert_within_limits(msg)
    assert_only_intended_controls(msg, {"<@U0BOB>"})
    assert "model &lt;!channel&gt;" in context_texts(msg)[0]
    assert "ref: &lt;!channel&gt;" in clip_lines(msg)[0]


def test_plan_neutralises_a_forged_user_id() -> None:
    msg = kit.video_plan(video_session(), plan(), state="cancelled", by="U1> <!channel")
    assert_only_intended_controls(msg, set())


def maximal_plan(count: int = 30) -> VideoPlan:
    clips = tuple(
        clip(i, i, seconds=20, scene_s=19, prompt=MAXIMAL, reference=MAXIMAL)
        for i in range(1, count + 1)
    )
    return plan(*clips, number=10_000, model=MAXIMAL, size=MAXIMAL, estimate_usd=1e9, redo_of=99)


@pytest.mark.parametrize("state", PLAN_STATES)
def test_thirty_clips_of_maximal_prompts_fit_one_message(state: PlanState) -> None:
    msg = kit.video_plan(video_session(), maximal_plan(), state=state, by="U0BOB")
    assert_within_limits(msg)
    assert_only_intended_controls(msg, {"<@U0BOB>"})
    lines = clip_lines(msg)
    assert len(lines) == 30, "a plan the settings allow is listed in full"
    for line in lines:
        assert "…" in line
        assert line.count("&amp;") <= 200


def test_a_plan_beyond_the_settings_is_listed_as_far_as_it_fits() -> None:
    msg = kit.video_plan(video_session(), maximal_plan(300), state="confirm")
    assert_within_limits(msg)
    lines = clip_lines(msg)
    assert lines[-1] == f"…and {300 - len(lines) + 1} more clips"
    assert actions_blocks(msg), "the buttons are never squeezed out"


@settings(max_examples=40, deadline=None)
@given(
    texts=st.lists(st.tuples(st.text(max_size=3000), st.text(max_size=300)), max_size=30),
    model=st.text(max_size=300),
)
def test_any_plan_fits_and_stays_escaped(texts: list[tuple[str, str]], model: str) -> None:
    clips = tuple(clip(i, prompt=p, reference=r or None) for i, (p, r) in enumerate(texts, start=1))
    msg = kit.video_plan(video_session(), plan(*clips, model=model, size=model), state="confirm")
    assert_within_limits(msg)
    assert_only_intended_controls(msg, set())


# --- the render -------------------------------------------------------------------------------


def test_progress_shows_the_first_clip_not_done() -> None:
    clips = [(1, "done", 100), (2, "rendering", 42), (3, "queued", 0)]
    msg = kit.video_progress(video_session(), 2, clips, total=3)
    assert_within_limits(msg)
    headline = "🎬 Rendering the video (v2) · clip 2 of 3 · 42 %"
    assert msg.text == headline
    assert msg.blocks[0]["text"]["text"] == headline
    assert context_texts(msg) == [
        "Clip 1 · ✅ done\nClip 2 · ⏳ rendering 42 %\nClip 3 · 🕓 queued"
    ]


@pytest.mark.parametrize(
    ("clips", "total", "headline"),
    [
        ([], 3, "🎬 Rendering the video (v2) · clip 1 of 3 · 0 %"),
        ([], 0, "🎬 Rendering the video (v2)…"),
        ([(1, "queued", 0)], 1, "🎬 Rendering the video (v2) · clip 1 of 1 · 0 %"),
        ([(1, "done", 100), (2, "downloading", 100)], 2, "· clip 2 of 2 · 100 %"),
        ([(1, "done", 100)], 3, "· clip 2 of 3 · 0 %"),
        (
            [(1, "done", 100), (2, "done", 100)],
            2,
            "🎬 Rendering the video (v2) · joining the clips…",
        ),
        ([(1, "failed", 0), (2, "rendering", 150)], 2, "· clip 2 of 2 · 100 %"),
        ([(1, "done", 100), (2, "failed", 0)], 2, "🎬 Rendering the video (v2) · 1 clip failed"),
        ([(3, "rendering", -5)], 1, "· clip 1 of 1 · 0 %"),  # a Redo's clip 3 is its first
    ],
)
def test_progress_headline(clips: list[tuple[int, str, int]], total: int, headline: str) -> None:
    msg = kit.video_progress(video_session(), 2, clips, total=total)
    assert_within_limits(msg)
    assert msg.text.endswith(headline)


def test_progress_cancel_stops_the_confirmed_plan() -> None:
    msg = kit.video_progress(video_session(plan=7), 2, [(1, "rendering", 10)], total=2)
    (actions,) = actions_blocks(msg)
    assert actions["block_id"] == "progress_v2"
    (cancel,) = actions["elements"]
    assert (cancel["action_id"], cancel["text"]["text"]) == (ActionId.CANCEL, "Cancel")
    assert cancel["style"] == "danger"
    assert decoded(cancel) == StageButtonValue(session="sess_5", stage=VIDEO, version=7)
    dialog = cancel["confirm"]
    assert dialog["text"]["text"] == "Clips already made are paid for; nothing more will be spent."
    assert all(len(dialog[k]["text"]) <= limit for k, limit in (("title", 100), ("confirm", 30)))


def test_progress_of_many_clips_with_unknown_states_stays_within_limits() -> None:
    clips = [(i, HOSTILE + EVIL * 10, i) for i in range(1, 201)]
    msg = kit.video_progress(video_session(), 10_000, clips, total=200)
    assert_within_limits(msg)
    assert_only_intended_controls(msg, set())
    lines = "\n".join(context_texts(msg)).split("\n")
    assert lines[-1] == "…and 160 more clips"
    assert lines[0].startswith("Clip 1 · &lt;!channel&gt;")


@pytest.mark.parametrize(
    ("state", "text"),
    [
        ("done", "🎬 Video v3 rendered ($2.40 spent) — review below."),
        ("cancelled", "🚫 Rendering of video v3 was stopped ($0.80 spent)."),
        ("failed", "⚠️ Video v3 couldn't be rendered ($0.042 spent)."),
    ],
)
def test_progress_done_words(state: RenderOutcome, text: str) -> None:
    spent = {"done": 2.4, "cancelled": 0.8, "failed": 0.042}[state]
    msg = kit.video_progress_done(3, state=state, spent_usd=spent)
    assert_within_limits(msg)
    assert msg.text == text
    assert actions_blocks(msg) == []


# --- failure and cancellation -----------------------------------------------------------------


def test_video_failure_offers_a_retry_of_the_plan_in_plain_words() -> None:
    msg = kit.video_failure(video_session(), EVIL + "x" * 5000, retry_plan=4)
    assert_within_limits(msg)
    assert_only_intended_controls(msg, set())
    assert msg.blocks[0]["text"]["text"].startswith("⚠️ &lt;!channel&gt;")
    (actions,) = actions_blocks(msg)
    (retry,) = actions["elements"]
    assert (retry["action_id"], retry["text"]["text"]) == (ActionId.RETRY, "Retry")
    assert decoded(retry) == StageButtonValue(session="sess_5", stage=VIDEO, version=4)


def test_video_cancelled_says_what_was_made_and_offers_a_new_plan() -> None:
    msg = kit.video_cancelled(video_session(plan=5), "U0BOB", made=2, total=5, spent_usd=1.6)
    assert_within_limits(msg)
    assert_only_intended_controls(msg, {"<@U0BOB>"})
    assert msg.text == (
        "🚫 Video cancelled by <@U0BOB>: 2 of 5 clips were made ($1.60 spent)."
        " Nothing more is paid."
    )
    (actions,) = actions_blocks(msg)
    (new_plan,) = actions["elements"]
    assert (new_plan["action_id"], new_plan["text"]["text"]) == (ActionId.RETRY, "New plan")
    assert decoded(new_plan) == StageButtonValue(session="sess_5", stage=VIDEO, version=5)


@pytest.mark.parametrize(
    ("made", "total", "spent", "text"),
    [
        (0, 3, 0.0, "🚫 Video cancelled by <@U0BOB> before any clip was made. Nothing is paid."),
        (1, 1, 0.8, "🚫 Video cancelled by <@U0BOB>: 1 of 1 clip was made ($0.80 spent)."),
        (0, 2, 0.042, "🚫 Video cancelled by <@U0BOB>: 0 of 2 clips were made ($0.042 spent)."),
    ],
)
def test_video_cancelled_words(made: int, total: int, spent: float, text: str) -> None:
    msg = kit.video_cancelled(video_session(), "U0BOB", made=made, total=total, spent_usd=spent)
    assert msg.text.startswith(text)


def test_video_cancelled_neutralises_a_forged_user_id() -> None:
    msg = kit.video_cancelled(video_session(), "U1> <!channel", made=1, total=2, spent_usd=1)
    assert_only_intended_controls(msg, set())


# --- the review -------------------------------------------------------------------------------


def test_video_review_layout() -> None:
    msg = kit.video_review(video_session(), video(), plan(), state="review")
    assert_within_limits(msg)
    assert_accessories_within_limits(msg)
    assert msg.blocks[0]["text"]["text"] == "Video v2"
    assert msg.blocks[0]["block_id"] == "v2_title"
    assert context_texts(msg)[:2] == [
        "14 s · 2 clips · $1.60 for this version · $1.23 spent in this session",
        "The finished MP4 is above; the separate clips are in the thread too.",
    ]
    assert [b["text"]["text"] for b in sections(msg)] == ["*Scene 1* · 8 s", "*Scene 2* · 8 s"]
    assert context_texts(msg)[-1] == (
        "Reply in the thread to say what to change — name the scene (e.g. “scene 2”)."
        " Redo asks for a new estimate first."
    )
    assert msg.text == "Video v2"


def test_video_review_buttons_bind_version_and_scene() -> None:
    msg = kit.video_review(video_session(), video(number=3), plan(), state="review")
    for k, block in enumerate(sections(msg), start=1):
        redo = block["accessory"]
        assert (redo["action_id"], redo["text"]["text"]) == (ActionId.REDO, f"Redo scene {k}")
        assert decoded(redo) == StageButtonValue(session="sess_5", stage=VIDEO, version=3, item=k)
    (actions,) = actions_blocks(msg)
    assert actions["block_id"] == "review_v3"
    approve, versions = actions["elements"]
    assert versions["action_id"] == "stage_versions"
    assert (approve["action_id"], approve["text"]["text"]) == (ActionId.APPROVE, "Approve")
    assert approve["style"] == "primary"
    assert decoded(approve) == StageButtonValue(session="sess_5", stage=VIDEO, version=3)


def test_a_redo_version_says_which_scene_and_what_was_kept() -> None:
    clips = (
        result(1, 1, made_in=1),
        result(2, 2, made_in=3, seconds=12),
        result(3, 2, made_in=3, seconds=4),
        result(4, 3, made_in=2),
    )
    version = video(*clips, number=3, duration_s=29.5, cost_usd=1.2, redo_of=2, file_id=None)
    msg = kit.video_review(video_session(spent_usd=4.0), version, plan(redo_of=2), state="review")
    assert_within_limits(msg)
    assert context_texts(msg)[:2] == [
        "29.5 s · 4 clips · $1.20 for this version · $4.00 spent in this session · redo of scene 2",
        "The separate clips are in the thread above.",
    ]
    assert [b["text"]["text"] for b in sections(msg)] == [
        "*Scene 1* · 8 s · kept from v1",
        "*Scene 2* · 16 s · 2 clips",
        "*Scene 3* · 8 s · kept from v2",
    ]
    assert [decoded(b["accessory"]).item for b in sections(msg)] == [1, 2, 3]


def test_approved_video_names_the_approver_and_has_no_buttons() -> None:
    session = video_session(approvals=(approved(VIDEO, 2, "U0CAROL"),))
    for approver, shown in ((None, "<@U0CAROL>"), ("U0BOB", "<@U0BOB>")):
        msg = kit.video_review(session, video(), plan(), state="approved", approver=approver)
        assert_within_limits(msg)
        assert actions_blocks(msg) == []
        assert all("accessory" not in b for b in sections(msg))
        assert context_texts(msg)[-1] == f"✅ Approved v2 by {shown} — the session is complete"


def test_superseded_video_has_no_buttons() -> None:
    msg = kit.video_review(video_session(), video(), plan(), state="superseded")
    assert actions_blocks(msg) == []
    assert all("accessory" not in b for b in sections(msg))
    assert context_texts(msg)[-1] == "⏭️ Superseded by a newer version"


@pytest.mark.parametrize("state", REVIEW_STATES)
def test_video_review_of_many_scenes_stays_within_limits(state: ReviewState) -> None:
    clips = tuple(result(i, 90 + i, made_in=1 + i % 2, seconds=20) for i in range(1, 301))
    version = video(*clips, number=10_000, duration_s=1e7, cost_usd=1e9, redo_of=101)
    session = video_session(spent_usd=1e12, approvals=(approved(VIDEO, 10_000, "U0BOB"),))
    msg = kit.video_review(session, version, maximal_plan(), state=state)
    assert_within_limits(msg)
    assert_accessories_within_limits(msg)
    assert_only_intended_controls(msg, {"<@U0BOB>"})
    assert "…and 260 more scenes not listed" in context_texts(msg)
    redone = [decoded(b["accessory"]).item for b in sections(msg) if "accessory" in b]
    assert redone == (list(range(91, 101)) if state == "review" else [])


@pytest.mark.parametrize("state", REVIEW_STATES)
def test_thirty_scenes_are_all_listed(state: ReviewState) -> None:
    clips = tuple(result(i) for i in range(1, 31))
    msg = kit.video_review(video_session(), video(*clips), maximal_plan(), state=state)
    assert_within_limits(msg)
    assert len(sections(msg)) == 30


# --- the end ----------------------------------------------------------------------------------

PERMALINK = "https://acme.slack.com/archives/C0TALES/p1700000000123456?thread_ts=1.2&cid=C0"


def test_session_complete_lists_every_approved_stage() -> None:
    msg = kit.session_complete(
        video_session(stage=Stage.COMPLETE),
        [
            ("Story v1", PERMALINK),
            ("Reference images v2 — 4 files", None),
            ("Storyboard v1", "javascript:alert(1)"),
            ("Video v3 — video-v3.mp4", "https://acme.slack.com/files/F0"),
        ],
    )
    assert_within_limits(msg)
    assert actions_blocks(msg) == []
    (body,) = sections(msg)
    assert body["text"]["text"] == (
        "🎉 Session complete — every stage approved:\n"
        f"• Story v1 — <{PERMALINK.replace('&', '&amp;')}|open>\n"
        "• Reference images v2 — 4 files\n"
        "• Storyboard v1\n"
        "• Video v3 — video-v3.mp4 — <https://acme.slack.com/files/F0|open>"
    )
    assert msg.text == "🎉 Session complete — every stage approved:"


@pytest.mark.parametrize(
    "url", ["https://x.com/a|<!channel>", "https://x.com/a><!here", "https://x.com/a b", ""]
)
def test_session_complete_refuses_urls_that_could_smuggle_controls(url: str) -> None:
    msg = kit.session_complete(video_session(), [(HOSTILE, url)])
    assert_only_intended_controls(msg, set())
    assert sections(msg)[0]["text"]["text"].endswith(
        "\n• &lt;!channel&gt; &lt;!here&gt; &lt;@U123&gt; &amp;amp;"
    )


def test_session_complete_with_very_many_links_stays_within_limits() -> None:
    msg = kit.session_complete(video_session(), [(EVIL * 20, PERMALINK + "x" * 800)] * 200)
    assert_within_limits(msg)
    text = "\n".join(b["text"]["text"] for b in sections(msg))
    assert text.endswith(" more")


# --- the session card and the notices -----------------------------------------------------------


def card_lines(msg: Rendered) -> list[str]:
    (stages_block,) = [b for b in msg.blocks if b["type"] == "context"]
    return [e["text"] for e in stages_block["elements"]]


@pytest.mark.parametrize(
    ("status", "estimate", "tracker", "status_line"),
    [
        (
            Status.AWAITING_CONFIRMATION,
            2.4,
            "Story ✅ · Images ✅ · Storyboard ✅ · Video 💵",
            "💵 Video plan ≈ $2.40 is waiting for confirmation in the thread",
        ),
        (
            Status.AWAITING_CONFIRMATION,
            None,
            "Story ✅ · Images ✅ · Storyboard ✅ · Video 💵",
            "💵 Video plan is waiting for confirmation in the thread",
        ),
        (
            Status.CANCELLED,
            2.4,
            "Story ✅ · Images ✅ · Storyboard ✅ · Video 🚫",
            "🚫 Video cancelled — a new plan is offered in the thread",
        ),
        (
            Status.GENERATING,
            None,
            "Story ✅ · Images ✅ · Storyboard ✅ · Video ⏳",
            "🎞️ Making the video…",
        ),
        (
            Status.AWAITING_REVIEW,
            None,
            "Story ✅ · Images ✅ · Storyboard ✅ · Video ⏳",
            "👀 Video v2 is awaiting review in the thread",
        ),
    ],
)
def test_session_card_tracks_the_video_stage(
    status: Status,
    estimate: float | None,
    tracker: str,
    status_line: str,
) -> None:
    session = video_session(status=status, estimate_usd=estimate, spent_usd=0.17)
    msg = kit.session_card(session)
    assert_within_limits(msg)
    lines = card_lines(msg)
    assert lines[:2] == [tracker, status_line]
    assert lines[-1] == "💵 Spent so far: $0.17"
    if status in (Status.AWAITING_CONFIRMATION, Status.CANCELLED):
        assert not any(line.startswith("💵 Estimated") for line in lines), "said once, or not"


def test_session_card_estimate_line_while_rendering() -> None:
    session = video_session(status=Status.GENERATING, estimate_usd=2.4, spent_usd=0.0)
    assert card_lines(kit.session_card(session))[-1] == "💵 Estimated $2.40 for this generation"


def test_session_card_when_complete() -> None:
    session = video_session(
        stage=Stage.COMPLETE,
        status=Status.AWAITING_REVIEW,
        approvals=(
            approved(Stage.STORY, 1, "U0BOB"),
            approved(IMAGES, 2, "U0CAROL"),
            approved(BOARD, 1, "U0BOB"),
            approved(VIDEO, 3, "U0CAROL"),
        ),
        spent_usd=5.5,
    )
    msg = kit.session_card(session)
    assert_within_limits(msg)
    assert_only_intended_controls(msg, {f"<@{OWNER}>", "<@U0BOB>", "<@U0CAROL>"})
    assert card_lines(msg) == [
        "Story ✅ · Images ✅ · Storyboard ✅ · Video ✅",
        "🎉 Complete",
        "Story v1 approved by <@U0BOB>",
        "Reference images v2 approved by <@U0CAROL>",
        "Storyboard v1 approved by <@U0BOB>",
        "Video v3 approved by <@U0CAROL>",
        "💵 Spent so far: $5.50",
    ]


def test_session_card_with_everything_at_the_video_stage_stays_within_limits() -> None:
    session = video_session(
        prompt=EVIL * 200,
        tone=EVIL * 10,
        status=Status.AWAITING_CONFIRMATION,
        approvals=tuple(approved(s, 10_000, "U0BOB") for s in (Stage.STORY, IMAGES, BOARD, VIDEO)),
        estimate_usd=1e12,
        spent_usd=1e12,
    )
    msg = kit.session_card(session)
    assert_within_limits(msg)
    assert_only_intended_controls(msg, {f"<@{OWNER}>", "<@U0BOB>"})


def test_storyboard_approved_notice_plans_the_video_once_it_is_available() -> None:
    msg = kit.approved_notice(BOARD, "U0BOB", 1)
    assert_within_limits(msg)
    assert msg.text == "✅ Storyboard approved (v1 by <@U0BOB>)! Planning the video…"
    assert len(msg.blocks) == 1


def test_video_approved_notice_completes_the_session() -> None:
    msg = kit.approved_notice(VIDEO, "U0BOB", 3)
    assert_within_limits(msg)
    assert_only_intended_controls(msg, {"<@U0BOB>"})
    assert msg.text == "✅ Video approved (v3 by <@U0BOB>)! The session is complete."
    assert len(msg.blocks) == 1


def test_blocks_re_exports_the_video_builders() -> None:
    for name in video_blocks.__all__:
        assert getattr(kit, name) is getattr(video_blocks, name)
        assert name in kit.__all__
