"""Image and storyboard drafts → specs and shots: valid, bounded and true to their constraints."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.pipeline.artifacts import ImageKind, ImageSpec
from bot.pipeline.drafts import DURATION_TOLERANCE
from bot.pipeline.models import Scene, Story
from bot.pipeline.stage_drafts import (
    MAX_IMAGE_NAME,
    MAX_IMAGE_PROMPT,
    MAX_IMAGE_ROLE,
    MAX_SHOT_LABEL,
    MAX_SHOT_TEXT,
    MAX_SHOTS,
    STAGE_SCHEMA_NAMES,
    ImageDraft,
    ImagePlanDraft,
    ImageRedoDraft,
    ShotDraft,
    StoryboardDraft,
    image_kind,
    to_image_specs,
    to_redo_spec,
    to_shots,
)

STORY = Story(
    title="The Bottle That Came Back",
    logline="A bottle refuses to be thrown away.",
    narrative="It starts in a kitchen and ends on a mountain.",
    scenes=(
        Scene(number=1, duration_s=10, visuals="A kitchen at dawn", voiceover="Meet Bo."),
        Scene(number=2, duration_s=10, visuals="A busy street", voiceover=""),
        Scene(number=3, duration_s=10, visuals="A mountain top", voiceover="Bo is home."),
    ),
)
NAMES = ("Bo the bottle", "Kitchen", "Style frame")


def image(
    name: str = "Bo", kind: str = "character", role: str = "hero", prompt: str = "p"
) -> ImageDraft:
    return ImageDraft(name=name, kind=kind, role=role, prompt=prompt)


def plan(*images: ImageDraft) -> ImagePlanDraft:
    return ImagePlanDraft(images=list(images))


def shot(
    scene: int = 1,
    duration_s: int = 5,
    action: str = "a",
    references: list[str] | None = None,
    **extra: str,
) -> ShotDraft:
    return ShotDraft(
        scene=scene,
        duration_s=duration_s,
        shot_type=extra.get("shot_type", "wide"),
        camera=extra.get("camera", "static"),
        action=action,
        audio=extra.get("audio", ""),
        references=references or [],
    )


def board(*shots: ShotDraft) -> StoryboardDraft:
    return StoryboardDraft(shots=list(shots))


# --- schemas -----------------------------------------------------------------------------------


def test_schema_names() -> None:
    assert dict(STAGE_SCHEMA_NAMES) == {
        ImagePlanDraft: "image_plan",
        ImageRedoDraft: "image_redo",
        StoryboardDraft: "storyboard",
    }
    for model in STAGE_SCHEMA_NAMES:
        assert model.model_json_schema()["type"] == "object"


def test_drafts_ignore_extra_keys_and_have_defaults() -> None:
    parsed = ImagePlanDraft.model_validate(
        {"images": [{"name": "Bo", "kind": "hero", "role": "r", "prompt": "p", "x": 1}], "y": 2}
    )
    assert parsed.summary_of_changes == ""
    board_ = StoryboardDraft.model_validate(
        {
            "shots": [
                {"scene": 1, "duration_s": 3, "shot_type": "wide", "camera": "s", "action": "a"}
            ],
            "mood": "x",
        }
    )
    assert board_.shots[0].audio == ""
    assert board_.shots[0].references == []
    redo = ImageRedoDraft.model_validate({"name": "n", "kind": "k", "role": "r", "prompt": "p"})
    assert redo.summary_of_changes == ""


def test_plans_and_storyboards_need_at_least_one_item() -> None:
    with pytest.raises(ValidationError):
        ImagePlanDraft(images=[])
    with pytest.raises(ValidationError):
        StoryboardDraft(shots=[])


# --- kinds -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("character", ImageKind.CHARACTER),
        ("  Characters ", ImageKind.CHARACTER),
        ("LOCATION", ImageKind.LOCATION),
        ("setting", ImageKind.LOCATION),
        ("prop", ImageKind.PROP),
        ("product", ImageKind.PROP),
        ("style", ImageKind.STYLE),
        ("Style_Frame", ImageKind.STYLE),
        ("style-frame", ImageKind.STYLE),
        ("vehicle", ImageKind.PROP),
        ("", ImageKind.PROP),
        ("\u200bstyle", ImageKind.STYLE),
    ],
)
def test_kinds_are_mapped_and_unknown_ones_are_props(raw: str, kind: ImageKind) -> None:
    assert image_kind(raw) is kind


# --- to_image_specs ----------------------------------------------------------------------------


def test_specs_keep_the_llm_order_and_are_indexed_from_one() -> None:
    specs = to_image_specs(
        plan(image("Bo"), image("Kitchen", "location"), image("Look", "style")), max_images=4
    )
    assert [(s.index, s.name, s.kind) for s in specs] == [
        (1, "Bo", ImageKind.CHARACTER),
        (2, "Kitchen", ImageKind.LOCATION),
        (3, "Look", ImageKind.STYLE),
    ]


def test_specs_are_capped_at_max_images() -> None:
    specs = to_image_specs(plan(*(image(f"n{i}") for i in range(9))), max_images=4)
    assert [s.name for s in specs] == ["n0", "n1", "n2", "n3"]


def test_only_the_first_style_frame_is_kept_and_extra_ones_do_not_count() -> None:
    specs = to_image_specs(
        plan(image("Look A", "style"), image("Look B", "Style"), image("Bo"), image("Kitchen")),
        max_images=3,
    )
    assert [s.name for s in specs] == ["Look A", "Bo", "Kitchen"]
    assert [s.index for s in specs] == [1, 2, 3]


def test_empty_names_get_a_numbered_name_and_duplicates_are_made_unique() -> None:
    specs = to_image_specs(
        plan(image("Bo"), image("  "), image("bo"), image(" BO "), image("\u200b")), max_images=10
    )
    names = [s.name for s in specs]
    assert names == ["Bo", "Image 2", "bo (2)", "BO (3)", "Image 5"]
    assert len({n.casefold() for n in names}) == len(names)


def test_oversized_text_is_clipped_and_names_and_roles_are_one_line() -> None:
    (spec,) = to_image_specs(
        plan(image("N\nA" * 500, role="R\n" * 900, prompt="P" * 90_000)), max_images=4
    )
    assert len(spec.name) <= MAX_IMAGE_NAME
    assert len(spec.role) <= MAX_IMAGE_ROLE
    assert len(spec.prompt) <= MAX_IMAGE_PROMPT
    assert spec.prompt.endswith("…")
    assert "\n" not in spec.name
    assert "\n" not in spec.role


def test_unique_suffix_fits_in_the_name_limit() -> None:
    long = "x" * 500
    specs = to_image_specs(plan(image(long), image(long), image(long)), max_images=4)
    assert all(len(s.name) <= MAX_IMAGE_NAME for s in specs)
    assert len({s.name for s in specs}) == 3


def test_an_empty_prompt_falls_back_to_name_and_role() -> None:
    (spec,) = to_image_specs(plan(image("Bo", role="the hero", prompt=" \u200b ")), max_images=1)
    assert spec.prompt == "Bo. the hero"


def test_max_images_below_one_still_gives_one_image() -> None:
    assert len(to_image_specs(plan(image("a"), image("b")), max_images=0)) == 1


_texts = st.text(max_size=300)


@settings(database=None, max_examples=200)
@given(
    st.lists(
        st.builds(
            ImageDraft,
            name=_texts,
            kind=st.sampled_from(["character", "location", "prop", "style", "Style", "other", ""]),
            role=_texts,
            prompt=_texts,
        ),
        min_size=1,
        max_size=20,
    ),
    st.integers(min_value=1, max_value=10),
)
def test_any_plan_gives_a_valid_set(images: list[ImageDraft], max_images: int) -> None:
    specs = to_image_specs(ImagePlanDraft(images=images), max_images=max_images)
    assert 1 <= len(specs) <= max_images
    assert [s.index for s in specs] == list(range(1, len(specs) + 1))
    assert sum(s.kind is ImageKind.STYLE for s in specs) <= 1
    assert len({s.name.casefold() for s in specs}) == len(specs)
    assert all(s.name and s.prompt for s in specs)
    assert all(len(s.name) <= MAX_IMAGE_NAME for s in specs)
    assert all(len(s.role) <= MAX_IMAGE_ROLE for s in specs)
    assert all(len(s.prompt) <= MAX_IMAGE_PROMPT for s in specs)


# --- to_redo_spec ------------------------------------------------------------------------------


def redo(name: str = "Bo", kind: str = "character", prompt: str = "new prompt") -> ImageRedoDraft:
    return ImageRedoDraft(name=name, kind=kind, role="the hero", prompt=prompt)


def test_redo_spec_keeps_the_index_and_cleans_the_text() -> None:
    spec = to_redo_spec(redo(name="  Bo \n", prompt="P" * 9000), index=3)
    assert (spec.index, spec.name, spec.kind) == (3, "Bo", ImageKind.CHARACTER)
    assert len(spec.prompt) <= MAX_IMAGE_PROMPT


def test_redo_spec_with_an_empty_name_is_named_after_its_index() -> None:
    assert to_redo_spec(redo(name=""), index=2).name == "Image 2"


def test_redo_spec_stays_unique_and_single_style_among_the_others() -> None:
    others = [
        ImageSpec(index=1, name="Bo", kind=ImageKind.CHARACTER, role="r", prompt="p"),
        ImageSpec(index=2, name="Look", kind=ImageKind.STYLE, role="r", prompt="p"),
        ImageSpec(index=3, name="Old", kind=ImageKind.PROP, role="r", prompt="p"),
    ]
    spec = to_redo_spec(redo(name="bo", kind="style"), index=3, others=others)
    assert spec.name == "bo (2)"
    assert spec.kind is ImageKind.PROP
    # The image being redone doesn't clash with itself.
    same = to_redo_spec(redo(name="Look", kind="style"), index=2, others=others)
    assert (same.name, same.kind) == ("Look", ImageKind.STYLE)


# --- to_shots ----------------------------------------------------------------------------------


def test_shots_are_sorted_by_scene_keeping_the_llm_order_within_a_scene() -> None:
    shots = to_shots(
        board(
            shot(2, action="2a"), shot(1, action="1a"), shot(2, action="2b"), shot(1, action="1b")
        ),
        story=STORY,
        image_names=NAMES,
        target_s=20,
    )
    assert [s.action for s in shots] == ["1a", "1b", "2a", "2b"]
    assert [s.number for s in shots] == [1, 2, 3, 4]


def test_scene_numbers_are_clamped_to_the_story() -> None:
    shots = to_shots(
        board(shot(0), shot(-4), shot(99), shot(3)), story=STORY, image_names=(), target_s=20
    )
    assert [s.scene for s in shots] == [1, 1, 3, 3]


def test_durations_within_tolerance_are_kept() -> None:
    shots = to_shots(
        board(shot(1, 10), shot(2, 10), shot(3, 12)), story=STORY, image_names=(), target_s=30
    )
    assert [s.duration_s for s in shots] == [10, 10, 12]


def test_durations_outside_tolerance_are_rescaled_to_the_target() -> None:
    shots = to_shots(
        board(shot(1, 0), shot(2, -5), shot(3, 100)), story=STORY, image_names=(), target_s=30
    )
    assert sum(s.duration_s for s in shots) == 30
    assert min(s.duration_s for s in shots) >= 1


def test_references_keep_known_names_only_with_their_exact_spelling() -> None:
    (only,) = to_shots(
        board(shot(references=["bo THE bottle", "Nope", "kitchen", " Bo  the bottle ", "KITCHEN"])),
        story=STORY,
        image_names=NAMES,
        target_s=5,
    )
    assert only.references == ("Bo the bottle", "Kitchen")


def test_no_images_means_no_references() -> None:
    (only,) = to_shots(board(shot(references=["Bo", ""])), story=STORY, image_names=(), target_s=5)
    assert only.references == ()


def test_oversized_shot_text_is_clipped() -> None:
    (only,) = to_shots(
        board(
            shot(
                action="A" * 9000,
                audio="O" * 9000,
                shot_type="wide\n" * 100,
                camera="C" * 900,
            )
        ),
        story=STORY,
        image_names=(),
        target_s=5,
    )
    assert len(only.action) <= MAX_SHOT_TEXT
    assert len(only.audio) <= MAX_SHOT_TEXT
    assert len(only.shot_type) <= MAX_SHOT_LABEL
    assert "\n" not in only.shot_type
    assert len(only.camera) <= MAX_SHOT_LABEL


def test_shots_are_capped() -> None:
    shots = to_shots(
        board(*(shot(1, 1) for _ in range(500))), story=STORY, image_names=(), target_s=180
    )
    assert len(shots) == MAX_SHOTS


def test_more_shots_than_seconds_still_fit_the_target() -> None:
    shots = to_shots(
        board(*(shot(1, 2) for _ in range(12))), story=STORY, image_names=(), target_s=5
    )
    assert sum(s.duration_s for s in shots) == 5
    assert [s.number for s in shots] == [1, 2, 3, 4, 5]


def test_a_story_without_scenes_and_a_zero_target_still_give_valid_shots() -> None:
    empty = STORY.model_copy(update={"scenes": ()})
    (only,) = to_shots(board(shot(4, 0)), story=empty, image_names=(), target_s=0)
    assert (only.scene, only.duration_s) == (1, 1)


@settings(database=None, max_examples=300)
@given(
    st.lists(
        st.builds(
            ShotDraft,
            scene=st.integers(min_value=-5, max_value=50),
            duration_s=st.integers(min_value=-100, max_value=10**12),
            shot_type=st.text(max_size=50),
            camera=st.text(max_size=50),
            action=st.text(max_size=50),
            audio=st.text(max_size=50),
            references=st.lists(
                st.sampled_from([*NAMES, "bo THE BOTTLE", "unknown", "", "style  frame"]),
                max_size=8,
            ),
        ),
        min_size=1,
        max_size=150,
    ),
    st.integers(min_value=5, max_value=180),
)
def test_any_storyboard_is_valid_and_fits_the_target(shots: list[ShotDraft], target: int) -> None:
    result = to_shots(StoryboardDraft(shots=shots), story=STORY, image_names=NAMES, target_s=target)
    assert 1 <= len(result) <= MAX_SHOTS
    assert [s.number for s in result] == list(range(1, len(result) + 1))
    assert [s.scene for s in result] == sorted(s.scene for s in result)
    assert all(1 <= s.scene <= len(STORY.scenes) for s in result)
    assert all(s.duration_s >= 1 for s in result)
    assert abs(sum(s.duration_s for s in result) - target) <= DURATION_TOLERANCE * target
    for s in result:
        assert set(s.references) <= set(NAMES)
        assert len(set(s.references)) == len(s.references)
