"""Each stage's job-side part, by stage: the flows and delivery pick one by ``session.stage``.

Adding a stage adds its module here (and its registry entry in ``bot/pipeline/stages.py``);
``tests/unit/test_stage_registry.py`` checks that every available stage has one.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.jobs.context import FlowContext
from bot.jobs.stages.base import StageWork
from bot.jobs.stages.images import ImagesStage
from bot.jobs.stages.story import StoryStage
from bot.jobs.stages.storyboard import StoryboardStage
from bot.jobs.stages.video import VideoStage
from bot.pipeline.models import Stage

WORK: dict[Stage, Callable[[FlowContext], StageWork]] = {
    Stage.STORY: StoryStage,
    Stage.REFERENCE_IMAGE: ImagesStage,
    Stage.STORYBOARD: StoryboardStage,
    Stage.VIDEO: VideoStage,
}


def build(ctx: FlowContext) -> dict[Stage, StageWork]:
    return {stage: make(ctx) for stage, make in WORK.items()}
