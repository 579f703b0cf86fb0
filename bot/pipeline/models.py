"""Domain models of a Storyloop session.

Pure data: no Slack, no Redis. Storage serialises these with pydantic JSON; Block Kit builders
render them; the state table in ``transitions`` moves them along.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Stage(StrEnum):
    """Stages a session moves through, in order."""

    STORY = "story"
    REFERENCE_IMAGE = "reference_image"
    STORYBOARD = "storyboard"
    VIDEO = "video"
    COMPLETE = "complete"


class Status(StrEnum):
    """What a session is doing right now within its stage."""

    STARTING = "starting"  # session recorded, card not yet posted
    GENERATING = "generating"  # first version being written
    AWAITING_REVIEW = "awaiting_review"  # a version is shown with Approve / Regenerate
    REGENERATING = "regenerating"  # a new version is being written
    QUEUED = "queued"  # stage approved into whose generator this version doesn't have
    # Video: a plan with its cost is shown; nothing is spent until someone allowed confirms.
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    CANCELLED = "cancelled"  # a plan or a render was cancelled; Retry shows a new plan
    DONE = "done"  # the last stage was approved: the session is complete
    FAILED = "failed"  # the last generation failed; Retry is offered
    UNPOSTABLE = "unpostable"  # the app could not post in the channel; nothing to resume


class Scene(BaseModel):
    """One scene of the script."""

    model_config = ConfigDict(frozen=True)

    number: int = Field(ge=1)
    duration_s: int = Field(ge=1)
    visuals: str
    voiceover: str


class Story(BaseModel):
    """A story as the LLM wrote it (after normalisation)."""

    model_config = ConfigDict(frozen=True)

    title: str
    logline: str
    narrative: str
    scenes: tuple[Scene, ...]

    @property
    def total_duration_s(self) -> int:
        return sum(s.duration_s for s in self.scenes)

    @property
    def word_count(self) -> int:
        parts = [self.title, self.logline, self.narrative]
        parts += [s.visuals + " " + s.voiceover for s in self.scenes]
        return sum(len(p.split()) for p in parts)


class Usage(BaseModel):
    """Token usage reported by the LLM endpoint."""

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class StoryVersion(BaseModel):
    """One committed version of the story, with the feedback it answered."""

    model_config = ConfigDict(frozen=True)

    number: int = Field(ge=1)
    story: Story
    usage: Usage
    feedback_ts: tuple[
        str, ...
    ] = ()  # Slack ts of the feedback turns this version took into account
    summary_of_changes: str = ""
    created_at: float
    # A restore (bot/jobs/restore.py): the version this one copies, and who asked for it.
    restored_from: int | None = None
    restored_by: str | None = None


class TurnRole(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


class Turn(BaseModel):
    """One conversational turn in the thread: a human's feedback or the assistant's answer.

    Status and notice messages are not turns: they never reach the LLM.
    """

    model_config = ConfigDict(frozen=True)

    role: TurnRole
    ts: str  # Slack ts of the message (assistant turns: ts of the answered feedback's newest turn)
    user_id: str | None = None  # author of a user turn
    text: str
    planned_changes: tuple[str, ...] = ()  # assistant turns: changes it said it will make
    # Assistant turns: the items (image or shot numbers) the changes concern; () = all of them.
    targets: tuple[int, ...] = ()
    stage: Stage | None = None  # the stage under review when the turn was made


class Approval(BaseModel):
    """One approval of one stage's version: who, when, which version.

    ``act``: ``approve``, or ``confirm`` for the video's spend confirmation (whose ``version``
    is the plan). Under a quorum rule the approvals before the last are kept as the final
    approval's ``co_approvers``.
    """

    model_config = ConfigDict(frozen=True)

    stage: Stage
    version: int = Field(ge=1)
    user_id: str
    at: float
    act: str = "approve"
    co_approvers: tuple[str, ...] = ()


MAX_QUORUM = 10


class Rule(StrEnum):
    OWNER = "owner"
    ANYONE = "anyone"
    NAMED = "named"
    QUORUM = "quorum"


class ApprovalPolicy(BaseModel):
    """The approval rule of one session."""

    model_config = ConfigDict(frozen=True)

    rule: Rule = Rule.OWNER
    users: tuple[str, ...] = ()  # named: the people who may approve
    group: str | None = None  # named: a user group whose members may approve
    group_handle: str | None = None  # the group's @handle, to show it without pinging it
    needed: int = Field(default=1, ge=1, le=MAX_QUORUM)  # quorum: approvals needed

    @property
    def votes_needed(self) -> int:
        return self.needed if self.rule is Rule.QUORUM else 1


class Session(BaseModel):
    """A story session: one Slack thread, one creator, a stage and its versions.

    ``rev`` increases by one on every committed change; storage commits compare-and-set on it.
    """

    id: str
    team_id: str
    channel_id: str
    owner_id: str
    prompt: str
    tone: str | None = None
    duration_s: int
    stage: Stage = Stage.STORY
    status: Status = Status.STARTING
    rev: int = 0
    version: int = 0  # current version of the current stage (0 = none yet)
    plan: int = 0  # video: the newest cost plan shown for confirmation (0 = none)
    cancelled_by: str | None = None  # video: who cancelled the plan or the render
    thread_ts: str | None = None  # root of the session's thread (the card, or a mention)
    card_ts: str | None = None  # the card, when it is a reply (a session started by a mention)
    story_message_ts: str | None = None  # the story message, edited in place
    extra_message_ts: tuple[str, ...] = ()  # continuation messages of a long story
    answered_until: int = 0  # history turns [0, answered_until) have had their answer
    incorporated_until: int = 0  # history turns [0, incorporated_until) are in a version
    active_job: str | None = None  # the job that owns the running generation or approval
    active_item: int | None = None  # the running generation is a Redo of this item
    active_op: str | None = None  # what the running generation does (transitions.Op)
    stage_started_turn: int = 0  # history turns from here on were made in the current stage
    requested_changes: tuple[str, ...] = ()  # bounded running list of changes asked for
    approvals: tuple[Approval, ...] = ()  # every stage approved so far, in order
    policy: ApprovalPolicy = ApprovalPolicy()  # who may approve and confirm (approvals.py)
    votes: tuple[Approval, ...] = ()  # quorum: approvals given so far that don't yet suffice
    spent_usd: float = 0.0  # paid work (images, video) actually billed for this session
    estimate_usd: float | None = None  # the paid generation under way: its estimated cost
    failure: str | None = None  # plain-words reason when status is FAILED
    failed_op: str | None = None  # "generate" | "regenerate" | "redo": what Retry re-runs
    failed_item: int | None = None  # a failed Redo: which item Retry remakes
    usage: Usage = Usage()
    created_at: float
    updated_at: float

    @property
    def card_at(self) -> str | None:
        """The session card's ts: the thread's root, or its first reply (mention sessions)."""
        return self.card_ts or self.thread_ts

    def approval(self, stage: Stage) -> Approval | None:
        """The approval that moved ``stage`` on, if it was approved."""
        return next((a for a in reversed(self.approvals) if a.stage is stage), None)

    def version_of(self, stage: Stage) -> int:
        """The version of ``stage`` that counts: the current one, or the one approved."""
        if stage is self.stage:
            return self.version
        approved = self.approval(stage)
        return approved.version if approved else 0

    @property
    def approved_by(self) -> str | None:
        """Who approved the story (the story renderers' and refusals' word for it)."""
        story = self.approval(Stage.STORY)
        return story.user_id if story else None

    @property
    def approved_version(self) -> int | None:
        story = self.approval(Stage.STORY)
        return story.version if story else None
