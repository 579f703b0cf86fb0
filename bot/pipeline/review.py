"""The review loop's rules: who may do what, in which state — and the plain words for "no".

Pure functions of the session. Each ``cannot_*`` returns ``None`` when the action is allowed,
or the polite refusal to show the clicker. Mentions here are ours; no user text is embedded.

State table (story stage):

    status            Approve            Regenerate          Retry           thread reply
    generating        refuse (not yet)   refuse (not yet)    refuse (busy)   kept, answered after
    awaiting_review   → next stage       → regenerating      refuse          answered (LLM)
    regenerating      refuse (busy)      refuse (busy)       refuse (busy)   kept, answered after
    failed (v ≥ 1)    → next stage       → regenerating      → regenerating  answered (LLM)
    failed (v = 0)    refuse (not yet)   refuse (not yet)    → generating    answered (LLM)
    after approval    refuse (done)      refuse (done)       refuse          notice: approved
"""

from __future__ import annotations

from bot.pipeline.models import Session, Stage, Status


def cant_post(error: str) -> str:
    if error in ("channel_not_found", "method_not_supported_for_channel_type", "not_in_channel"):
        return (
            "I can't post in this conversation. In a private channel, invite me first with "
            "`/invite @storyloop`, then run `/story` again. Direct messages with other people "
            "aren't supported — use a channel."
        )
    if error == "is_archived":
        return "This channel is archived, so I can't start a story here. Try another channel."
    return "Slack didn't let me post in this channel. Try `/story` in another channel."


def unknown_session() -> str:
    return (
        "I can't find that story session any more — it may have expired. "
        "Start a new one with `/story`."
    )


def cannot_approve(s: Session, user_id: str, version: int, *, policy: str) -> str | None:
    if policy == "owner" and user_id != s.owner_id:
        return (
            f"Only <@{s.owner_id}>, who started this session, can approve the story. "
            "You can still give feedback in the thread."
        )
    if s.stage is not Stage.STORY:
        by = f" by <@{s.approved_by}>" if s.approved_by else ""
        return f"This story was already approved (v{s.approved_version}{by})."
    if s.version == 0:
        return "The story isn't ready for approval yet."
    if version != s.version:
        return (
            f"That button belongs to v{version}, but the story is now at v{s.version}. "
            "Approve the latest version instead."
        )
    if s.status is Status.REGENERATING:
        return "The story is being rewritten right now — approve it once the new version is in."
    if s.status not in (Status.AWAITING_REVIEW, Status.FAILED):
        return "The story isn't ready for approval yet."
    return None


def cannot_regenerate(s: Session, version: int) -> str | None:
    if s.stage is not Stage.STORY:
        return f"This story was already approved (v{s.approved_version}); it can't be regenerated."
    if s.status is Status.REGENERATING:
        return "I'm already rewriting the story — the new version will replace this one shortly."
    if s.version == 0:
        return "The story isn't ready yet — give it a moment, or use Retry if it failed."
    if version != s.version:
        return (
            f"That button belongs to v{version}, but the story is now at v{s.version}. "
            "Use the buttons on the latest version."
        )
    if s.status not in (Status.AWAITING_REVIEW, Status.FAILED):
        return "The story isn't ready yet — give it a moment."
    return None


def nothing_to_retry(s: Session) -> str:
    if s.status in (Status.GENERATING, Status.REGENERATING):
        return "I'm already working on it — the story will appear shortly."
    return "There's nothing to retry — the story is up to date."


def after_approval(s: Session) -> str:
    return (
        f"This story was approved (v{s.approved_version}), so it won't change any more. "
        "Feedback on reference images will be possible once that stage is available."
    )


def no_answer() -> str:
    return (
        "I couldn't answer just now, but your feedback is saved and will be used when the "
        "story is regenerated."
    )


def gave_up() -> str:
    return "Sorry — that didn't work after several attempts. Please try again in a few minutes."
