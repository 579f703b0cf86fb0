"""Identifiers and payload values shared by the Block Kit builders and the Slack handlers.

Builders and handlers must agree on every action id, block id and button value; keeping them in
one module means a rename can't silently break a handler. Button values outlive deployments
(messages stay in Slack for months) and arrive from the client, so they are a small *versioned*
model parsed in exactly one place, and anything that doesn't parse is refused, not guessed at.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.pipeline.models import Stage

__all__ = [
    "DEFAULT_DURATION_S",
    "DURATION_ACTION",
    "DURATION_BLOCK",
    "DURATION_CHOICES_S",
    "MAX_BUTTON_VALUE_CHARS",
    "PROMPT_ACTION",
    "PROMPT_BLOCK",
    "PROMPT_MAX_CHARS",
    "START_MODAL_CALLBACK",
    "TONE_ACTION",
    "TONE_BLOCK",
    "TONE_MAX_CHARS",
    "ActionId",
    "ButtonValue",
    "StageButtonValue",
    "parse_button",
]


class ActionId(StrEnum):
    """``action_id`` of every button the app posts; handlers register on these."""

    APPROVE = "story_approve"  # every stage's Approve (the name predates the later stages)
    REGENERATE = "story_regenerate"
    RETRY = "story_retry"
    REDO = "stage_redo"  # remake one item (an image, a video's scene) of a version
    CONFIRM = "video_confirm"  # spend: render the plan (version = the plan's number)
    CANCEL = "video_cancel"  # don't spend (a plan), or stop spending (a render)


# Far above anything encode() produces (~100 chars), far below Slack's 2,000-char value limit:
# refusing early keeps a forged payload from costing a JSON parse of arbitrary size.
MAX_BUTTON_VALUE_CHARS = 256


class ButtonValue(BaseModel):
    """What a button is bound to: one session and the version it was shown for.

    ``v`` is the format version: a later format adds a new model (and keeps parsing this one),
    so buttons on old messages keep working or are refused politely, never misread.
    """

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    v: Literal[1] = 1
    session: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    version: Annotated[int, Field(ge=0, le=10_000)]

    @field_validator("v", mode="before")
    @classmethod
    def _no_bool_format(cls, v: object) -> object:
        # ``True == 1``, so a Literal[1] alone would accept ``"v": true``.
        if isinstance(v, bool):
            raise ValueError("format version must be an integer")
        return v

    def encode(self) -> str:
        """Compact JSON for a button's ``value``, e.g. ``{"v":1,"session":"s1","version":3}``."""
        return self.model_dump_json()

    @classmethod
    def parse(cls, raw: str | None) -> ButtonValue | None:
        """The value a client sent back, or ``None`` if it is missing, forged or of another format.

        Never raises: the caller answers ``None`` with a polite "this button is out of date".
        """
        if not isinstance(raw, str) or len(raw) > MAX_BUTTON_VALUE_CHARS:
            return None
        try:
            value = cls.model_validate_json(raw)
        except (ValidationError, ValueError):
            return None
        # The default only exists for building values; one that arrives must state its format.
        if "v" not in value.model_fields_set:
            return None
        return value

    @property
    def stage(self) -> Stage:
        """Format 1 predates the later stages: its buttons are the story's."""
        return Stage.STORY

    @property
    def item(self) -> int | None:
        return None


class StageButtonValue(BaseModel):
    """Format 2: a button of any stage, bound to session, stage, version and (Redo) an item."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    v: Literal[2] = 2
    session: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    stage: Annotated[Stage, Field(strict=False)]
    version: Annotated[int, Field(ge=0, le=10_000)]
    item: Annotated[int | None, Field(ge=1, le=100)] = None

    @field_validator("v", "version", "item", mode="before")
    @classmethod
    def _no_bools(cls, v: object) -> object:
        if isinstance(v, bool):
            raise ValueError("must be an integer")
        return v

    def encode(self) -> str:
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def parse(cls, raw: str | None) -> StageButtonValue | None:
        if not isinstance(raw, str) or len(raw) > MAX_BUTTON_VALUE_CHARS:
            return None
        try:
            value = cls.model_validate_json(raw)
        except (ValidationError, ValueError):
            return None
        return value if "v" in value.model_fields_set else None


AnyButtonValue = ButtonValue | StageButtonValue


def parse_button(raw: str | None) -> AnyButtonValue | None:
    """Any button value we ever posted (format 1 or 2), or ``None``. Never raises."""
    return ButtonValue.parse(raw) or StageButtonValue.parse(raw)


# The "new story" modal: its callback id, and a block id / action id per input, which the view
# submission handler uses to read ``view.state.values[block][action]``.
START_MODAL_CALLBACK = "story_start_modal"
PROMPT_BLOCK = "prompt_block"
PROMPT_ACTION = "prompt_input"
DURATION_BLOCK = "duration_block"
DURATION_ACTION = "duration_select"
TONE_BLOCK = "tone_block"
TONE_ACTION = "tone_input"

PROMPT_MAX_CHARS = 2000
TONE_MAX_CHARS = 100
DURATION_CHOICES_S = (15, 30, 45, 60, 90, 120, 180)
DEFAULT_DURATION_S = 30
