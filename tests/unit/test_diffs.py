"""What changed between two versions: word runs, and each stage's parts matched sensibly."""

from __future__ import annotations

from bot.pipeline.artifacts import (
    ClipPlan,
    ClipResult,
    ImageArtifact,
    ImageKind,
    ImageOutcome,
    ImageSetVersion,
    ImageSpec,
    Shot,
    StoryboardVersion,
    VideoPlan,
    VideoVersion,
)
from bot.pipeline.diffs import (
    MAX_DIFF_WORDS,
    Diff,
    Run,
    diff_versions,
    images_diff,
    story_diff,
    storyboard_diff,
    video_diff,
    word_diff,
)
from bot.pipeline.models import Scene, Stage, Story, StoryVersion, Usage


def text_of(runs: tuple[Run, ...], *kinds: str) -> str:
    return "".join(r.text for r in runs if r.kind in kinds)


def part(diff: Diff, title: str):  # type: ignore[no-untyped-def]
    return next(p for p in diff.parts if p.title == title)


# --- words ----------------------------------------------------------------------------------


def test_word_diff_keeps_shared_words_and_marks_the_rest() -> None:
    runs = word_diff("The quick brown fox jumps.", "The slow brown fox jumps.")
    assert runs == (
        Run("same", "The "),
        Run("removed", "quick "),
        Run("added", "slow "),
        Run("same", "brown fox jumps."),
    )
    # Reading only the old (or new) side gives back that text exactly.
    assert text_of(runs, "same", "removed") == "The quick brown fox jumps."
    assert text_of(runs, "same", "added") == "The slow brown fox jumps."


def test_word_diff_of_equal_text_is_one_run_and_whitespace_is_not_a_change() -> None:
    assert word_diff("a b  c", "a b c") == (Run("same", "a b c"),)
    assert word_diff("", "") == ()
    assert word_diff("", "new words") == (Run("added", "new words"),)
    assert word_diff("old words", "") == (Run("removed", "old words"),)


def test_word_diff_of_huge_texts_stays_bounded_and_complete() -> None:
    old = " ".join(f"w{i}" for i in range(MAX_DIFF_WORDS + 500))
    new = old.replace("w10 ", "ten ").replace(f"w{MAX_DIFF_WORDS + 100} ", "tail ")
    runs = word_diff(old, new)
    assert text_of(runs, "same", "added") == new
    assert text_of(runs, "same", "removed").split() == old.split()
    assert Run("added", "ten ") in runs


# --- the story --------------------------------------------------------------------------------


def story(n: int, *, title: str = "Bo", narrative: str = "It opens at dawn.", scenes=None):  # type: ignore[no-untyped-def]
    scenes = scenes or [(1, 8, "wide", "Meet Bo."), (2, 8, "close", "Bo waits.")]
    return StoryVersion(
        number=n,
        story=Story(
            title=title,
            logline=f"A bottle story (draft {n})",
            narrative=narrative,
            scenes=tuple(
                Scene(number=k, duration_s=d, visuals=v, voiceover=vo) for k, d, v, vo in scenes
            ),
        ),
        usage=Usage(),
        created_at=1.0,
    )


def test_story_diff_by_field_and_scene_number() -> None:
    a = story(1)
    b = story(
        3,
        narrative="It opens at night.",
        scenes=[(1, 10, "wide", "Meet Bo."), (3, 6, "far", "Bo leaves.")],
    )
    diff = story_diff(a, b)
    assert (diff.stage, diff.old, diff.new) == (Stage.STORY, 1, 3)
    assert "Title" in diff.unchanged
    logline = part(diff, "Logline").changes[0]
    assert text_of(logline.runs, "removed") == "1)" and text_of(logline.runs, "added") == "3)"
    narrative = part(diff, "Narrative").changes[0]
    assert (
        text_of(narrative.runs, "removed") == "dawn."
        and text_of(narrative.runs, "added") == "night."
    )
    scene1 = part(diff, "Scene 1")
    assert scene1.status == "changed" and [c.label for c in scene1.changes] == ["Duration"]
    assert scene1.changes[0].runs == (Run("removed", "8 s"), Run("added", "10 s"))
    assert part(diff, "Scene 2").status == "removed"
    added = part(diff, "Scene 3")
    assert added.status == "added"
    assert [c.label for c in added.changes] == ["Duration", "Visuals", "Voice-over"]
    assert all(r.kind == "added" for c in added.changes for r in c.runs)
    assert "Length" in diff.unchanged  # 8 + 8 s before, 10 + 6 s after


def test_identical_versions_have_no_parts() -> None:
    diff = story_diff(story(1), story(1))
    assert diff.same and diff.parts == ()
    assert diff.unchanged[:3] == ("Title", "Logline", "Narrative")
    assert "Scene 2" in diff.unchanged


# --- images -----------------------------------------------------------------------------------


def image(
    index: int, name: str, prompt: str, *, file_id: str | None, made_in: int
) -> ImageArtifact:
    spec = ImageSpec(index=index, name=name, kind=ImageKind.CHARACTER, role="hero", prompt=prompt)
    outcome = ImageOutcome.MADE if file_id else ImageOutcome.FAILED
    return ImageArtifact(
        spec=spec,
        outcome=outcome,
        file_id=file_id,
        made_in=made_in,
        failure=None if file_id else "Blocked",
    )


def image_set(n: int, *images: ImageArtifact) -> ImageSetVersion:
    return ImageSetVersion(number=n, images=images, created_at=1.0)


def test_images_diff_per_index_prompt_and_file() -> None:
    a = image_set(
        1,
        image(1, "Hero", "a green bottle", file_id="F1", made_in=1),
        image(2, "Kitchen", "a sunny kitchen", file_id="F2", made_in=1),
        image(3, "Dog", "a small dog", file_id="F3", made_in=1),
    )
    b = image_set(
        2,
        image(1, "Hero", "a green bottle", file_id="F1", made_in=1),  # kept as it was
        image(2, "Kitchen", "a bright sunny kitchen", file_id="F9", made_in=2),
        image(4, "Lid", "a lid", file_id=None, made_in=2),
    )
    diff = images_diff(a, b)
    assert "Image 1 · Hero" in diff.unchanged
    kitchen = part(diff, "Image 2 · Kitchen")
    assert [c.label for c in kitchen.changes] == ["Prompt", "Image"]
    assert text_of(kitchen.changes[0].runs, "added") == "bright "
    assert text_of(kitchen.changes[1].runs, "added") == "made in v2"
    assert part(diff, "Image 3 · Dog").status == "removed"
    lid = part(diff, "Image 4 · Lid")
    assert lid.status == "added" and "not made (Blocked)" in text_of(lid.changes[-1].runs, "added")


# --- storyboard -------------------------------------------------------------------------------


def shot(number: int, scene: int, action: str, *, duration: int = 4) -> Shot:
    return Shot(
        number=number,
        scene=scene,
        duration_s=duration,
        shot_type="Wide",
        camera="static",
        action=action,
        audio="",
        references=("Hero",),
    )


def test_storyboard_diff_matches_shots_by_position_within_their_scene() -> None:
    a = StoryboardVersion(
        number=1,
        shots=(shot(1, 1, "Bo wakes"), shot(2, 2, "Bo waits"), shot(3, 2, "Bo smiles")),
        created_at=1.0,
    )
    # A shot added to scene 1 renumbers every later shot; scene 2 itself is unchanged.
    b = StoryboardVersion(
        number=2,
        shots=(
            shot(1, 1, "Bo wakes"),
            shot(2, 1, "Bo stretches"),
            shot(3, 2, "Bo waits"),
            shot(4, 2, "Bo smiles"),
        ),
        created_at=1.0,
    )
    diff = storyboard_diff(a, b)
    assert "Scene 2" in diff.unchanged
    scene1 = part(diff, "Scene 1")
    assert scene1.status == "changed"
    assert {c.label for c in scene1.changes} >= {"Shot 2 · Action", "Shot 2 · Duration"}
    assert all(r.kind == "added" for c in scene1.changes for r in c.runs)
    assert part(diff, "Length").changes[0].runs == (Run("removed", "12 s"), Run("added", "16 s"))


# --- video ------------------------------------------------------------------------------------


def clip(index: int, scene: int, *, made_in: int, file_id: str) -> ClipResult:
    return ClipResult(index=index, scene=scene, file_id=file_id, seconds=8, made_in=made_in)


def plan(n: int, prompts: dict[int, str]) -> VideoPlan:
    clips = tuple(
        ClipPlan(index=k, scene=scene, seconds=8, scene_s=8, prompt=text)
        for k, (scene, text) in enumerate(sorted(prompts.items()), start=1)
    )
    return VideoPlan(
        number=n,
        clips=clips,
        model="m",
        size="320x180",
        voiceover=True,
        estimate_usd=1.0,
        created_at=1.0,
    )


def test_video_diff_per_scene_made_again_and_prompt() -> None:
    a = VideoVersion(
        number=1,
        plan=1,
        clips=(clip(1, 1, made_in=1, file_id="C1"), clip(2, 2, made_in=1, file_id="C2")),
        file_id="V1",
        duration_s=16.0,
        created_at=1.0,
    )
    b = VideoVersion(
        number=2,
        plan=2,
        clips=(clip(1, 1, made_in=1, file_id="C1"), clip(2, 2, made_in=2, file_id="C9")),
        file_id="V2",
        duration_s=16.0,
        created_at=1.0,
    )
    diff = video_diff(
        a, b, plan(1, {1: "dawn", 2: "a dog runs"}), plan(2, {1: "dawn", 2: "a dog sleeps"})
    )
    assert "Scene 1" in diff.unchanged
    scene2 = part(diff, "Scene 2")
    labels = [c.label for c in scene2.changes]
    assert labels == ["Made", "Prompt"]
    assert text_of(scene2.changes[0].runs, "added") == "rendered in v2"
    assert text_of(scene2.changes[1].runs, "added") == "sleeps"
    assert [c.label for c in part(diff, "Video").changes] == ["File"]


def test_diff_versions_dispatches_by_stage_and_refuses_mixed_pairs() -> None:
    assert diff_versions(story(1), story(2)) is not None
    assert diff_versions(story(1), image_set(1)) is None
