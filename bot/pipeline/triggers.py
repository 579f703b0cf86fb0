"""Triggers: what a user did, as the durable intake records it.

A handler turns a Slack payload into one of these, storage enqueues it as a job whose id is
derived from the trigger's own Slack identity (so a re-delivery maps onto the same job), and a
worker executes it. Pure data.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.pipeline.models import ApprovalPolicy, Session, Stage


class TriggerKind(StrEnum):
    START = "start"
    FEEDBACK = "feedback"
    REGENERATE = "regenerate"
    APPROVE = "approve"
    RETRY = "retry"
    REDO = "redo"
    CONFIRM = "confirm"
    CANCEL = "cancel"
    RESTORE = "restore"
    DELETE = "delete"


class _Trigger(BaseModel):
    model_config = ConfigDict(frozen=True)

    team_id: str
    channel_id: str
    user_id: str


class StartSession(_Trigger):
    """`/story` (or the modal) asked for a new session."""

    kind: Literal[TriggerKind.START] = TriggerKind.START
    session_id: str
    prompt: str
    duration_s: int
    tone: str | None = None
    response_url: str | None = None
    # The message to start the thread on (a mention of the app); None: a new card in the channel.
    thread_ts: str | None = None
    # The approval rule picked in the start modal; None: the workspace default.
    policy: ApprovalPolicy | None = None

    @property
    def job_id(self) -> str:
        return f"start:{self.team_id}:{self.session_id}"

    def new_session(self, *, default_policy: ApprovalPolicy, now: float) -> Session:
        """The session this command starts, as its first commit writes it (rev 1): the intake
        script creates it with the eager lane's lease, or the worker's first commit does."""
        return Session(
            id=self.session_id,
            team_id=self.team_id,
            channel_id=self.channel_id,
            owner_id=self.user_id,
            prompt=self.prompt,
            tone=self.tone,
            duration_s=self.duration_s,
            policy=self.policy or default_policy,
            active_job=self.job_id,
            created_at=now,
            updated_at=now,
        )


class Feedback(_Trigger):
    """A human reply in a session's thread. ``wants_regenerate`` is the keyword intent."""

    kind: Literal[TriggerKind.FEEDBACK] = TriggerKind.FEEDBACK
    session_id: str
    thread_ts: str
    ts: str
    text: str
    wants_regenerate: bool = False

    @property
    def job_id(self) -> str:
        return f"msg:{self.team_id}:{self.channel_id}:{self.ts}"


class _Click(_Trigger):
    session_id: str
    stage: Stage = Stage.STORY  # the stage the button was shown for
    version: int
    message_ts: str
    action_ts: str
    response_url: str | None = None

    @property
    def job_id(self) -> str:
        # One job per click: Slack re-deliveries share action_ts, distinct clicks do not.
        return f"{self.kind}:{self.team_id}:{self.session_id}:{self.user_id}:{self.action_ts}"

    kind: TriggerKind


class Regenerate(_Click):
    kind: Literal[TriggerKind.REGENERATE] = TriggerKind.REGENERATE


class Approve(_Click):
    kind: Literal[TriggerKind.APPROVE] = TriggerKind.APPROVE


class Retry(_Click):
    kind: Literal[TriggerKind.RETRY] = TriggerKind.RETRY


class Redo(_Click):
    """Remake one item (an image) of the current version."""

    kind: Literal[TriggerKind.REDO] = TriggerKind.REDO
    item: int = Field(ge=1, le=100)


class Confirm(_Click):
    """Spend: render the video plan ``version`` names (an outdated plan is refused)."""

    kind: Literal[TriggerKind.CONFIRM] = TriggerKind.CONFIRM


class Cancel(_Click):
    """Don't spend on the plan, or stop a render under way."""

    kind: Literal[TriggerKind.CANCEL] = TriggerKind.CANCEL


class Restore(_Click):
    """Restore version ``version`` of ``stage`` as a new version: the Versions modal's button.

    A click in a modal has no message: ``message_ts`` is the modal's view id, and the channel
    is the stored session's. ``current`` is the stage's version when the modal was opened (a
    restore that raced another change is refused); ``modal_session`` is the session the modal
    was opened for (a button naming another one is refused).
    """

    kind: Literal[TriggerKind.RESTORE] = TriggerKind.RESTORE
    current: int = Field(ge=0, le=10_000)
    modal_session: str


class DeleteSession(_Trigger):
    """`/story delete <link or id>`: remove the session's data. ``channel_id`` is where the
    command was typed (the session's own channel is read from the session)."""

    kind: Literal[TriggerKind.DELETE] = TriggerKind.DELETE
    session_id: str
    command_id: str  # the command's trigger_id: one job per command (Slack doesn't retry them)
    response_url: str | None = None

    @property
    def job_id(self) -> str:
        return f"delete:{self.team_id}:{self.session_id}:{self.user_id}:{self.command_id}"


Click = Approve | Regenerate | Retry | Redo | Confirm | Cancel | Restore
Trigger = Annotated[
    StartSession
    | Feedback
    | Regenerate
    | Approve
    | Retry
    | Redo
    | Confirm
    | Cancel
    | Restore
    | DeleteSession,
    Field(discriminator="kind"),
]


def session_id_for(team_id: str, trigger_id: str) -> str:
    """A session id derived from the Slack interaction that created it (stable across retries)."""
    digest = hashlib.sha256(f"{team_id}:{trigger_id}".encode()).hexdigest()
    return digest[:20]
