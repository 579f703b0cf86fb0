"""Identifiers and payload values shared by the Block Kit builders and the Slack handlers.

Builders and handlers must agree on every action id, block id and button value; keeping them in
one module means a rename can't silently break a handler. Button values outlive deployments
(messages stay in Slack for months) and arrive from the client, so they are a small *versioned*
model parsed in exactly one place, and anything that doesn't parse is refused, not guessed at.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.pipeline.models import Stage

__all__ = [
    "APPROVERS_ACTION",
    "APPROVERS_BLOCK",
    "CHANNEL_ACTION",
    "CHANNEL_BLOCK",
    "DEFAULT_DURATION_S",
    "DURATION_ACTION",
    "DURATION_BLOCK",
    "DURATION_CHOICES_S",
    "GROUP_ACTION",
    "GROUP_BLOCK",
    "MAX_BUTTON_VALUE_CHARS",
    "PROMPT_ACTION",
    "PROMPT_BLOCK",
    "PROMPT_MAX_CHARS",
    "QUORUM_ACTION",
    "QUORUM_BLOCK",
    "RULE_ACTION",
    "RULE_BLOCK",
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


class WireValue(BaseModel):
    """A value the client sends back (a button's ``value``, a modal's ``private_metadata``):
    strict, frozen, versioned by its ``v`` field, and parsed in exactly one way that never
    raises — anything missing, oversized, forged or of another format is ``None``."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_bools(cls, v: object) -> object:
        # ``True == 1``: a strict int (or ``Literal[1]`` format) alone would accept ``true``.
        if isinstance(v, bool):
            raise ValueError("must be an integer")
        return v

    def encode(self) -> str:
        """Compact JSON, e.g. ``{"v":1,"session":"s1","version":3}``."""
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def parse(cls, raw: object) -> Self | None:
        if not isinstance(raw, str) or len(raw) > MAX_BUTTON_VALUE_CHARS:
            return None
        try:
            value = cls.model_validate_json(raw)
        except (ValidationError, ValueError):
            return None
        # The default only exists for building values; one that arrives must state its format.
        return value if "v" in value.model_fields_set else None


class ButtonValue(WireValue):
    """What a button is bound to: one session and the version it was shown for.

    ``v`` is the format version: a later format adds a new model (and keeps parsing this one),
    so buttons on old messages keep working or are refused politely, never misread.
    """

    v: Literal[1] = 1
    session: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    version: Annotated[int, Field(ge=0, le=10_000)]

    @property
    def stage(self) -> Stage:
        """Format 1 predates the later stages: its buttons are the story's."""
        return Stage.STORY

    @property
    def item(self) -> int | None:
        return None


class StageButtonValue(WireValue):
    """Format 2: a button of any stage, bound to session, stage, version and (Redo) an item."""

    v: Literal[2] = 2
    session: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    stage: Annotated[Stage, Field(strict=False)]
    version: Annotated[int, Field(ge=0, le=10_000)]
    item: Annotated[int | None, Field(ge=1, le=100)] = None


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

# Where the story lives (only when the modal was opened outside a channel: App Home, a global
# shortcut) and who approves it (the approval rules of bot/pipeline/approvals.py).
CHANNEL_BLOCK = "channel_block"
CHANNEL_ACTION = "channel_select"
RULE_BLOCK = "approval_rule_block"
RULE_ACTION = "approval_rule_select"
APPROVERS_BLOCK = "approvers_block"
APPROVERS_ACTION = "approvers_select"
GROUP_BLOCK = "approver_group_block"
GROUP_ACTION = "approver_group_select"  # external_select: options come from usergroups.list
QUORUM_BLOCK = "quorum_block"
QUORUM_ACTION = "quorum_input"

PROMPT_MAX_CHARS = 2000
TONE_MAX_CHARS = 100
DURATION_CHOICES_S = (15, 30, 45, 60, 90, 120, 180)
DEFAULT_DURATION_S = 30


# The App Home (bot/slack/home_blocks.py, handlers/home.py). Not ActionId members: every
# ActionId is a session button handled by handlers/actions.py.
class HomeAction(StrEnum):
    NEW_STORY = "home_new_story"  # opens the start modal with a channel picker
    PREVIOUS = "home_page_previous"
    NEXT = "home_page_next"


MAX_HOME_PAGE = 50  # far past the indexes' length (HOME_RECENT_MAX / page size); clamped later


class HomePageValue(WireValue):
    """A paging button's value: the page of the Home it shows (0 = the first)."""

    v: Literal[1] = 1
    page: Annotated[int, Field(ge=0, le=MAX_HOME_PAGE)]


# --- the Versions modal: list, compare and restore a stage's versions ---------------------------


class VersionsAction(StrEnum):
    """``action_id``s of the Versions button and of the controls inside its modal.

    Kept apart from :class:`ActionId`: every ``ActionId`` is a review click recorded as a job,
    while these open or redraw a modal (only Restore is recorded, as its own trigger).
    """

    OPEN = "stage_versions"  # on a review message: open the modal
    RESTORE = "version_restore"  # in the modal: restore one version as a new one
    COMPARE = "version_compare"  # in the modal: show the diff of the two picked versions
    COMPARE_FROM = "version_compare_from"  # static_select: the older side
    COMPARE_TO = "version_compare_to"  # static_select: the newer side
    NEWER = "versions_newer"  # paging the list (value: the page number)
    OLDER = "versions_older"
    BACK = "versions_back"  # from a comparison back to the list


VERSIONS_MODAL_CALLBACK = "stage_versions_modal"
COMPARE_BLOCK = "version_compare_block"
MAX_VERSION_NUMBER = 10_000


class RestoreButtonValue(WireValue):
    """Format 3: a Restore button in the Versions modal — the session, the stage, the version to
    restore and the version that was current when the modal was drawn (a restore racing another
    change is refused by the worker). ``version`` is only bounded, not checked: the worker's
    decision refuses a version that doesn't exist, in words."""

    v: Literal[3] = 3
    session: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    stage: Annotated[Stage, Field(strict=False)]
    version: Annotated[int, Field(ge=-MAX_VERSION_NUMBER, le=MAX_VERSION_NUMBER)]
    current: Annotated[int, Field(ge=0, le=MAX_VERSION_NUMBER)]


class VersionsMetadata(WireValue):
    """The Versions modal's ``private_metadata``: which session and stage it lists, the version
    that was current when it was drawn, and the page shown."""

    v: Literal[1] = 1
    session: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    stage: Annotated[Stage, Field(strict=False)]
    current: Annotated[int, Field(ge=0, le=MAX_VERSION_NUMBER)]
    page: Annotated[int, Field(ge=0, le=MAX_VERSION_NUMBER)] = 0
