"""A stage's versions as people see them, and whether a Restore may happen.

Pure. ``rows`` turns stored versions into what the Versions modal lists (when, who asked,
what changed); ``decide_restore`` is the restore's state table — like ``transitions.decide``
for the review buttons, it returns the plain words of a refusal or what to commit;
``restored_copy`` is the new version a restore commits: the chosen one, renumbered, with no
cost and no LLM usage of its own (nothing is generated or paid for again).

    session / status                       Restore vK (modal drawn at vC)
    button names another session           refuse (not this session's)
    no session here (other workspace)      refuse (unknown session)
    stage approved / another stage         refuse (approved / stale)
    complete / queued / unpostable         refuse
    generating / regenerating / starting   refuse (busy: the running job wins)
    video plan awaiting confirmation       refuse (confirm or cancel first)
    C ≠ current version                    refuse (moved on since the modal was drawn)
    K < 1, K > current, K not stored       refuse (no such version)
    K = current                            refuse (already current)
    awaiting review / failed / cancelled   → commit v(current+1) as a copy of vK
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from bot.pipeline import review as say
from bot.pipeline.artifacts import ImageSetVersion, StoryboardVersion, VideoVersion
from bot.pipeline.models import Session, Stage, Status, StoryVersion, Turn, TurnRole, Usage
from bot.pipeline.stages import definition
from bot.pipeline.transitions import BUSY, Refuse

AnyVersion = StoryVersion | ImageSetVersion | StoryboardVersion | VideoVersion

# Where each stage's versions are kept and as which model (the story's under bare numbers).
MODELS: Mapping[Stage, type[BaseModel]] = {
    Stage.STORY: StoryVersion,
    Stage.REFERENCE_IMAGE: ImageSetVersion,
    Stage.STORYBOARD: StoryboardVersion,
    Stage.VIDEO: VideoVersion,
}
# Statuses a version can be restored in: under review, a failed newer attempt, or (video) a
# cancelled plan or render — each leaves the current version standing.
RESTORABLE = (Status.AWAITING_REVIEW, Status.FAILED, Status.CANCELLED)
CHANGES_MAX_CHARS = 300


# --- the list -------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionRow:
    """One line of the Versions modal."""

    number: int
    created_at: float
    asked_by: tuple[str, ...]  # authors of the feedback this version answered
    changes: str  # what changed, in words
    restored_from: int | None = None
    restored_by: str | None = None


def authors_by_ts(history: Sequence[Turn]) -> dict[str, str]:
    """Who wrote each feedback message (by its Slack ts)."""
    return {t.ts: t.user_id for t in history if t.role is TurnRole.USER and t.user_id}


def changes_of(version: AnyVersion) -> str:
    """What a version changed, in words: its summary, a Redo's item, or that it came first."""
    if version.restored_from is not None:
        return f"Restored from v{version.restored_from}; nothing was generated again."
    summary = " ".join(getattr(version, "summary_of_changes", "").split())
    redo = version.redo_of if isinstance(version, ImageSetVersion | VideoVersion) else None
    words: list[str] = []
    if redo is not None:
        item = "image" if isinstance(version, ImageSetVersion) else "scene"
        words.append(f"Redo of {item} {redo}.")
    if summary:
        words.append(summary)
    if not words:
        words.append("First version." if version.number == 1 else "No summary of changes given.")
    text = " ".join(words)
    return text if len(text) <= CHANGES_MAX_CHARS else text[: CHANGES_MAX_CHARS - 1] + "…"


def rows(versions: Sequence[AnyVersion], history: Sequence[Turn]) -> list[VersionRow]:
    """The modal's rows, newest first."""
    authors = authors_by_ts(history)
    out = []
    for v in sorted(versions, key=lambda v: v.number, reverse=True):
        asked = tuple(dict.fromkeys(authors[ts] for ts in v.feedback_ts if ts in authors))
        out.append(
            VersionRow(
                number=v.number,
                created_at=v.created_at,
                asked_by=asked,
                changes=changes_of(v),
                restored_from=v.restored_from,
                restored_by=v.restored_by,
            )
        )
    return out


def shown_version(s: Session, stage: Stage) -> int:
    """The version of ``stage`` that counts now: the current one, or the one approved."""
    return s.version_of(stage)


# --- restoring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreRequest:
    """A Restore click as the decision needs it (from the trigger; pure data)."""

    team_id: str
    channel_id: str
    user_id: str
    session_id: str  # the session the button names
    modal_session: str  # the session the modal was opened for
    stage: Stage
    version: int  # the version to restore (forged values arrive here too)
    current: int  # the stage's version when the modal was drawn


@dataclass(frozen=True)
class RestoreTo:
    """Commit version ``number`` of ``stage`` as a copy of ``source``; ``previous`` (the
    version it replaces) is shown as superseded."""

    stage: Stage
    source: int
    number: int
    previous: int


def decide_restore(s: Session | None, r: RestoreRequest, *, found: bool) -> Refuse | RestoreTo:
    """What a Restore click does to ``s``; ``found``: version ``r.version`` is stored."""
    if r.session_id != r.modal_session:
        return Refuse(say.restore_other_session())
    if s is None or s.team_id != r.team_id or s.channel_id != r.channel_id:
        return Refuse(say.unknown_session())
    if r.stage is not s.stage:
        if s.approval(r.stage) is not None:
            return Refuse(say.already_approved(s, r.stage))
        return Refuse(say.stale_stage(s))
    stage = definition(s.stage)
    if stage is None or s.status is Status.UNPOSTABLE:
        return Refuse(say.session_done(s) if s.stage is Stage.COMPLETE else say.unknown_session())
    if not stage.available or s.status is Status.QUEUED:
        return Refuse(say.stage_unavailable(s))
    if s.status in BUSY:
        return Refuse(say.restore_busy(s))
    if s.status is Status.AWAITING_CONFIRMATION:
        return Refuse(say.restore_confirm_first(s))
    if s.version == 0 or s.status not in RESTORABLE:
        return Refuse(say.not_ready(s))
    if r.current != s.version:
        return Refuse(say.restore_moved_on(s, r.current))
    if not 1 <= r.version <= s.version or not found:
        return Refuse(say.no_such_version(s, r.version))
    if r.version == s.version:
        return Refuse(say.already_current(s, r.version))
    return RestoreTo(s.stage, source=r.version, number=s.version + 1, previous=s.version)


def restored_copy(version: AnyVersion, *, number: int, by: str, at: float) -> AnyVersion:
    """Version ``number``: ``version``'s content (its text, prompts and the files already in the
    thread), asked for by ``by`` at ``at``. It answered no feedback and cost nothing."""
    update: dict[str, object] = {
        "number": number,
        "created_at": at,
        "feedback_ts": (),
        "restored_from": version.number,
        "restored_by": by,
    }
    if isinstance(version, StoryVersion | ImageSetVersion | StoryboardVersion):
        update |= {"usage": Usage(), "summary_of_changes": ""}
    if isinstance(version, ImageSetVersion | VideoVersion):
        update |= {"cost_usd": 0.0, "redo_of": None}
    return version.model_copy(update=update)
