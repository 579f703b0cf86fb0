"""The stages as data: order, labels, and whether this version can generate them.

Adding a stage's generator touches this registry and one job flow; approval just moves to
``next_stage``. Stages not yet built are marked so the UI can say so plainly.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.pipeline.models import Stage


@dataclass(frozen=True)
class StageDef:
    stage: Stage
    label: str
    artifact: str
    available: bool  # does this version generate it?


REGISTRY: tuple[StageDef, ...] = (
    StageDef(Stage.STORY, "Story", "story", available=True),
    StageDef(Stage.REFERENCE_IMAGE, "Images", "reference images", available=False),
    StageDef(Stage.STORYBOARD, "Storyboard", "storyboard", available=False),
    StageDef(Stage.VIDEO, "Video", "video", available=False),
)
ORDER = (*(d.stage for d in REGISTRY), Stage.COMPLETE)


def definition(stage: Stage) -> StageDef | None:
    return next((d for d in REGISTRY if d.stage is stage), None)


def next_stage(stage: Stage) -> Stage:
    return ORDER[min(ORDER.index(stage) + 1, len(ORDER) - 1)]
