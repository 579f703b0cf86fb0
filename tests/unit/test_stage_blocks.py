"""Block Kit builders of the later stages: image sets and storyboards fit Slack's limits at any
size, LLM-written text can't ping or link, buttons decode to the stage, version and item."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.pipeline.artifacts import (
    ImageArtifact,
    ImageKind,
    ImageOutcome,
    ImageSetVersion,
    ImageSpec,
    Shot,
    StoryboardVersion,
)
from bot.pipeline.models import Session, Stage
from bot.slack import blocks as kit
from bot.slack import stage_blocks
from bot.slack.actions import ActionId, StageButtonValue, parse_button
from bot.slack.blocks import Rendered, ReviewState
from bot.slack.mrkdwn import escape
from tests.unit.test_blocks import (
    EVIL,
    actions_blocks,
    approved,
    assert_only_intended_controls,
    assert_within_limits,
    make_session,
)

IMAGES, BOARD = Stage.REFERENCE_IMAGE, Stage.STORYBOARD
STATES: tuple[ReviewState, ...] = ("review", "approved", "superseded")
HOSTILE = "<!channel> <!here> <@U123> &amp;"


def images_session(**changes: Any) -> Session:
    fields: dict[str, Any] = {"id": "sess_7", "stage": IMAGES, "spent_usd": 0.17}
    return make_session(**{**fields, **changes})


def spec(index: int = 1, name: str = "Hero", **changes: Any) -> ImageSpec:
    fields: dict[str, Any] = {
        "kind": ImageKind.CHARACTER,
        "role": "The bottle, our narrator",
        "prompt": "A matte green bottle on a kitchen counter, morning light",
    }
    return ImageSpec(index=index, name=name, **{**fields, **changes})


def image(s: ImageSpec, *, failure: str | None = None, made_in: int = 2) -> ImageArtifact:
    if failure is not None:
        return ImageArtifact(spec=s, outcome=ImageOutcome.FAILED, made_in=made_in, failure=failure)
    return ImageArtifact(spec=s, outcome=ImageOutcome.MADE, file_id="F1", made_in=made_in)


def image_set(*images: ImageArtifact, number: int = 2, **changes: Any) -> ImageSetVersion:
    if not images:
        images = (image(spec(1)), image(spec(2, "Kitchen", kind=ImageKind.LOCATION)))
    fields: dict[str, Any] = {"cost_usd": 0.08, "created_at": 3.0}
    return ImageSetVersion(number=number, images=images, **{**fields, **changes})


def shot(number: int, **changes: Any) -> Shot:
    fields: dict[str, Any] = {
        "scene": 1,
        "duration_s": 4,
        "shot_type": "Wide",
        "camera": "slow push-in",
        "action": "The bottle wakes up on the counter.",
        "audio": "VO: Meet Bo.",
        "references": ("Hero", "Kitchen"),
    }
    return Shot(number=number, **{**fields, **changes})


def board(*shots: Shot, number: int = 1) -> StoryboardVersion:
    if not shots:
        shots = (shot(1), shot(2, scene=2, duration_s=6, audio="", references=()))
    return StoryboardVersion(number=number, shots=shots, created_at=3.0)


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


# --- progress ---------------------------------------------------------------------------------


def test_images_progress_words() -> None:
    s = images_session()
    planning = kit.images_progress(s, 2, done=0, total=0, planning=True)
    assert planning.text == "🎨 Planning the reference images (v2)…"
    making = kit.images_progress(s, 2, done=1, total=4)
    assert making.blocks[0]["text"]["text"] == "🎨 Making reference images (v2) · image 2 of 4…"
    assert kit.images_progress(s, 2, done=4, total=4).text.endswith("image 4 of 4…")
    assert kit.images_progress(s, 3, done=0, total=0).text == "🎨 Making reference images (v3)…"
    for msg in (planning, making):
        assert_within_limits(msg)


def test_progress_done_words() -> None:
    done = kit.images_progress_done(2, made=3, total=4)
    assert done.text == "🎨 Reference images v2: 3 of 4 made — review below."
    assert kit.images_progress_done(2, made=0, total=0).text == (
        "🎨 Reference images v2 — review below."
    )
    assert kit.storyboard_progress(make_session(), 3).text == "🎬 Drafting the storyboard (v3)…"
    assert kit.storyboard_progress_done(3).text == "🎬 Storyboard v3 drafted — review below."
    assert_within_limits(done)


# --- files ------------------------------------------------------------------------------------


def test_image_file_title_is_plain_and_bounded() -> None:
    assert kit.image_file_title(spec()) == "1 · Hero (character)"
    title = kit.image_file_title(spec(3, "A <b>\nbottle</b> " * 100, kind=ImageKind.PROP))
    assert len(title) <= 250
    assert title.startswith("3 · A <b> bottle</b>"), "file titles are plain text: not escaped"
    assert "\n" not in title


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Hero", "v2-1-hero.png"),
        ("  Café Ñandú — the Bottle!  ", "v2-1-cafe-nandu-the-bottle.png"),
        ("🍼🍼", "v2-1-image.png"),
        ("../../etc/passwd", "v2-1-etc-passwd.png"),
    ],
)
def test_image_filename(name: str, expected: str) -> None:
    assert kit.image_filename(spec(1, name), 2) == expected


@settings(max_examples=200, deadline=None)
@given(name=st.text(max_size=500), index=st.integers(1, 10**6), version=st.integers(1, 10**4))
def test_image_filename_is_always_a_short_ascii_png(name: str, index: int, version: int) -> None:
    filename = kit.image_filename(spec(index, name), version)
    assert re.fullmatch(r"v\d+-\d+-[a-z0-9]+(-[a-z0-9]+)*\.png", filename)
    assert len(filename) <= 80


# --- image set review -------------------------------------------------------------------------


def test_images_review_layout() -> None:
    msg = kit.images_review(images_session(), image_set(), state="review")
    assert_within_limits(msg)
    assert_accessories_within_limits(msg)
    assert msg.blocks[0] == {
        "type": "header",
        "block_id": "v2_title",
        "text": {"type": "plain_text", "text": "Reference images v2", "emoji": True},
    }
    assert (
        context_texts(msg)[0] == "2 images · $0.080 for this version · $0.17 spent in this session"
    )
    first, second = sections(msg)
    assert first["text"]["text"] == (
        "*1 · Hero* (character) — The bottle, our narrator\n"
        "_A matte green bottle on a kitchen counter, morning light_"
    )
    assert second["text"]["text"].startswith("*2 · Kitchen* (location) — ")
    assert context_texts(msg)[-1] == (
        "Reply in the thread to say what to change — name the image (e.g. “image 2”)."
    )
    assert msg.text == "Reference images v2"


def test_images_review_buttons_bind_stage_version_and_item() -> None:
    msg = kit.images_review(images_session(), image_set(number=3), state="review")
    for k, block in enumerate(sections(msg), start=1):
        redo = block["accessory"]
        assert redo["action_id"] == ActionId.REDO
        assert redo["text"]["text"] == "Redo"
        assert decoded(redo) == StageButtonValue(session="sess_7", stage=IMAGES, version=3, item=k)
    (actions,) = actions_blocks(msg)
    assert actions["block_id"] == "review_v3"
    approve, regenerate, versions = actions["elements"]
    assert versions["action_id"] == "stage_versions"
    assert (approve["action_id"], approve["text"]["text"]) == (ActionId.APPROVE, "Approve")
    assert approve["style"] == "primary"
    assert (regenerate["action_id"], regenerate["text"]["text"]) == (
        ActionId.REGENERATE,
        "Regenerate all",
    )
    assert "style" not in regenerate
    for element in (approve, regenerate):
        assert decoded(element) == StageButtonValue(session="sess_7", stage=IMAGES, version=3)


def test_a_failed_image_offers_retry_and_blocks_approval() -> None:
    version = image_set(image(spec(1)), image(spec(2, "Summit"), failure="Blocked by moderation"))
    msg = kit.images_review(images_session(), version, state="review")
    assert_within_limits(msg)
    ok, failed = sections(msg)
    assert ok["accessory"]["text"]["text"] == "Redo"
    assert failed["accessory"]["text"]["text"] == "Retry"
    assert failed["accessory"]["action_id"] == ActionId.REDO
    assert decoded(failed["accessory"]).item == 2
    assert failed["text"]["text"].endswith("\n⚠️ Couldn't be made: Blocked by moderation")
    (actions,) = actions_blocks(msg)
    assert [e["action_id"] for e in actions["elements"]][:1] == [ActionId.REGENERATE]


def test_images_review_meta_for_a_redo_and_a_single_image() -> None:
    msg = kit.images_review(
        images_session(spent_usd=1.5),
        image_set(image(spec(4)), cost_usd=0.04, redo_of=4),
        state="review",
    )
    assert context_texts(msg)[0] == (
        "1 image · $0.040 for this version · $1.50 spent in this session · redo of image 4"
    )


def test_a_repeated_image_index_still_gives_unique_block_ids() -> None:
    version = image_set(image(spec(1)), image(spec(1, "Twin")))
    assert_within_limits(kit.images_review(images_session(), version, state="review"))


def test_approved_image_set_names_the_approver_and_has_no_buttons() -> None:
    session = images_session(approvals=(approved(IMAGES, 2, "U0CAROL"),))
    for approver, shown in ((None, "<@U0CAROL>"), ("U0BOB", "<@U0BOB>")):
        msg = kit.images_review(session, image_set(), state="approved", approver=approver)
        assert_within_limits(msg)
        assert actions_blocks(msg) == []
        assert all("accessory" not in b for b in sections(msg))
        assert context_texts(msg)[-1] == f"✅ Approved v2 by {shown}"


def test_superseded_image_set_has_no_buttons() -> None:
    msg = kit.images_review(images_session(), image_set(), state="superseded")
    assert actions_blocks(msg) == []
    assert all("accessory" not in b for b in sections(msg))
    assert context_texts(msg)[-1] == "⏭️ Superseded by a newer version"


def hostile_spec(index: int) -> ImageSpec:
    return spec(index, HOSTILE + EVIL, role=HOSTILE + EVIL, prompt=HOSTILE + EVIL)


@pytest.mark.parametrize("state", STATES)
def test_image_text_cannot_ping_or_link(state: ReviewState) -> None:
    version = image_set(image(hostile_spec(1)), image(hostile_spec(2), failure=HOSTILE + EVIL))
    msg = kit.images_review(images_session(), version, state=state, approver="U0BOB")
    assert_only_intended_controls(msg, {"<@U0BOB>"})
    assert "&amp;amp;" in sections(msg)[0]["text"]["text"]


def maximal_set(n: int = 10, text: str = "&" * 3000) -> ImageSetVersion:
    specs = [spec(i, text, role=text, prompt=text) for i in range(1, n + 1)]
    return image_set(*(image(s, failure=text) for s in specs), cost_usd=1e6, redo_of=10)


@pytest.mark.parametrize("state", STATES)
def test_ten_images_of_maximal_text_fit_one_message(state: ReviewState) -> None:
    session = images_session(spent_usd=1e9, approvals=(approved(IMAGES, 2, "U0BOB"),))
    msg = kit.images_review(session, maximal_set(), state=state)
    assert_within_limits(msg)
    assert_accessories_within_limits(msg)
    assert len(sections(msg)) == 10


def test_more_images_than_settings_allow_are_listed_up_to_ten() -> None:
    msg = kit.images_review(images_session(), maximal_set(60), state="review")
    assert_within_limits(msg)
    assert len(sections(msg)) == 10
    assert "…and 50 more images not listed" in context_texts(msg)


@settings(max_examples=50, deadline=None)
@given(texts=st.lists(st.text(max_size=2000), min_size=1, max_size=10))
def test_any_image_text_fits_and_stays_escaped(texts: list[str]) -> None:
    specs = [spec(i, t, role=t[::-1], prompt=t) for i, t in enumerate(texts, start=1)]
    version = image_set(*(image(s, failure=s.name if s.index % 2 else None) for s in specs))
    msg = kit.images_review(images_session(), version, state="review")
    assert_within_limits(msg)
    assert_only_intended_controls(msg, set())


# --- storyboard -------------------------------------------------------------------------------


def test_storyboard_layout_in_review() -> None:
    session = make_session(id="sess_3", stage=BOARD)
    (msg,) = kit.storyboard_messages(session, board(number=2), state="review")
    assert_within_limits(msg)
    assert msg.blocks[0]["text"]["text"] == "Storyboard v2"
    assert context_texts(msg)[:2] == [
        "2 shots · 10 s (target 30 s)",
        "Also attached as storyboard-v2.md",
    ]
    first, second = sections(msg)
    assert first["text"]["text"] == (
        "*Shot 1 · Scene 1 · 0:00\N{EN DASH}0:04 · 4 s · Wide, slow push-in*\n"
        "The bottle wakes up on the counter.\n*Audio:* VO: Meet Bo.\n*Uses:* Hero, Kitchen"
    )
    assert second["text"]["text"].startswith("*Shot 2 · Scene 2 · 0:04\N{EN DASH}0:10 · 6 s")
    assert second["text"]["text"].endswith("*Audio:* —\n*Uses:* —")
    (actions,) = actions_blocks(msg)
    assert actions["block_id"] == "review_v2"
    approve, regenerate, versions = actions["elements"]
    assert versions["action_id"] == "stage_versions"
    assert (approve["action_id"], approve["text"]["text"]) == (ActionId.APPROVE, "Approve")
    assert approve["style"] == "primary"
    assert (regenerate["action_id"], regenerate["text"]["text"]) == (
        ActionId.REGENERATE,
        "Regenerate",
    )
    for element in (approve, regenerate):
        assert decoded(element) == StageButtonValue(session="sess_3", stage=BOARD, version=2)
    assert msg.blocks[-1]["type"] == "context", "the reply hint closes the message"


@pytest.mark.parametrize(
    ("state", "footer"),
    [("approved", "✅ Approved v1 by <@U0BOB>"), ("superseded", "⏭️ Superseded by a newer version")],
)
def test_storyboard_states_without_buttons(state: ReviewState, footer: str) -> None:
    session = make_session(stage=Stage.VIDEO, approvals=(approved(BOARD, 1, "U0BOB"),))
    (msg,) = kit.storyboard_messages(session, board(), state=state)
    assert actions_blocks(msg) == []
    assert context_texts(msg)[-1] == footer


def long_field(i: int, tag: str) -> str:
    return " ".join(f"{tag}{i}x{j}" for j in range(1000 // (len(tag) + 6)))[:1000]


def huge_board() -> StoryboardVersion:
    shots = tuple(
        shot(
            i,
            scene=i // 10 + 1,
            duration_s=1 + i % 3,
            shot_type=long_field(i, "t") + HOSTILE,
            camera=long_field(i, "c"),
            action=long_field(i, "a") + HOSTILE,
            audio=long_field(i, "o"),
            references=tuple(long_field(i, f"r{k}") for k in range(3)),
        )
        for i in range(1, 201)
    )
    return board(*shots, number=4)


@pytest.mark.parametrize("state", STATES)
def test_a_200_shot_storyboard_is_split_within_every_limit(state: ReviewState) -> None:
    session = make_session(stage=BOARD, approvals=(approved(BOARD, 4, "U0BOB"),))
    messages = kit.storyboard_messages(session, huge_board(), state=state)
    assert len(messages) > 5
    first, *rest = messages
    for msg in messages:
        assert_within_limits(msg)
        assert_only_intended_controls(msg, {"<@U0BOB>"})
    assert "Also attached as storyboard-v4.md" in context_texts(first)
    assert "Storyboard continues below ↓" in context_texts(first)
    for k, msg in enumerate(rest, start=2):
        assert context_texts(msg)[0] == f"Storyboard v4 (continued, part {k}/{len(messages)})"
    ids = [b["block_id"] for msg in messages for b in msg.blocks]
    assert len(ids) == len(set(ids))
    *earlier, last = messages
    assert all(actions_blocks(msg) == [] for msg in earlier), "buttons only at the bottom"
    if state == "review":
        (actions,) = actions_blocks(last)
        assert actions["block_id"] == "review_v4"
    else:
        assert actions_blocks(last) == []
        assert context_texts(last)[-1].startswith(("✅ Approved v4", "⏭️ Superseded"))


def test_a_200_shot_storyboard_loses_no_text() -> None:
    version = huge_board()
    messages = kit.storyboard_messages(make_session(stage=BOARD), version, state="review")
    body = "".join(
        "".join(b["text"]["text"].split()) for msg in messages for b in msg.blocks if "text" in b
    )
    assert body.count("*Shot") == 200
    for s in version.shots:
        action = "".join(escape(s.action).split())
        assert body.count(action) == 1, f"shot {s.number}'s action must appear exactly once"
        for text in (s.camera, s.audio, *s.references):
            assert "".join(escape(text).split()) in body


@settings(max_examples=40, deadline=None)
@given(
    fields=st.lists(
        st.tuples(st.text(max_size=1500), st.text(max_size=1500), st.integers(1, 600)),
        min_size=1,
        max_size=30,
    )
)
def test_any_storyboard_fits_and_stays_escaped(fields: list[tuple[str, str, int]]) -> None:
    shots = tuple(
        shot(i, action=a, audio=b, shot_type=b[:50], camera=a[:50], duration_s=d)
        for i, (a, b, d) in enumerate(fields, start=1)
    )
    for msg in kit.storyboard_messages(make_session(), board(*shots), state="review"):
        assert_within_limits(msg)
        assert_only_intended_controls(msg, set())


def test_storyboard_markdown_table() -> None:
    version = board(
        shot(1, action="Bo | the bottle\nwakes up", audio="VO: a\\|b", references=("Hero",)),
        shot(2, scene=2, duration_s=6, action=HOSTILE, audio="", references=()),
        number=3,
    )
    text = kit.storyboard_markdown(make_session(), "The Bottle\nThat Came Back", version)
    lines = text.splitlines()
    assert lines[0] == "# The Bottle That Came Back — Storyboard v3"
    assert "Target: 30 s · 2 shots · 10 s in total" in lines
    header = "| # | Scene | Start | Dur | Shot | Camera | What we see | Audio | Uses |"
    rows = lines[lines.index(header) + 2 :]
    assert rows == [
        "| 1 | 1 | 0:00 | 4 s | Wide | slow push-in | Bo \\| the bottle<br>wakes up "
        "| VO: a\\\\\\|b | Hero |",
        f"| 2 | 2 | 0:04 | 6 s | Wide | slow push-in | {HOSTILE} |  |  |",
    ]
    assert text.endswith("\n")
    assert kit.storyboard_filename(version) == "storyboard-v3.md"


def test_storyboard_markdown_rows_keep_their_column_count() -> None:
    hostile = "a|b\\|c\r\nd\\\ne|"
    version = board(*(shot(i, action=hostile, audio=hostile, camera=hostile) for i in (1, 2)))
    text = kit.storyboard_markdown(make_session(), "T", version)
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    for row in rows:
        unescaped_pipes = re.findall(r"(?<!\\)(?:\\\\)*\|", row)
        assert len(unescaped_pipes) == 10, row


# --- collected, failure -----------------------------------------------------------------------

PERMALINK = "https://acme.slack.com/archives/C0TALES/p1700000000123456?thread_ts=1.2&cid=C0"


def test_collected_links_and_labels() -> None:
    msg = kit.collected(
        make_session(),
        [
            ("Story v1", PERMALINK),
            ("Reference images v2 — 4 files", None),
            ("Storyboard v1 — storyboard-v1.md", "http://example.com/x"),
        ],
    )
    assert_within_limits(msg)
    (body,) = sections(msg)
    escaped = PERMALINK.replace("&", "&amp;")
    assert body["text"]["text"] == (
        "📦 Everything approved so far, in one place:\n"
        f"• Story v1 — <{escaped}|open>\n"
        "• Reference images v2 — 4 files\n"
        "• Storyboard v1 — storyboard-v1.md — <http://example.com/x|open>"
    )
    assert context_texts(msg) == []  # every stage is built: nothing to call unavailable


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "ftp://example.com/x",
        "https://x.com/a|<!channel>",
        "https://x.com/a><!here",
        "https://x.com/<@U123>",
        "https://x.com/a b",
        "https://x.com/a\n<!channel>",
        "",
        "https://" + "x" * 5000,
    ],
)
def test_collected_refuses_urls_that_could_smuggle_controls(url: str) -> None:
    msg = kit.collected(make_session(), [(HOSTILE, url)])
    assert_within_limits(msg)
    assert_only_intended_controls(msg, set())
    assert sections(msg)[0]["text"]["text"].endswith(
        "\n• &lt;!channel&gt; &lt;!here&gt; &lt;@U123&gt; &amp;amp;"
    )


def test_collected_with_very_many_links_stays_within_limits() -> None:
    links = [(EVIL * 20, PERMALINK + "x" * 800) for _ in range(200)]
    msg = kit.collected(make_session(), links)
    assert_within_limits(msg)
    text = "\n".join(b["text"]["text"] for b in sections(msg))
    assert re.search(r"…and \d+ more$", text)
    for control in re.findall(r"<[^<>]*>", text):
        assert control.startswith("<https://acme.slack.com/") and control.endswith("|open>")


def test_stage_failure_offers_a_stage_retry() -> None:
    msg = kit.stage_failure(make_session(id="sess_9"), EVIL, stage=IMAGES, retry_version=2)
    assert_within_limits(msg)
    assert_only_intended_controls(msg, set())
    assert msg.blocks[0]["text"]["text"].startswith("⚠️ &lt;!channel&gt;")
    (actions,) = actions_blocks(msg)
    (retry,) = actions["elements"]
    assert retry["action_id"] == ActionId.RETRY
    assert decoded(retry) == StageButtonValue(session="sess_9", stage=IMAGES, version=2)


def test_blocks_re_exports_the_stage_builders() -> None:
    for name in stage_blocks.__all__:
        assert getattr(kit, name) is getattr(stage_blocks, name)
        assert name in kit.__all__
