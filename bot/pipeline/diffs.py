"""What changed between two versions of a stage, as data a person can read.

Pure: two versions in, a :class:`Diff` out — parts (the title, the narrative, a scene, an
image, a scene's shots or clips) that were added, removed or changed, each change a label and
word-level runs (kept, removed, added). Rendering (escaping, Slack's ``~struck~`` and
``*bold*``, clipping to a modal's limits) is the Slack layer's job
(``bot/slack/version_blocks.py``); nothing here knows about Slack.

Story scenes are matched by number, images by index, storyboard shots by scene and then by
their position within it (shot numbers shift when a shot is added), video clips by scene.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from bot.pipeline.artifacts import (
    ClipResult,
    ImageArtifact,
    ImageOutcome,
    ImageSetVersion,
    Shot,
    StoryboardVersion,
    VideoPlan,
    VideoVersion,
)
from bot.pipeline.models import Scene, Stage, StoryVersion

RunKind = Literal["same", "removed", "added"]
PartStatus = Literal["added", "removed", "changed"]

# A word diff is quadratic in the worst case; past this many words per side the rest is shown
# as one replaced run (no LLM text we keep is anywhere near it).
MAX_DIFF_WORDS = 4000
_TOKEN = re.compile(r"\S+\s*|\s+")


@dataclass(frozen=True)
class Run:
    """A stretch of text that both versions share, or that only the old / new one has."""

    kind: RunKind
    text: str


@dataclass(frozen=True)
class Change:
    """One field of a part, e.g. a scene's visuals: its label and the runs of text."""

    label: str
    runs: tuple[Run, ...]


@dataclass(frozen=True)
class Part:
    """A piece of the version that was added, removed or changed ("Scene 3", "Image 2 · Hero")."""

    title: str
    status: PartStatus
    changes: tuple[Change, ...] = ()


@dataclass(frozen=True)
class Diff:
    """Version ``old`` → version ``new`` of ``stage``: the parts that differ, and the names of
    those that are the same."""

    stage: Stage
    old: int
    new: int
    parts: tuple[Part, ...]
    unchanged: tuple[str, ...] = field(default=())

    @property
    def same(self) -> bool:
        return not self.parts


# --- words --------------------------------------------------------------------------------------


def word_diff(old: str, new: str) -> tuple[Run, ...]:
    """The runs that turn ``old`` into ``new``, compared word by word (whitespace doesn't count
    as a change; the new text's spacing is kept)."""
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    a_rest, b_rest = a[MAX_DIFF_WORDS:], b[MAX_DIFF_WORDS:]
    a, b = a[:MAX_DIFF_WORDS], b[:MAX_DIFF_WORDS]
    matcher = difflib.SequenceMatcher(
        a=[t.strip() for t in a], b=[t.strip() for t in b], autojunk=False
    )
    runs: list[Run] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            runs.append(Run("same", "".join(b[j1:j2])))
            continue
        if i2 > i1:
            runs.append(Run("removed", "".join(a[i1:i2])))
        if j2 > j1:
            runs.append(Run("added", "".join(b[j1:j2])))
    if a_rest != b_rest:
        runs += [Run("removed", "".join(a_rest)), Run("added", "".join(b_rest))]
    elif b_rest:
        runs.append(Run("same", "".join(b_rest)))
    return _merged(runs)


def _merged(runs: Sequence[Run]) -> tuple[Run, ...]:
    """Adjacent runs of one kind as one; blank changed runs dropped (whitespace isn't news)."""
    out: list[Run] = []
    for run in runs:
        if not run.text or (run.kind != "same" and not run.text.strip()):
            continue
        if out and out[-1].kind == run.kind:
            out[-1] = Run(run.kind, out[-1].text + run.text)
        else:
            out.append(run)
    return tuple(out)


def _text(label: str, old: str, new: str) -> Change | None:
    """A text field's change, word by word; None when the words are the same."""
    if old.split() == new.split():
        return None
    return Change(label, word_diff(old, new))


def _value(label: str, old: str, new: str) -> Change | None:
    """A short value's change ("8 s" → "10 s"): the old one struck, the new one added."""
    if old == new:
        return None
    return Change(label, _merged([Run("removed", old), Run("added", new)]))


def _only(label: str, text: str, kind: RunKind) -> Change:
    """A field of a part that only one side has: all of it added (or removed)."""
    return Change(label, _merged([Run(kind, text)]))


def _part(title: str, changes: Sequence[Change | None]) -> Part | None:
    found = tuple(c for c in changes if c is not None)
    return Part(title, "changed", found) if found else None


def _whole(title: str, fields: Sequence[tuple[str, str]], status: PartStatus) -> Part:
    kind: RunKind = "added" if status == "added" else "removed"
    return Part(title, status, tuple(_only(label, text, kind) for label, text in fields if text))


def _build(stage: Stage, old: int, new: int, found: Sequence[tuple[str, Part | None]]) -> Diff:
    parts = tuple(p for _title, p in found if p is not None)
    unchanged = tuple(title for title, p in found if p is None)
    return Diff(stage, old, new, parts, unchanged)


def _seconds(value: float) -> str:
    return f"{value:g} s"


# --- the story ----------------------------------------------------------------------------------


def _scene_fields(scene: Scene) -> list[tuple[str, str]]:
    return [
        ("Duration", _seconds(scene.duration_s)),
        ("Visuals", scene.visuals),
        ("Voice-over", scene.voiceover),
    ]


def story_diff(a: StoryVersion, b: StoryVersion) -> Diff:
    """Title, logline, narrative word by word; scenes matched by number."""
    old, new = a.story, b.story
    found: list[tuple[str, Part | None]] = [
        ("Title", _part("Title", [_text("Title", old.title, new.title)])),
        ("Logline", _part("Logline", [_text("Logline", old.logline, new.logline)])),
        ("Narrative", _part("Narrative", [_text("Narrative", old.narrative, new.narrative)])),
    ]
    length = _value("Length", _seconds(old.total_duration_s), _seconds(new.total_duration_s))
    found.append(("Length", _part("Length", [length])))
    before = {s.number: s for s in old.scenes}
    after = {s.number: s for s in new.scenes}
    for number in sorted(before.keys() | after.keys()):
        title = f"Scene {number}"
        was, now = before.get(number), after.get(number)
        if was is None and now is not None:
            found.append((title, _whole(title, _scene_fields(now), "added")))
        elif now is None and was is not None:
            found.append((title, _whole(title, _scene_fields(was), "removed")))
        elif was is not None and now is not None:
            changes = [
                _value("Duration", _seconds(was.duration_s), _seconds(now.duration_s)),
                _text("Visuals", was.visuals, now.visuals),
                _text("Voice-over", was.voiceover, now.voiceover),
            ]
            found.append((title, _part(title, changes)))
    return _build(Stage.STORY, a.number, b.number, found)


# --- reference images ---------------------------------------------------------------------------


def _outcome(image: ImageArtifact) -> str:
    if image.outcome is ImageOutcome.MADE:
        return f"made in v{image.made_in}"
    return f"not made ({image.failure or 'no reason given'})"


def _image_fields(image: ImageArtifact) -> list[tuple[str, str]]:
    spec = image.spec
    return [
        ("Name", spec.name),
        ("Kind", str(spec.kind)),
        ("Role", spec.role),
        ("Prompt", spec.prompt),
        ("Image", _outcome(image)),
    ]


def images_diff(a: ImageSetVersion, b: ImageSetVersion) -> Diff:
    """Each image by its index: its name, kind, role and prompt, and whether it was made anew
    (an image kept from an earlier version keeps its file)."""
    before = {i.spec.index: i for i in a.images}
    after = {i.spec.index: i for i in b.images}
    found: list[tuple[str, Part | None]] = []
    for index in sorted(before.keys() | after.keys()):
        was, now = before.get(index), after.get(index)
        shown = now or was
        assert shown is not None
        title = f"Image {index} · {shown.spec.name}"
        if was is None and now is not None:
            found.append((title, _whole(title, _image_fields(now), "added")))
        elif now is None and was is not None:
            found.append((title, _whole(title, _image_fields(was), "removed")))
        elif was is not None and now is not None:
            same_file = was.file_id == now.file_id and was.outcome is now.outcome
            changes = [
                _text("Name", was.spec.name, now.spec.name),
                _value("Kind", str(was.spec.kind), str(now.spec.kind)),
                _text("Role", was.spec.role, now.spec.role),
                _text("Prompt", was.spec.prompt, now.spec.prompt),
                None if same_file else _value("Image", _outcome(was), _outcome(now)),
            ]
            found.append((title, _part(title, changes)))
    return _build(Stage.REFERENCE_IMAGE, a.number, b.number, found)


# --- the storyboard -----------------------------------------------------------------------------


def _shot_fields(shot: Shot, position: int) -> list[tuple[str, str]]:
    prefix = f"Shot {position} · "
    return [
        (prefix + "Duration", _seconds(shot.duration_s)),
        (prefix + "Framing", f"{shot.shot_type}, {shot.camera}"),
        (prefix + "Action", shot.action),
        (prefix + "Audio", shot.audio),
        (prefix + "Uses", ", ".join(shot.references)),
    ]


def _shot_changes(was: Shot, now: Shot, position: int) -> list[Change | None]:
    prefix = f"Shot {position} · "
    return [
        _value(prefix + "Duration", _seconds(was.duration_s), _seconds(now.duration_s)),
        _text(
            prefix + "Framing", f"{was.shot_type}, {was.camera}", f"{now.shot_type}, {now.camera}"
        ),
        _text(prefix + "Action", was.action, now.action),
        _text(prefix + "Audio", was.audio, now.audio),
        _value(prefix + "Uses", ", ".join(was.references), ", ".join(now.references)),
    ]


def storyboard_diff(a: StoryboardVersion, b: StoryboardVersion) -> Diff:
    """The shots per scene: each scene's shots matched by their position within it."""
    before = _by_scene(a.shots)
    after = _by_scene(b.shots)
    found: list[tuple[str, Part | None]] = [
        (
            "Length",
            _part(
                "Length",
                [
                    _value("Length", _seconds(a.total_duration_s), _seconds(b.total_duration_s)),
                    _value("Shots", str(len(a.shots)), str(len(b.shots))),
                ],
            ),
        )
    ]
    for scene in sorted(before.keys() | after.keys()):
        title = f"Scene {scene}"
        was, now = before.get(scene, []), after.get(scene, [])
        if not was or not now:
            status: PartStatus = "added" if now else "removed"
            shots = now or was
            fields = [f for k, shot in enumerate(shots, start=1) for f in _shot_fields(shot, k)]
            found.append((title, _whole(title, fields, status)))
            continue
        changes: list[Change | None] = []
        for k in range(1, max(len(was), len(now)) + 1):
            old_shot = was[k - 1] if k <= len(was) else None
            new_shot = now[k - 1] if k <= len(now) else None
            if old_shot is not None and new_shot is not None:
                changes += _shot_changes(old_shot, new_shot, k)
            elif new_shot is not None:
                changes += [_only(lb, tx, "added") for lb, tx in _shot_fields(new_shot, k) if tx]
            elif old_shot is not None:
                changes += [_only(lb, tx, "removed") for lb, tx in _shot_fields(old_shot, k) if tx]
        found.append((title, _part(title, changes)))
    return _build(Stage.STORYBOARD, a.number, b.number, found)


def _by_scene(shots: Sequence[Shot]) -> dict[int, list[Shot]]:
    grouped: dict[int, list[Shot]] = {}
    for shot in sorted(shots, key=lambda s: s.number):
        grouped.setdefault(shot.scene, []).append(shot)
    return grouped


# --- the video ----------------------------------------------------------------------------------


def _clips_of(version: VideoVersion) -> dict[int, list[ClipResult]]:
    grouped: dict[int, list[ClipResult]] = {}
    for clip in version.clips:
        grouped.setdefault(clip.scene, []).append(clip)
    return grouped


def _prompts(plan: VideoPlan | None) -> dict[int, str]:
    """Each scene's prompt as the plan asked the provider for it (clips of a scene share it)."""
    out: dict[int, str] = {}
    for clip in plan.clips if plan is not None else ():
        out.setdefault(clip.scene, clip.prompt)
    return out


def _made(clips: Sequence[ClipResult]) -> str:
    versions = sorted({c.made_in for c in clips})
    return "rendered in " + ", ".join(f"v{v}" for v in versions)


def video_diff(
    a: VideoVersion,
    b: VideoVersion,
    plan_a: VideoPlan | None = None,
    plan_b: VideoPlan | None = None,
) -> Diff:
    """Per scene: whether its clips were rendered anew, their length, and the prompt the plan
    gave the provider; then the whole video's length and voice-over."""
    before, after = _clips_of(a), _clips_of(b)
    prompts_a, prompts_b = _prompts(plan_a), _prompts(plan_b)
    found: list[tuple[str, Part | None]] = [
        (
            "Video",
            _part(
                "Video",
                [
                    _value("Length", _seconds(a.duration_s), _seconds(b.duration_s)),
                    _value("Voice-over", _yes(a.voiceover), _yes(b.voiceover)),
                    None if a.file_id == b.file_id else _value("File", "the old MP4", "a new MP4"),
                ],
            ),
        )
    ]
    for scene in sorted(before.keys() | after.keys()):
        title = f"Scene {scene}"
        was, now = before.get(scene, []), after.get(scene, [])
        if not was or not now:
            status: PartStatus = "added" if now else "removed"
            clips = now or was
            prompt = (prompts_b if now else prompts_a).get(scene, "")
            fields = [
                ("Clips", f"{len(clips)} · {_seconds(sum(c.seconds for c in clips))}"),
                ("Made", _made(clips)),
                ("Prompt", prompt),
            ]
            found.append((title, _whole(title, fields, status)))
            continue
        same_files = [c.file_id for c in was] == [c.file_id for c in now]
        changes = [
            _value(
                "Clips",
                f"{len(was)} · {_seconds(sum(c.seconds for c in was))}",
                f"{len(now)} · {_seconds(sum(c.seconds for c in now))}",
            ),
            None if same_files else _value("Made", _made(was), _made(now)),
        ]
        if scene in prompts_a and scene in prompts_b:
            changes.append(_text("Prompt", prompts_a[scene], prompts_b[scene]))
        found.append((title, _part(title, changes)))
    return _build(Stage.VIDEO, a.number, b.number, found)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def diff_versions(
    a: object, b: object, plan_a: VideoPlan | None = None, plan_b: VideoPlan | None = None
) -> Diff | None:
    """The diff of two versions of one stage, whichever stage; None if they aren't of one."""
    if isinstance(a, StoryVersion) and isinstance(b, StoryVersion):
        return story_diff(a, b)
    if isinstance(a, ImageSetVersion) and isinstance(b, ImageSetVersion):
        return images_diff(a, b)
    if isinstance(a, StoryboardVersion) and isinstance(b, StoryboardVersion):
        return storyboard_diff(a, b)
    if isinstance(a, VideoVersion) and isinstance(b, VideoVersion):
        return video_diff(a, b, plan_a, plan_b)
    return None
