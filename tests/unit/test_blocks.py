"""Block Kit builders: Slack's limits hold for any story, user text can't ping, buttons bind."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from bot.pipeline.approvals import ApprovalPolicy, Rule
from bot.pipeline.models import (
    Approval,
    Scene,
    Session,
    Stage,
    Status,
    Story,
    StoryVersion,
    Usage,
)
from bot.pipeline.stages import REGISTRY
from bot.slack import blocks as kit
from bot.slack.actions import (
    APPROVERS_BLOCK,
    CHANNEL_ACTION,
    CHANNEL_BLOCK,
    DURATION_ACTION,
    DURATION_BLOCK,
    GROUP_ACTION,
    GROUP_BLOCK,
    PROMPT_ACTION,
    PROMPT_BLOCK,
    QUORUM_BLOCK,
    RULE_ACTION,
    RULE_BLOCK,
    START_MODAL_CALLBACK,
    TONE_ACTION,
    TONE_BLOCK,
    ActionId,
    ButtonValue,
)
from bot.slack.blocks import Rendered, StoryState, block_text_length

OWNER = "U0ALICE"
EVIL = "<!channel> <!here> <@U123> <#C1> &amp; <https://x|y>"
CONTROL = re.compile(r"<[^<>]*>")
STATES: tuple[StoryState, ...] = ("review", "approved", "regenerating", "superseded")


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


def approved(stage: Stage, version: int, user_id: str) -> Approval:
    return Approval(stage=stage, version=version, user_id=user_id, at=1.5)


def make_version(
    number: int = 2,
    *,
    title: str = "The Bottle That Came Back",
    logline: str = "A bottle refuses to be thrown away.",
    narrative: str = "It starts in a kitchen.\n\nIt ends on a mountain.",
    scenes: tuple[Scene, ...] | None = None,
    summary: str = "",
) -> StoryVersion:
    if scenes is None:
        scenes = (
            Scene(number=1, duration_s=6, visuals="A kitchen at dawn", voiceover="Meet Bo."),
            Scene(number=2, duration_s=8, visuals="A trail", voiceover="Bo goes up."),
            Scene(number=3, duration_s=16, visuals="A summit", voiceover="Refill. Repeat."),
        )
    story = Story(title=title, logline=logline, narrative=narrative, scenes=scenes)
    return StoryVersion(
        number=number,
        story=story,
        usage=Usage(prompt_tokens=1200, completion_tokens=345),
        summary_of_changes=summary,
        created_at=3.0,
    )


def huge_version() -> StoryVersion:
    """60k-character narrative (with an unbroken run), 60 long scenes, an absurd title."""
    paragraphs = [" ".join(f"w{p}x{i}" for i in range(120)) for p in range(60)]
    narrative = "\n\n".join(paragraphs)
    narrative += "\n\n" + "Z" * (60_000 - len(narrative))
    scenes = tuple(
        Scene(
            number=i,
            duration_s=3,
            visuals=" ".join(f"v{i}y{j}" for j in range(400 if i % 10 else 900)),
            voiceover=" ".join(f"o{i}y{j}" for j in range(100)),
        )
        for i in range(1, 61)
    )
    return make_version(7, title="Title " * 200, narrative=narrative, scenes=scenes)


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def strings(msg: Rendered) -> list[str]:
    return [msg.text, *(s for s in walk(msg.blocks) if isinstance(s, str))]


def mrkdwn_texts(msg: Rendered) -> list[dict[str, Any]]:
    return [n for n in walk(msg.blocks) if isinstance(n, dict) and n.get("type") == "mrkdwn"]


def actions_blocks(msg: Rendered) -> list[dict[str, Any]]:
    return [b for b in msg.blocks if b["type"] == "actions"]


def assert_within_limits(msg: Rendered) -> None:
    assert 0 < len(msg.text) <= 3000
    assert 0 < len(msg.blocks) <= 50
    assert block_text_length(msg.blocks) <= 11_000
    ids = [b["block_id"] for b in msg.blocks]
    assert len(ids) == len(set(ids)), "block_id must be unique within a message"
    assert all(0 < len(i) <= 255 for i in ids)
    for block in msg.blocks:
        if block["type"] == "section":
            assert 0 < len(block["text"]["text"]) <= 3000
        elif block["type"] == "header":
            assert block["text"]["type"] == "plain_text"
            assert 0 < len(block["text"]["text"]) <= 150
        elif block["type"] == "context":
            assert 0 < len(block["elements"]) <= 10
        elif block["type"] == "actions":
            assert 0 < len(block["elements"]) <= 25
            for element in block["elements"]:
                assert len(element["text"]["text"]) <= 75
                assert len(element["value"]) <= 2000
                assert len(element["action_id"]) <= 255
    for text_object in mrkdwn_texts(msg):
        assert text_object["verbatim"] is True


def assert_only_intended_controls(msg: Rendered, allowed: set[str]) -> None:
    for s in strings(msg):
        assert "<!" not in s
        assert "<#" not in s
        assert "<http" not in s
        for control in CONTROL.findall(s):
            assert control in allowed, f"unexpected control sequence {control!r} in {s!r}"


# --- story message ----------------------------------------------------------------------------


def test_story_message_layout_in_review() -> None:
    session = make_session()
    version = make_version()
    (msg,) = kit.story_messages(session, version, state="review")
    assert_within_limits(msg)
    types = [b["type"] for b in msg.blocks]
    assert types[0] == "header"
    assert msg.blocks[0]["text"]["text"] == "The Bottle That Came Back"
    meta = msg.blocks[1]["elements"][0]["text"]
    assert meta == f"Story v2 · target 30 s · {version.story.word_count} words · 1,545 tokens"
    assert types[-1] == "actions"
    assert "divider" in types
    body = "\n".join(b["text"]["text"] for b in msg.blocks if b["type"] == "section")
    assert "A bottle refuses to be thrown away." in body
    assert "It starts in a kitchen." in body
    assert "*Scene 1 · 0:00\N{EN DASH}0:06 · 6 s*" in body
    assert "*Scene 3 · 0:14\N{EN DASH}0:30 · 16 s*" in body
    assert "*Visuals:* A summit" in body
    assert "*Voice-over:* Refill. Repeat." in body
    assert msg.text == "Story v2: The Bottle That Came Back"


def test_review_buttons_bind_session_and_version() -> None:
    session = make_session(id="sess_42")
    (msg,) = kit.story_messages(session, make_version(3), state="review")
    (actions,) = actions_blocks(msg)
    assert actions["block_id"] == "review_v3"
    approve, regenerate, versions = actions["elements"]
    assert versions["action_id"] == "stage_versions"  # from v2 on: list, compare, restore
    assert approve["action_id"] == ActionId.APPROVE
    assert approve["style"] == "primary"
    assert approve["text"]["text"] == "Approve"
    assert regenerate["action_id"] == ActionId.REGENERATE
    assert "style" not in regenerate
    for button in (approve, regenerate):
        assert ButtonValue.parse(button["value"]) == ButtonValue(session="sess_42", version=3)


@pytest.mark.parametrize("state", ["approved", "regenerating", "superseded"])
def test_buttons_only_in_review(state: Any) -> None:
    for msg in kit.story_messages(make_session(), make_version(), state=state):
        assert actions_blocks(msg) == []
        assert_within_limits(msg)


def test_approved_story_names_the_approver() -> None:
    (msg,) = kit.story_messages(
        make_session(), make_version(2), state="approved", approved_by="U0BOB"
    )
    last = msg.blocks[-1]
    assert last["type"] == "context"
    assert last["elements"][0]["text"] == "✅ Approved v2 by <@U0BOB>"


def test_approved_story_falls_back_to_the_session_approver() -> None:
    session = make_session(approvals=(approved(Stage.STORY, 2, "U0CAROL"),))
    (msg,) = kit.story_messages(session, make_version(2), state="approved")
    assert msg.blocks[-1]["elements"][0]["text"] == "✅ Approved v2 by <@U0CAROL>"


def test_regenerating_notice_sits_right_after_the_header() -> None:
    (msg,) = kit.story_messages(make_session(), make_version(), state="regenerating")
    assert msg.blocks[0]["type"] == "header"
    assert msg.blocks[1]["type"] == "context"
    assert msg.blocks[1]["elements"][0]["text"] == "🔄 Regenerating story…"


@pytest.mark.parametrize("state", STATES)
def test_huge_story_is_split_within_every_limit(state: Any) -> None:
    version = huge_version()
    messages = kit.story_messages(make_session(), version, state=state, approved_by="U0BOB")
    assert len(messages) > 1
    for msg in messages:
        assert_within_limits(msg)

    first, *rest = messages
    assert (
        f"{version.story.word_count:,} words"
        in first.blocks[1 + (state == "regenerating")]["elements"][0]["text"]
    )
    assert len(first.blocks[0]["text"]["text"]) <= 150
    assert first.blocks[0]["text"]["text"].endswith("…")
    assert any(
        e["text"] == "Script continues below ↓"
        for b in first.blocks
        if b["type"] == "context"
        for e in b["elements"]
    )
    for k, msg in enumerate(rest, start=2):
        assert msg.blocks[0]["elements"][0]["text"] == (
            f"Story v7 (continued, part {k}/{len(messages)})"
        )
        assert actions_blocks(msg) == []
    if state == "review":
        (actions,) = actions_blocks(first)
        assert first.blocks[-1] is actions
        assert actions["block_id"] == "review_v7"
    else:
        assert actions_blocks(first) == []


def test_huge_story_loses_no_text_and_keeps_its_order() -> None:
    version = huge_version()
    messages = kit.story_messages(make_session(), version, state="review")
    rendered = "\n".join(
        b["text"]["text"] for msg in messages for b in msg.blocks if b["type"] == "section"
    )
    flat = "".join(rendered.split())
    story = version.story
    expected = [story.narrative]
    for scene in story.scenes:
        expected += [scene.visuals, scene.voiceover]
    position = 0
    for text in expected:
        found = flat.find("".join(text.split()), position)
        assert found >= position, "story text missing or out of order"
        position = found
    assert flat.count("*Scene") == 60


def test_block_ids_stay_unique_across_all_parts() -> None:
    messages = kit.story_messages(make_session(), huge_version(), state="review")
    ids = [b["block_id"] for msg in messages for b in msg.blocks]
    assert len(ids) == len(set(ids))


def test_story_text_cannot_ping_or_link() -> None:
    scenes = (Scene(number=1, duration_s=5, visuals=EVIL, voiceover=EVIL),)
    version = make_version(title=EVIL, logline=EVIL, narrative=EVIL, scenes=scenes)
    for state in STATES:
        for msg in kit.story_messages(make_session(), version, state=state, approved_by="U0BOB"):
            assert_only_intended_controls(msg, {"<@U0BOB>"})
            assert "&amp;amp;" in msg.blocks[0]["text"]["text"]


# --- session card -----------------------------------------------------------------------------


def card_lines(msg: Rendered) -> list[str]:
    (stages,) = [b for b in msg.blocks if b["type"] == "context"]
    return [e["text"] for e in stages["elements"]]


def test_session_card_headline_and_tone() -> None:
    msg = kit.session_card(make_session(tone="playful", status=Status.GENERATING))
    assert_within_limits(msg)
    headline = msg.blocks[0]["text"]["text"]
    quote = "\N{LEFT DOUBLE QUOTATION MARK}"
    assert headline.startswith(f"🎬 <@U0ALICE> is writing a 30 s story: {quote}eco water bottle")
    assert "Tone: playful" in headline
    assert msg.text.startswith("🎬 <@U0ALICE> is writing a 30 s story")


def test_session_card_quotes_at_most_300_prompt_characters_escaped() -> None:
    msg = kit.session_card(make_session(prompt=EVIL + " " + "x" * 5000, tone=EVIL))
    assert_within_limits(msg)
    assert_only_intended_controls(msg, {f"<@{OWNER}>"})
    assert len(msg.blocks[0]["text"]["text"]) < 800


@pytest.mark.parametrize(
    ("status", "tracker", "status_line"),
    [
        (Status.STARTING, "Story ⏳ · Images · Storyboard · Video", "⏳ Starting…"),
        (Status.GENERATING, "Story ⏳ · Images · Storyboard · Video", "✍️ Writing the story…"),
        (Status.REGENERATING, "Story ⏳ · Images · Storyboard · Video", "✍️ Writing a new"),
        (
            Status.AWAITING_REVIEW,
            "Story ⏳ · Images · Storyboard · Video",
            "👀 Story v2 is awaiting",
        ),
        (Status.FAILED, "Story ⚠️ · Images · Storyboard · Video", "⚠️ The model timed out"),
    ],
)
def test_session_card_tracks_the_story_stage(
    status: Status, tracker: str, status_line: str
) -> None:
    session = make_session(status=status, failure="The model timed out")
    lines = card_lines(kit.session_card(session))
    assert lines[0] == tracker
    assert lines[1].startswith(status_line)


IMAGES, BOARD, VIDEO = Stage.REFERENCE_IMAGE, Stage.STORYBOARD, Stage.VIDEO


@pytest.mark.parametrize(
    ("stage", "status", "tracker", "status_line"),
    [
        (
            IMAGES,
            Status.GENERATING,
            "Story ✅ · Images ⏳ · Storyboard · Video",
            "🎨 Making the reference images…",
        ),
        (
            IMAGES,
            Status.REGENERATING,
            "Story ✅ · Images ⏳ · Storyboard · Video",
            "🎨 Making a new version of the reference images…",
        ),
        (
            IMAGES,
            Status.AWAITING_REVIEW,
            "Story ✅ · Images ⏳ · Storyboard · Video",
            "👀 Reference images v2 are awaiting review in the thread",
        ),
        (
            IMAGES,
            Status.FAILED,
            "Story ✅ · Images ⚠️ · Storyboard · Video",
            "⚠️ The model timed out — Retry is offered in the thread",
        ),
        (
            BOARD,
            Status.GENERATING,
            "Story ✅ · Images ✅ · Storyboard ⏳ · Video",
            "🎬 Drafting the storyboard…",
        ),
        (
            BOARD,
            Status.REGENERATING,
            "Story ✅ · Images ✅ · Storyboard ⏳ · Video",
            "🎬 Drafting a new version of the storyboard…",
        ),
        (
            BOARD,
            Status.AWAITING_REVIEW,
            "Story ✅ · Images ✅ · Storyboard ⏳ · Video",
            "👀 Storyboard v2 is awaiting review in the thread",
        ),
        (
            VIDEO,
            Status.QUEUED,
            "Story ✅ · Images ✅ · Storyboard ✅ · Video (not available yet)",
            "Video isn't available in this version of Storyloop yet — everything approved so far"
            " is collected in the thread.",
        ),
    ],
)
def test_session_card_tracks_the_later_stages(
    stage: Stage, status: Status, tracker: str, status_line: str
) -> None:
    session = make_session(stage=stage, status=status, failure="The model timed out")
    msg = kit.session_card(session)
    assert_within_limits(msg)
    lines = card_lines(msg)
    assert lines[0] == tracker
    assert lines[1] == status_line


def test_story_status_lines_word_for_word() -> None:
    lines = card_lines(kit.session_card(make_session(status=Status.REGENERATING)))
    assert lines[1] == "✍️ Writing a new version of the story…"
    lines = card_lines(kit.session_card(make_session(status=Status.AWAITING_REVIEW)))
    assert lines[1] == "👀 Story v2 is awaiting review in the thread"


def test_session_card_lists_every_approval_with_its_title() -> None:
    session = make_session(
        stage=VIDEO,
        status=Status.QUEUED,
        approvals=(
            approved(Stage.STORY, 1, "U0BOB"),
            approved(IMAGES, 2, "U0CAROL"),
            approved(BOARD, 1, "U0BOB"),
        ),
    )
    msg = kit.session_card(session)
    assert_within_limits(msg)
    assert_only_intended_controls(msg, {f"<@{OWNER}>", "<@U0BOB>", "<@U0CAROL>"})
    assert card_lines(msg)[2] == f"👥 Approves: <@{OWNER}> (who started this session)"
    assert card_lines(msg)[3:] == [
        "Story v1 approved by <@U0BOB>",
        "Reference images v2 approved by <@U0CAROL>",
        "Storyboard v1 approved by <@U0BOB>",
    ]
    assert not any("⏳" in line for line in card_lines(msg)), "no fake progress for video"


def test_session_card_shows_a_malformed_approver_as_text() -> None:
    session = make_session(stage=IMAGES, approvals=(approved(Stage.STORY, 1, "<!channel>"),))
    assert_only_intended_controls(kit.session_card(session), {f"<@{OWNER}>"})


def test_session_card_cost_lines() -> None:
    plain = card_lines(kit.session_card(make_session()))
    assert not any("💵" in line for line in plain), "no cost line when nothing paid is involved"
    session = make_session(stage=IMAGES, status=Status.GENERATING, estimate_usd=0.2)
    assert card_lines(kit.session_card(session))[-1] == "💵 Estimated $0.20 for this generation"
    session = make_session(stage=IMAGES, estimate_usd=0.2, spent_usd=0.17)
    assert card_lines(kit.session_card(session))[-2:] == [
        "💵 Estimated $0.20 for this generation",
        "💵 Spent so far: $0.17",
    ]
    session = make_session(stage=BOARD, spent_usd=0.042)
    assert card_lines(kit.session_card(session))[-1] == "💵 Spent so far: $0.042"


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (0.0, "$0.00"),
        (0.042, "$0.042"),
        (0.0999, "$0.10"),
        (0.1, "$0.10"),
        (0.2, "$0.20"),
        (0.175, "$0.17"),  # the float 0.175 is 0.17499…: shown as stored, not rounded up
        (1.5, "$1.50"),
        (1234.5, "$1,234.50"),
        (-3.0, "$0.00"),
    ],
)
def test_usd(amount: float, shown: str) -> None:
    assert kit.usd(amount) == shown


def test_every_registry_stage_has_card_words() -> None:
    assert {d.stage for d in REGISTRY} <= set(kit.STAGE_DOING)


def test_session_card_with_everything_stays_within_limits() -> None:
    session = make_session(
        prompt=EVIL * 200,
        tone=EVIL * 10,
        stage=BOARD,
        status=Status.FAILED,
        failure=EVIL * 100,
        approvals=(approved(Stage.STORY, 1, "U0BOB"), approved(IMAGES, 3, "U0BOB")),
        estimate_usd=1234.5,
        spent_usd=99.0,
    )
    msg = kit.session_card(session)
    assert_within_limits(msg)
    assert_only_intended_controls(msg, {f"<@{OWNER}>", "<@U0BOB>"})


def test_session_card_escapes_the_failure_reason() -> None:
    msg = kit.session_card(make_session(status=Status.FAILED, failure=EVIL))
    assert_only_intended_controls(msg, {f"<@{OWNER}>"})


def test_session_card_shows_a_malformed_owner_id_as_text() -> None:
    msg = kit.session_card(make_session(owner_id="U1> <!channel"))
    assert_only_intended_controls(msg, set())


# --- placeholders and notices -----------------------------------------------------------------


def test_generating_placeholder_without_progress() -> None:
    msg = kit.generating_placeholder(make_session(), regenerating=False)
    assert_within_limits(msg)
    assert msg.blocks[0]["text"]["text"] == "✍️ Generating your story…"
    assert len(msg.blocks) == 1


def test_regenerating_placeholder_with_live_progress_and_title() -> None:
    msg = kit.generating_placeholder(
        make_session(), regenerating=True, title=EVIL, chars=12_345, elapsed_s=7.6
    )
    assert_within_limits(msg)
    assert_only_intended_controls(msg, set())
    assert msg.blocks[0]["text"]["text"] == "🔄 Regenerating story…"
    assert msg.blocks[-1]["elements"][0]["text"] == "Writing… 12,345 characters so far · 8 s"
    assert any("Working title" in s for s in strings(msg))


def test_story_updated_notice_escapes_and_truncates_the_summary() -> None:
    msg = kit.story_updated_notice(make_version(4, summary=EVIL + " " + "y" * 2000))
    assert_within_limits(msg)
    assert_only_intended_controls(msg, set())
    text = msg.blocks[0]["text"]["text"]
    assert text.startswith("Story updated to v4: ")
    assert text.endswith("…")
    assert len(text) < 600


def test_story_updated_notice_without_summary() -> None:
    assert kit.story_updated_notice(make_version(4)).text == "Story updated to v4"


def test_story_approved_notice_announces_the_images() -> None:
    msg = kit.approved_notice(Stage.STORY, "U0BOB", 3)
    assert_within_limits(msg)
    (block,) = msg.blocks
    assert block["block_id"] == "approved"
    assert block["text"]["text"] == (
        "✅ Story approved (v3 by <@U0BOB>)! Making the reference images…"
    )
    assert_only_intended_controls(msg, {"<@U0BOB>"})


def test_images_approved_notice_announces_the_storyboard() -> None:
    msg = kit.approved_notice(Stage.REFERENCE_IMAGE, "U0BOB", 2)
    assert_within_limits(msg)
    assert msg.text == "✅ Reference images approved (v2 by <@U0BOB>)! Drafting the storyboard…"
    assert len(msg.blocks) == 1


def test_storyboard_approved_notice_says_the_video_is_planned_next() -> None:
    msg = kit.approved_notice(Stage.STORYBOARD, "U0BOB", 1)
    assert_within_limits(msg)
    assert msg.text.startswith("✅ Storyboard approved (v1 by <@U0BOB>)!")
    assert "Planning the video" in msg.text


def test_approved_notice_neutralises_a_forged_user_id() -> None:
    msg = kit.approved_notice(Stage.STORYBOARD, "U1> <!channel", 1)
    assert_only_intended_controls(msg, set())


def test_stage_updated_notice() -> None:
    msg = kit.stage_updated_notice(Stage.REFERENCE_IMAGE, 2, "Hero is older\nnow " + EVIL)
    assert_within_limits(msg)
    assert_only_intended_controls(msg, set())
    assert msg.text.startswith("Reference images updated to v2: Hero is older now &lt;!channel&gt;")
    assert kit.stage_updated_notice(Stage.STORYBOARD, 3, "  ").text == "Storyboard updated to v3"


def test_feedback_reply_addresses_the_authors_once_each() -> None:
    msg = kit.feedback_reply("Got it — funnier it is.", ["U0ALI", "U0BOB", "U0ALI"])
    assert_within_limits(msg)
    assert msg.blocks[0]["text"]["text"] == "Got it — funnier it is."
    assert msg.blocks[-1]["elements"][0]["text"] == "Replying to <@U0ALI>, <@U0BOB>"


def test_feedback_reply_splits_and_caps_a_long_answer() -> None:
    reply = "\n\n".join("paragraph " * 150 for _ in range(20)) + EVIL * 500
    msg = kit.feedback_reply(reply, ["U0ALI"])
    assert_within_limits(msg)
    assert_only_intended_controls(msg, {"<@U0ALI>"})
    sections = [b for b in msg.blocks if b["type"] == "section"]
    assert len(sections) > 1
    assert sections[-1]["text"]["text"].endswith("…")


def test_feedback_reply_neutralises_forged_author_ids() -> None:
    msg = kit.feedback_reply(EVIL, ["<!channel>", "U0ALI"])
    assert_only_intended_controls(msg, {"<@U0ALI>"})


def test_failure_message_offers_retry_bound_to_the_session() -> None:
    msg = kit.failure_message(make_session(id="sess_9"), EVIL, retry_version=0)
    assert_within_limits(msg)
    assert_only_intended_controls(msg, set())
    assert msg.blocks[0]["text"]["text"].startswith("⚠️ ")
    (actions,) = actions_blocks(msg)
    (retry,) = actions["elements"]
    assert retry["action_id"] == ActionId.RETRY
    assert ButtonValue.parse(retry["value"]) == ButtonValue(session="sess_9", version=0)


def test_failure_final_has_no_button() -> None:
    msg = kit.failure_final("The story could not be written.")
    assert_within_limits(msg)
    assert actions_blocks(msg) == []
    assert msg.text == "⚠️ The story could not be written."


def test_ephemeral_escapes_unless_trusted() -> None:
    plain = kit.ephemeral(EVIL)
    assert_only_intended_controls(plain, set())
    trusted = kit.ephemeral("Only <@U0ALICE> can approve.", trusted=True)
    assert trusted.blocks[0]["text"]["text"] == "Only <@U0ALICE> can approve."
    assert_within_limits(kit.ephemeral("x" * 10_000))


# --- modal ------------------------------------------------------------------------------------


def test_start_modal_structure() -> None:
    view = kit.start_modal(channel_id="C0TALES", prompt="  a heist in space  ")
    assert view["type"] == "modal"
    assert view["callback_id"] == START_MODAL_CALLBACK
    assert view["private_metadata"] == "C0TALES"
    assert view["title"]["text"] == "New story"
    assert len(view["title"]["text"]) <= 24
    assert view["submit"]["text"] == "Start"
    assert view["close"]["text"] == "Cancel"
    inputs = {b["block_id"]: b for b in view["blocks"]}
    assert list(inputs)[:3] == [PROMPT_BLOCK, DURATION_BLOCK, TONE_BLOCK]
    assert CHANNEL_BLOCK not in inputs, "opened in a channel: no channel picker"

    prompt = inputs[PROMPT_BLOCK]["element"]
    assert prompt["action_id"] == PROMPT_ACTION
    assert prompt["type"] == "plain_text_input"
    assert prompt["multiline"] is True
    assert prompt["max_length"] == 2000
    assert prompt["initial_value"] == "a heist in space"

    duration = inputs[DURATION_BLOCK]["element"]
    assert duration["action_id"] == DURATION_ACTION
    assert duration["type"] == "static_select"
    assert [o["value"] for o in duration["options"]] == ["15", "30", "45", "60", "90", "120", "180"]
    assert [o["text"]["text"] for o in duration["options"]][:2] == ["15 s", "30 s"]
    assert duration["initial_option"] == {"text": duration["options"][1]["text"], "value": "30"}

    tone = inputs[TONE_BLOCK]
    assert tone["optional"] is True
    assert tone["element"]["action_id"] == TONE_ACTION
    assert tone["element"]["max_length"] == 100
    assert len(view["blocks"]) <= 100


def test_start_modal_outside_a_channel_asks_for_one_first() -> None:
    view = kit.start_modal(channel_id=None)
    assert view["private_metadata"] == ""
    first = view["blocks"][0]
    assert first["block_id"] == CHANNEL_BLOCK
    picker = first["element"]
    assert picker["type"] == "conversations_select" and picker["action_id"] == CHANNEL_ACTION
    assert picker["response_url_enabled"] is True
    assert picker["filter"]["include"] == ["public", "private"]


def test_start_modal_asks_who_approves_starting_at_the_workspace_default() -> None:
    default = ApprovalPolicy(rule=Rule.QUORUM, needed=3)
    view = kit.start_modal(channel_id="C0TALES", default_policy=default)
    inputs = {b["block_id"]: b for b in view["blocks"]}
    rule = inputs[RULE_BLOCK]["element"]
    assert rule["action_id"] == RULE_ACTION
    assert [o["value"] for o in rule["options"]] == ["owner", "anyone", "named", "quorum"]
    assert rule["initial_option"]["value"] == "quorum"
    assert inputs[QUORUM_BLOCK]["element"]["initial_value"] == "3"
    assert inputs[APPROVERS_BLOCK]["element"]["type"] == "multi_users_select"
    group = inputs[GROUP_BLOCK]["element"]
    assert group["type"] == "external_select" and group["action_id"] == GROUP_ACTION
    assert all(inputs[b]["optional"] for b in (APPROVERS_BLOCK, GROUP_BLOCK, QUORUM_BLOCK))
    assert len(view["blocks"]) <= 100


def test_start_modal_without_prompt_has_no_initial_value() -> None:
    view = kit.start_modal(channel_id="C0TALES")
    assert "initial_value" not in view["blocks"][0]["element"]


def test_start_modal_caps_an_over_long_prompt() -> None:
    view = kit.start_modal(channel_id="C0TALES", prompt="p" * 5000)
    assert len(view["blocks"][0]["element"]["initial_value"]) == 2000


def test_a_complete_sessions_card_links_every_approved_artifact() -> None:
    msg = kit.session_card(
        make_session(stage=Stage.COMPLETE, status=Status.DONE),
        links=[
            ("Story v1", "https://x.slack.com/archives/C1/p1?a=1&b=2"),
            ("Video v2 <!channel>", "https://x.slack.com/archives/C1/p2"),
            ("Storyboard v1", "javascript:alert(1)"),
        ],
    )
    assert_within_limits(msg)
    line = card_lines(msg)[-1]
    assert "<https://x.slack.com/archives/C1/p1?a=1&amp;b=2|Story v1>" in line
    assert "&lt;!channel&gt;" in line and "<!channel>" not in line
    assert "javascript" not in line and "Storyboard v1" in line
