"""The stages as data: the one place every layer reads a stage's words, order and shape from.

Adding a stage is one entry here, one generator module in ``bot/jobs/stages/``, its Block Kit
builder in ``bot/slack/`` and its prompts in ``bot/pipeline/prompts*.py`` (docs/DESIGN.md shows
how). The job and Slack layers keep a table keyed by :class:`Stage` for their part, and a unit
test checks that every available stage has an entry in each.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.pipeline.models import Stage


@dataclass(frozen=True)
class StageDef:
    stage: Stage
    label: str  # the card's tracker: "Story ✅ · Images ⏳ · …"
    artifact: str  # what the stage makes, in a sentence: "the reference images"
    title: str  # a version's heading: "Story", "Reference images", …
    available: bool  # does this version of Storyloop generate it?
    paid: bool  # does generating it cost money beyond LLM tokens?
    in_place: bool  # a new version replaces the review message (else: a new one is posted)
    item: str | None = None  # per-item Redo: the word for one item ("image")
    next: Stage = Stage.COMPLETE


REGISTRY: tuple[StageDef, ...] = (
    StageDef(
        Stage.STORY,
        label="Story",
        artifact="the story",
        title="Story",
        available=True,
        paid=False,
        in_place=True,
        next=Stage.REFERENCE_IMAGE,
    ),
    StageDef(
        Stage.REFERENCE_IMAGE,
        label="Images",
        artifact="the reference images",
        title="Reference images",
        available=True,
        paid=True,
        in_place=False,
        item="image",
        next=Stage.STORYBOARD,
    ),
    StageDef(
        Stage.STORYBOARD,
        label="Storyboard",
        artifact="the storyboard",
        title="Storyboard",
        available=True,
        paid=False,
        in_place=False,
        next=Stage.VIDEO,
    ),
    StageDef(
        Stage.VIDEO,
        label="Video",
        artifact="the video",
        title="Video",
        available=True,
        paid=True,
        in_place=False,
        item="scene",
        next=Stage.COMPLETE,
    ),
)
ORDER = (*(d.stage for d in REGISTRY), Stage.COMPLETE)
_BY_STAGE = {d.stage: d for d in REGISTRY}


def definition(stage: Stage) -> StageDef | None:
    return _BY_STAGE.get(stage)


def spec(stage: Stage) -> StageDef:
    """The definition of a stage that has one (every stage but ``complete``)."""
    return _BY_STAGE[stage]


def next_stage(stage: Stage) -> Stage:
    found = _BY_STAGE.get(stage)
    return found.next if found else Stage.COMPLETE


def reviewed() -> tuple[StageDef, ...]:
    """The stages this version generates and reviews, in order."""
    return tuple(d for d in REGISTRY if d.available)
