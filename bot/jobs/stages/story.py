"""Stage 1: the story — streamed by the LLM, shown in one message edited in place."""

from __future__ import annotations

from bot.jobs.context import FlowContext
from bot.jobs.delivery import show_story
from bot.jobs.generation import generate
from bot.jobs.model import Job
from bot.pipeline import prompts
from bot.pipeline.models import Session, Stage
from bot.pipeline.transitions import Op
from bot.pipeline.triggers import Feedback


class StoryStage:
    stage = Stage.STORY

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx

    async def generate(self, job: Job, s: Session, op: Op, item: int | None) -> None:
        await generate(
            self.ctx,
            job,
            s,
            regenerating=op is Op.REGENERATE,
            answers=isinstance(job.trigger, Feedback),
        )

    async def show(self, job: Job, s: Session, number: int) -> Session:
        return await show_story(self.ctx, job, s)

    async def describe(self, s: Session) -> str:
        number = s.version_of(Stage.STORY)
        current = await self.ctx.repo.version(s, number) if number else None
        return prompts.render_story(current.story) if current else "(no story yet)"

    async def step(self, job: Job, s: Session, step: str) -> Session:
        return s  # no steps of its own

    async def items(self, s: Session) -> tuple[int, tuple[int, ...]]:
        return 0, ()
