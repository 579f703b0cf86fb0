"""The plain words of the review loop: every refusal and notice a person may read.

Pure functions of the session. The decisions themselves — which trigger does what in which
stage and status — are in ``transitions``; this module only says them. Mentions here are ours;
no user text is embedded.
"""

from __future__ import annotations

from bot.pipeline.approvals import is_user_id
from bot.pipeline.models import Rule, Session, Stage, Status
from bot.pipeline.stages import definition, spec


def _label(stage: Stage) -> str:
    found = definition(stage)
    return found.artifact if found else "this session"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


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


def _or_list(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]


def approvers_phrase(s: Session) -> str:
    """Who may approve, as words: "<@U1> (who started this session)", "<@U2>, <@U3> or
    members of @editors", "anyone in the channel", "2 people in the channel"."""
    p = s.policy
    if p.rule is Rule.OWNER:
        if not is_user_id(s.owner_id):
            return "the person who started this session"
        return f"<@{s.owner_id}> (who started this session)"
    if p.rule is Rule.NAMED:
        names = [f"<@{u}>" for u in p.users if is_user_id(u)]
        if p.group:
            names.append(f"members of {p.group_handle or 'the approvers group'}")
        return _or_list(names) or "nobody (no approvers were named)"
    if p.rule is Rule.QUORUM:
        return f"{p.needed} different people in the channel"
    return "anyone in the channel"


def only_approvers(s: Session) -> str:
    confirming = s.stage is Stage.VIDEO and s.status is Status.AWAITING_CONFIRMATION
    what = "confirm spending on the video" if confirming else f"approve {_label(s.stage)}"
    return f"Only {approvers_phrase(s)} can {what}. You can still give feedback in the thread."


def already_voted(s: Session, act: str, have: int, needed: int) -> str:
    what = "confirmed the spend" if act == "confirm" else f"approved {_label(s.stage)}"
    return (
        f"You've already {what} — thank you. It needs {needed} approvals; "
        f"{have} so far, so it's waiting for {needed - have} more."
    )


def already_approved(s: Session, stage: Stage) -> str:
    approval = s.approval(stage)
    if approval is None:
        return stale_stage(s)
    return (
        f"{_cap(_label(stage))} was already approved (v{approval.version} by "
        f"<@{approval.user_id}>); it won't change any more."
    )


def stale_stage(s: Session) -> str:
    return (
        "That button belongs to a stage this session isn't at. "
        f"It's now on {_label(s.stage)} — use the buttons of the latest message."
    )


def outdated(s: Session, version: int, *, what: str = "Use the buttons on") -> str:
    return (
        f"That button belongs to v{version}, but {_label(s.stage)} is now at v{s.version}. "
        f"{what} the latest version instead."
    )


def outdated_approve(s: Session, version: int) -> str:
    return outdated(s, version, what="Approve")


def not_ready(s: Session) -> str:
    return f"{_cap(_label(s.stage))} isn't ready for that yet — give it a moment."


def busy(s: Session) -> str:
    if s.status is Status.REGENERATING:
        return (
            f"I'm already making a new version of {_label(s.stage)} — it will replace "
            "this one shortly."
        )
    return f"I'm already working on {_label(s.stage)} — it will appear shortly."


def nothing_to_retry(s: Session) -> str:
    if s.status in (Status.GENERATING, Status.REGENERATING):
        return busy(s)
    return f"There's nothing to retry — {_label(s.stage)} is up to date."


def no_such_item(s: Session, item: int, count: int) -> str:
    word = spec(s.stage).item or "item"
    return f"There is no {word} {item} in this version (it has {count})."


def not_redoable(s: Session) -> str:
    return f"{_cap(_label(s.stage))} can't be remade one piece at a time — use Regenerate."


def incomplete(s: Session, missing: list[int]) -> str:
    word = spec(s.stage).item or "item"
    listed = ", ".join(str(i) for i in missing)
    plural = "s" if len(missing) > 1 else ""
    return (
        f"{_cap(word)}{plural} {listed} couldn't be made, so this set can't be approved yet. "
        f"Use Redo on the {word}{plural}, or Regenerate the whole set."
    )


def already_rendering(s: Session) -> str:
    return "The video is already being rendered — this plan was confirmed once."


def outdated_plan(s: Session, plan: int) -> str:
    return (
        f"That button belongs to plan {plan}, but the newest plan is {s.plan}. "
        "Use the buttons on the newest plan."
    )


def nothing_to_confirm(s: Session) -> str:
    return "There's no video plan waiting for confirmation right now."


def nothing_to_cancel(s: Session) -> str:
    return "There's nothing to cancel: no video plan is waiting and nothing is rendering."


def confirm_first(s: Session) -> str:
    return "A video plan is waiting: confirm it (or cancel it) first."


def stage_unavailable(s: Session) -> str:
    return (
        f"{_cap(_label(s.stage))} isn't available in this version of Storyloop yet. "
        "Everything approved so far is collected in the thread."
    )


def session_done(s: Session) -> str:
    return "This session is complete; nothing here changes any more. Start a new one with `/story`."


def after_approval(s: Session) -> str:
    """A thread reply when there is nothing left to discuss in this session."""
    if s.stage is Stage.COMPLETE:
        return session_done(s)
    return (
        f"Everything up to {_label(s.stage)} is approved. {stage_unavailable(s)} "
        "Your message is kept in the session's history."
    )


def over_budget(limit_usd: float) -> str:
    return (
        f"This workspace has reached its daily spending limit for paid generation "
        f"(${limit_usd:,.2f}), so I didn't start. It resets at midnight UTC; an admin can raise "
        "it with STORYLOOP_DAILY_SPEND_LIMIT_USD. Use Retry after that."
    )


def already_included(version: int) -> str:
    """A reply asking for a rewrite that the current version was already written from (it came
    in while that version was being made): no second version for the same words."""
    return (
        f"v{version} was written after your message, so it already takes it in. Say what you'd "
        "like changed, or press Regenerate for another take."
    )


def no_answer() -> str:
    return (
        "I couldn't answer just now, but your feedback is saved and will be used when the "
        "next version is made."
    )


def gave_up() -> str:
    return "Sorry — that didn't work after several attempts. Please try again in a few minutes."


# --- restoring a version (the Versions modal; bot/pipeline/versions.py decides) ---------------


def restore_other_session() -> str:
    return (
        "That Restore button doesn't belong to this session's versions, so I didn't change "
        "anything. Open Versions from the session's latest message."
    )


def restore_busy(s: Session) -> str:
    return (
        f"I'm making a new version of {_label(s.stage)} right now, so I didn't restore anything. "
        "Open Versions again once it's shown."
    )


def restore_confirm_first(s: Session) -> str:
    return (
        "A video plan is waiting for confirmation: confirm or cancel it before restoring an "
        "earlier video."
    )


def restore_moved_on(s: Session, seen: int) -> str:
    return (
        f"{_cap(_label(s.stage))} changed since you opened its versions (it was v{seen}, it's now "
        f"v{s.version}), so I didn't restore anything. Open Versions again to see the latest list."
    )


def no_such_version(s: Session, version: int) -> str:
    shown = f"v{version}" if version >= 1 else f"version numbered {version}"
    return (
        f"There is no {shown} of {_label(s.stage)} to restore — it has v1 to v{s.version}. "
        "Nothing was changed."
    )


def already_current(s: Session, version: int) -> str:
    return f"v{version} is already the current version of {_label(s.stage)} — nothing to restore."
