"""The video plan: which clips to ask the provider for, and what that will cost — decided
before anything is spent, so a person can confirm it.

Pure: the approved story, storyboard and image set in, a ``VideoPlan`` out. One clip per
scene at the shortest length the provider supports that covers the scene (a scene longer than
the longest clip gets several); the finished video uses each clip for its scene's duration.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from bot.pipeline.artifacts import ClipPlan, ImageSetVersion, StoryboardVersion, VideoPlan
from bot.pipeline.models import Story

PROMPT_CHARS = 2000
SPEECH_CHARS = 4096


def clip_lengths(scene_s: int, supported: Sequence[int]) -> list[int]:
    """The clip lengths that cover one scene: the shortest supported length that is long
    enough, or as many of the longest as needed (the last one the shortest that covers the
    rest)."""
    lengths = sorted(set(supported)) or [scene_s]
    longest = lengths[-1]
    out: list[int] = []
    left = max(1, scene_s)
    while left > longest:
        out.append(longest)
        left -= longest
    out.append(next(n for n in lengths if n >= left))
    return out


def _prompt(scene: int, board: StoryboardVersion, story: Story, style: str | None) -> str:
    shots = [s for s in board.shots if s.scene == scene]
    lines = [f"Scene {scene} of a short video."]
    if shots:
        lines += [f"{s.shot_type}, {s.camera}: {s.action}" for s in shots]
    else:
        found = next((s for s in story.scenes if s.number == scene), None)
        lines.append(found.visuals if found else "")
    if style:
        lines.append(f"Style: {style}")
    text = " ".join(" ".join(lines).split())
    return text if len(text) <= PROMPT_CHARS else text[: PROMPT_CHARS - 1] + "…"


def _reference(scene: int, board: StoryboardVersion, images: ImageSetVersion) -> str | None:
    """The image the scene's shots use most (else the first character, else none)."""
    used = Counter(r for s in board.shots if s.scene == scene for r in s.references)
    names = [i.spec.name for i in images.images if i.file_id]
    for name, _count in used.most_common():
        if name in names:
            return name
    return next((i.spec.name for i in images.images if i.file_id), None)


def voiceover_text(story: Story) -> str:
    """The approved voice-over lines, in order, as one script for speech."""
    text = " ".join(" ".join(s.voiceover.split()) for s in story.scenes if s.voiceover.strip())
    if len(text) <= SPEECH_CHARS:
        return text
    cut = text[:SPEECH_CHARS]
    end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    return cut[: end + 1] if end > SPEECH_CHARS // 2 else cut


def plan_video(
    story: Story,
    board: StoryboardVersion,
    images: ImageSetVersion,
    *,
    number: int,
    supported: Sequence[int],
    model: str,
    size: str,
    price_per_s: float,
    voiceover: bool,
    speech_per_1k_chars: float,
    created_at: float,
    redo_scene: int | None = None,
    current: VideoPlan | None = None,
) -> VideoPlan:
    """A new plan; with ``redo_scene`` only that scene's clips (the rest are kept as made)."""
    style = next((i.spec.prompt for i in images.images if i.spec.kind == "style"), None)
    clips: list[ClipPlan] = []
    for scene in story.scenes:
        if redo_scene is not None and scene.number != redo_scene:
            continue
        left = scene.duration_s
        for seconds in clip_lengths(scene.duration_s, supported):
            used = min(left, seconds)
            left -= used
            clips.append(
                ClipPlan(
                    index=len(clips) + 1,
                    scene=scene.number,
                    seconds=seconds,
                    scene_s=max(1, used),
                    prompt=_prompt(scene.number, board, story, style),
                    reference=_reference(scene.number, board, images),
                )
            )
    if redo_scene is not None and current is not None:
        # Keep the clip numbers of the full plan, so a redone clip replaces its predecessor.
        mine = [c for c in current.clips if c.scene == redo_scene]
        clips = [
            clip.model_copy(update={"index": old.index})
            for clip, old in zip(clips, mine, strict=False)
        ]
    seconds = sum(c.seconds for c in clips)
    speech = voiceover_text(story) if voiceover and redo_scene is None else ""
    estimate = seconds * price_per_s + len(speech) / 1000 * speech_per_1k_chars
    return VideoPlan(
        number=number,
        clips=tuple(clips),
        model=model,
        size=size,
        voiceover=voiceover,
        estimate_usd=round(estimate, 4),
        redo_of=redo_scene,
        created_at=created_at,
    )
