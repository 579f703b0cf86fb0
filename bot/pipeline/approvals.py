"""Who may approve a stage and confirm paid work: the approval rules, as pure functions every
stage's Approve and the video's spend confirmation go through.

A session carries its ``ApprovalPolicy`` (chosen in the start modal, or the workspace default):

- ``owner``: only the session's creator (the default);
- ``anyone``: anyone who can click in the channel;
- ``named``: the named people, or members of one user group (looked up when someone acts, so a
  group's membership counts as it is at the click, not as it was at the start);
- ``quorum``: ``needed`` approvals from different people in the channel.

Under ``quorum`` each approval before the last is a *vote* kept on the session for the version
it was given for; a new version starts the count again. Votes are counted under the session
lease, so two people approving at once are two votes, and one person clicking twice is one.
"""

from __future__ import annotations

import re

from bot.pipeline.models import MAX_QUORUM, Approval, ApprovalPolicy, Rule, Session, Stage

__all__ = ["ApprovalPolicy", "Rule", "may_approve", "named", "parse_policy"]
MAX_NAMED = 20
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,30}")
_GROUP_ID = re.compile(r"S[A-Z0-9]{2,30}")
# A user group's @handle as Slack allows it: shown as plain text (it can't ping anyone).
_HANDLE = re.compile(r"@[a-z0-9][a-z0-9._-]{0,79}")


def parse_policy(text: str) -> ApprovalPolicy | None:
    """The workspace default from settings: ``owner``, ``anyone``, ``quorum:N``,
    ``named:U1,U2`` or ``group:S1`` (``named:U1,U2,S1`` names both). None if malformed."""
    raw = text.strip()
    rule, _, rest = raw.partition(":")
    rule = rule.strip().lower()
    if rule in (Rule.OWNER, Rule.ANYONE) and not rest:
        return ApprovalPolicy(rule=Rule(rule))
    if rule == Rule.QUORUM:
        if not rest.strip().isdigit() or not 2 <= int(rest) <= MAX_QUORUM:
            return None
        return ApprovalPolicy(rule=Rule.QUORUM, needed=int(rest))
    if rule in ("named", "group"):
        ids = [x.strip() for x in rest.split(",") if x.strip()]
        users = tuple(x for x in ids if _USER_ID.fullmatch(x))
        groups = [x for x in ids if _GROUP_ID.fullmatch(x)]
        if len(users) + len(groups) != len(ids) or len(groups) > 1 or not ids:
            return None
        return named(users, groups[0] if groups else None)
    return None


def is_user_id(text: str) -> bool:
    """A Slack user id (so ``<@…>`` around it is a mention, never a forged control)."""
    return bool(_USER_ID.fullmatch(text))


def named(
    users: tuple[str, ...] | list[str], group: str | None, group_handle: str | None = None
) -> ApprovalPolicy:
    """A ``named`` policy from what a person picked (ids validated, duplicates dropped)."""
    kept = tuple(dict.fromkeys(u for u in users if _USER_ID.fullmatch(u)))[:MAX_NAMED]
    grp = group if group and _GROUP_ID.fullmatch(group) else None
    handle = group_handle if grp and group_handle and _HANDLE.fullmatch(group_handle) else None
    return ApprovalPolicy(rule=Rule.NAMED, users=kept, group=grp, group_handle=handle)


def needs_group_lookup(s: Session, user_id: str) -> bool:
    """Is the group's membership the only thing that could let ``user_id`` approve?"""
    p = s.policy
    return p.rule is Rule.NAMED and p.group is not None and user_id not in p.users


def may_approve(s: Session, user_id: str, *, members: frozenset[str] = frozenset()) -> bool:
    """May ``user_id`` approve (or confirm) in ``s``? ``members``: the policy's group members,
    when the caller looked them up (``needs_group_lookup``)."""
    p = s.policy
    if p.rule is Rule.OWNER:
        return user_id == s.owner_id
    if p.rule is Rule.NAMED:
        return user_id in p.users or (p.group is not None and user_id in members)
    return True


def current_votes(s: Session, stage: Stage, version: int, *, act: str) -> tuple[Approval, ...]:
    """The votes that count now: for this stage, this version (or plan) and this act."""
    return tuple(v for v in s.votes if v.stage is stage and v.version == version and v.act == act)


def approvers_of(s: Session, stage: Stage) -> tuple[str, ...]:
    """Everyone whose approval moved ``stage`` on, in the order they approved."""
    approval = s.approval(stage)
    if approval is None:
        return ()
    return (*approval.co_approvers, approval.user_id)
