"""LLM drafts → stories: durations fit the target, nothing the LLM wrote is dropped,
scenes renumbered."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.pipeline.drafts import (
    DURATION_TOLERANCE,
    MAX_SCENES,
    FeedbackAnswer,
    SceneDraft,
    StoryDraft,
    fit_durations,
    to_story,
)


def draft(
    *,
    title: str = "The Bottle",
    logline: str = "A bottle comes back.",
    narrative: str = "It starts in a kitchen.",
    scenes: list[SceneDraft] | None = None,
) -> StoryDraft:
    if scenes is None:
        scenes = [SceneDraft(duration_s=10, visuals=f"shot {i}", voiceover="") for i in range(3)]
    return StoryDraft(title=title, logline=logline, narrative=narrative, scenes=scenes)


# --- fit_durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("durations", "target"),
    [([10, 10, 10], 30), ([10, 10, 12], 30), ([9, 9, 9], 30), ([11, 11, 11], 30), ([5], 5)],
)
def test_within_ten_percent_is_left_untouched(durations: list[int], target: int) -> None:
    assert fit_durations(durations, target) == durations


@pytest.mark.parametrize(
    ("durations", "target"),
    [([1, 1, 1], 30), ([100, 100], 10), ([10, 10, 14], 30), ([7, 3, 70, 2], 60), ([1], 180)],
)
def test_outside_tolerance_is_rescaled_to_the_exact_target(
    durations: list[int], target: int
) -> None:
    fitted = fit_durations(durations, target)
    assert sum(fitted) == target
    assert len(fitted) == len(durations)


def test_rescaling_keeps_proportions_roughly() -> None:
    assert fit_durations([1, 1, 2], 40) == [10, 10, 20]


def test_zero_and_negative_scenes_get_at_least_one_second() -> None:
    fitted = fit_durations([0, -3, 50], 20)
    assert min(fitted) >= 1
    assert sum(fitted) == 20


def test_more_scenes_than_seconds_gives_one_second_each() -> None:
    assert fit_durations([3] * 12, 5) == [1, 1, 1, 1, 1]


@settings(database=None, max_examples=400)
@given(
    st.lists(st.integers(min_value=-10, max_value=600), min_size=1, max_size=40),
    st.integers(min_value=5, max_value=180),
)
def test_any_durations_fit_the_target_within_tolerance(durations: list[int], target: int) -> None:
    fitted = fit_durations(durations, target)
    assert fitted
    assert all(d >= 1 for d in fitted)
    assert abs(sum(fitted) - target) <= DURATION_TOLERANCE * target


# --- to_story ----------------------------------------------------------------------------------


def test_nothing_the_llm_wrote_is_dropped() -> None:
    huge = draft(
        title="T" * 5000,
        logline="L" * 5000,
        narrative="N" * 60_000,
        scenes=[SceneDraft(duration_s=4, visuals=f"V{i}", voiceover=f"O{i}") for i in range(40)],
    )
    story = to_story(huge, 180)
    assert story.title == "T" * 5000 and story.logline == "L" * 5000
    assert story.narrative == "N" * 60_000
    assert len(story.scenes) == MAX_SCENES
    shown = " ".join(s.visuals + " " + s.voiceover for s in story.scenes)
    assert all(f"V{i}" in shown and f"O{i}" in shown for i in range(40)), "merged, not cut"


def test_a_nine_thousand_character_narrative_is_kept_whole() -> None:
    narrative = ("A bottle rolls across the desk. " * 300)[:9000]
    assert to_story(draft(narrative=narrative), 30).narrative == narrative.strip()


def test_text_is_kept_but_trimmed() -> None:
    story = to_story(draft(title="  The Bottle \n", narrative="x" * 6000), 30)
    assert story.title == "The Bottle"
    assert story.narrative == "x" * 6000


def test_scenes_are_renumbered_from_one() -> None:
    scenes = [SceneDraft(duration_s=6, visuals=f"shot {i}", voiceover="") for i in range(5)]
    story = to_story(draft(scenes=scenes), 30)
    assert [s.number for s in story.scenes] == [1, 2, 3, 4, 5]
    assert [s.visuals for s in story.scenes] == [f"shot {i}" for i in range(5)]


def test_story_duration_matches_the_target_after_rescaling() -> None:
    scenes = [SceneDraft(duration_s=60, visuals="v", voiceover="") for _ in range(4)]
    assert to_story(draft(scenes=scenes), 45).total_duration_s == 45


def test_more_scenes_than_seconds_keeps_a_valid_story() -> None:
    scenes = [SceneDraft(duration_s=2, visuals=f"s{i}", voiceover="") for i in range(12)]
    story = to_story(draft(scenes=scenes), 5)
    assert story.total_duration_s == 5
    assert [s.number for s in story.scenes] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("title", ["", "   ", "\n\t"])
def test_blank_title_becomes_untitled(title: str) -> None:
    assert to_story(draft(title=title), 30).title == "Untitled story"


def test_invisible_title_becomes_untitled() -> None:
    assert to_story(draft(title="\u200b\u200b"), 30).title == "Untitled story"


def test_story_draft_needs_at_least_one_scene() -> None:
    with pytest.raises(ValidationError):
        StoryDraft(title="t", logline="l", narrative="n", scenes=[])


def test_feedback_answer_defaults_and_ignores_extra_keys() -> None:
    answer = FeedbackAnswer.model_validate({"reply": "Sure.", "mood": "happy"})
    assert answer == FeedbackAnswer(reply="Sure.", planned_changes=[], wants_regenerate=False)
