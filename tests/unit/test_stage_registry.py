"""Adding a stage is one registry entry plus its parts: each layer has one for every stage."""

from __future__ import annotations

from bot.jobs.stages import WORK
from bot.pipeline.models import Stage
from bot.pipeline.stages import REGISTRY, reviewed
from bot.slack.blocks import STAGE_DOING


def test_every_available_stage_has_a_generator() -> None:
    assert set(WORK) == {d.stage for d in reviewed()}
    for stage, make in WORK.items():
        assert make.stage is stage  # type: ignore[attr-defined]


def test_every_stage_has_card_words() -> None:
    assert {d.stage for d in REGISTRY} <= set(STAGE_DOING)


def test_every_stage_is_built() -> None:
    assert [d.stage for d in REGISTRY if not d.available] == []
    assert Stage.VIDEO in WORK
