"""The App Home: a person's sessions in three groups, the team's recent sessions, New story.

Pure: sessions in, a ``home`` view out. Which of a person's sessions wait for them is decided
here with the same rule the Approve button goes through (``may_approve``); a user group's
members are not known without asking Slack, so under a group rule a session waits only for the
people the rule names. Prompts are user text: clipped to one line and escaped.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.pipeline.approvals import current_votes, may_approve
from bot.pipeline.models import Session, Status
from bot.pipeline.stages import definition
from bot.slack.actions import HomeAction, HomePageValue
from bot.slack.mrkdwn import escape, mention, truncate
from bot.slack.stage_blocks import safe_url, usd
from bot.slack.story_blocks import Block, context, one_line, plain_text, section

MINE_PER_PAGE = 10
TEAM_PER_PAGE = 10
PROMPT_MAX_CHARS = 80
MAX_VIEW_BLOCKS = 100
HOME_CALLBACK = "storyloop_home"
WAITING = (Status.AWAITING_REVIEW, Status.AWAITING_CONFIRMATION)


class Group(StrEnum):
    WAITING = "waiting"  # a step waits for this person's approval (or confirmation)
    IN_PROGRESS = "in_progress"
    DONE = "done"


GROUP_TITLES = {
    Group.WAITING: "👀 Waiting for your approval",
    Group.IN_PROGRESS: "⏳ In progress",
    Group.DONE: "✅ Done",
}


def waits_for(s: Session, user_id: str) -> bool:
    """Does a step of ``s`` wait for ``user_id``: shown for review or confirmation, theirs to
    approve, and not already voted on by them (under a quorum)?"""
    if s.status not in WAITING or not may_approve(s, user_id):
        return False
    confirming = s.status is Status.AWAITING_CONFIRMATION
    version = s.plan if confirming else s.version
    votes = current_votes(s, s.stage, version, act="confirm" if confirming else "approve")
    return all(v.user_id != user_id for v in votes)


def group_of(s: Session, user_id: str) -> Group:
    if waits_for(s, user_id):
        return Group.WAITING
    return Group.DONE if s.status is Status.DONE else Group.IN_PROGRESS


@dataclass(frozen=True)
class HomePage:
    """One page of one person's Home: which of their sessions (with its group) and which of
    the team's are on it, and how many of each there are in all."""

    viewer: str
    page: int
    pages: int
    mine: list[tuple[Group, Session]]
    team: list[Session]
    counts: Mapping[Group, int]

    @property
    def shown(self) -> list[Session]:
        """Every session on the page (those whose thread links are needed)."""
        return [s for _, s in self.mine] + self.team


def home_page(
    viewer: str, mine: Sequence[Session], team: Sequence[Session], team_total: int, page: int
) -> HomePage:
    """Sort ``mine`` (newest change first) into groups — waiting, in progress, done — and cut
    out ``page``; ``team`` is that page of the team's sessions already (storage slices it)."""
    grouped = [(group_of(s, viewer), s) for s in mine]
    order = list(Group)
    grouped.sort(key=lambda pair: order.index(pair[0]))  # stable: newest first within a group
    pages = max(-(-len(grouped) // MINE_PER_PAGE), -(-team_total // TEAM_PER_PAGE), 1)
    page = min(max(page, 0), pages - 1)
    counts = {g: sum(1 for got, _ in grouped if got is g) for g in Group}
    start = page * MINE_PER_PAGE
    return HomePage(
        viewer,
        page,
        pages,
        grouped[start : start + MINE_PER_PAGE],
        list(team[:TEAM_PER_PAGE]),
        counts,
    )


def status_words(s: Session) -> str:
    """Where the session is, in a few words: the stage and what it is doing."""
    found = definition(s.stage)
    if found is None or s.status is Status.DONE:
        return "🎉 Complete"
    title = found.title
    if s.status is Status.STARTING:
        return "⏳ Starting"
    if s.status is Status.GENERATING:
        return f"✍️ {title}: making the first version"
    if s.status is Status.REGENERATING:
        return f"🔄 {title}: making a new version"
    if s.status is Status.AWAITING_REVIEW:
        version = f" v{s.version}" if s.version else ""
        return f"👀 {title}{version}: awaiting review"
    if s.status is Status.AWAITING_CONFIRMATION:
        cost = f" (≈ {usd(s.estimate_usd)})" if s.estimate_usd is not None else ""
        return f"💵 {title} plan{cost}: waiting for confirmation"
    if s.status is Status.QUEUED:
        return f"⏸ {title}: not available in this version yet"
    if s.status is Status.CANCELLED:
        return f"🚫 {title}: cancelled"
    if s.status is Status.FAILED:
        return f"⚠️ {title}: failed — Retry is in the thread"
    return "⛔ Storyloop couldn't post in the channel"


def when(at: float) -> str:
    """A time Slack shows in the reader's own time zone (UTC in the fallback)."""
    fallback = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))
    return f"<!date^{int(at)}^{{date_short_pretty}} {{time}}|{fallback}>"


def entry(block_id: str, s: Session, link: str | None) -> Block:
    """One session: its prompt (linking to its thread), where it is, who started it, when."""
    prompt = escape(truncate(one_line(s.prompt), PROMPT_MAX_CHARS)) or "Untitled"
    title = f"<{escape(link)}|{prompt}>" if link and safe_url(link) else prompt
    details = f"{status_words(s)} · {mention(s.owner_id)} · {when(s.updated_at)}"
    return section(block_id, f"*{title}*\n{details}")


def _button(label: str, action: HomeAction, value: str | None, *, primary: bool = False) -> Block:
    element: Block = {"type": "button", "action_id": str(action), "text": plain_text(label)}
    if value is not None:
        element["value"] = value
    if primary:
        element["style"] = "primary"
    return element


def _mine(page: HomePage, links: Mapping[str, str]) -> list[Block]:
    blocks: list[Block] = [section("home_mine_title", "*My sessions*")]
    if not page.mine:
        empty = (
            "Nothing on this page — see ← Previous."
            if sum(page.counts.values())
            else "Stories you start, or are asked to approve, show up here."
        )
        return [*blocks, context("home_mine_empty", empty)]
    heading: Group | None = None
    for group, s in page.mine:
        if group is not heading:
            heading = group
            title = f"*{GROUP_TITLES[group]}* ({page.counts[group]})"
            blocks.append(context(f"group_{group}", title))
        blocks.append(entry(f"mine_{s.id}", s, links.get(s.id)))
    return blocks


def _team(page: HomePage, links: Mapping[str, str]) -> list[Block]:
    blocks: list[Block] = [section("home_team_title", "*Team's recent sessions*")]
    if not page.team:
        return [*blocks, context("home_team_empty", "No stories in this workspace yet.")]
    return blocks + [entry(f"team_{s.id}", s, links.get(s.id)) for s in page.team]


def _paging(page: HomePage) -> list[Block]:
    if page.pages <= 1:
        return []
    buttons: list[Block] = []
    if page.page > 0:
        value = HomePageValue(page=page.page - 1).encode()
        buttons.append(_button("← Previous", HomeAction.PREVIOUS, value))
    if page.page + 1 < page.pages:
        value = HomePageValue(page=page.page + 1).encode()
        buttons.append(_button("Next →", HomeAction.NEXT, value))
    return [
        {"type": "actions", "block_id": "home_paging", "elements": buttons},
        context("home_page", f"Page {page.page + 1} of {page.pages}"),
    ]


def home_view(page: HomePage, links: Mapping[str, str], *, now: float) -> dict[str, Any]:
    """The ``home`` view for ``views.publish``; ``links``: session id → thread permalink."""
    blocks: list[Block] = [
        {"type": "header", "block_id": "home_header", "text": plain_text("Storyloop")},
        context(
            "home_intro",
            "Turn a brief into a video story with your team: each step is reviewed in its "
            "Slack thread.",
        ),
        {
            "type": "actions",
            "block_id": "home_actions",
            "elements": [_button("✨ New story", HomeAction.NEW_STORY, None, primary=True)],
        },
        {"type": "divider", "block_id": "home_div_mine"},
        *_mine(page, links),
        {"type": "divider", "block_id": "home_div_team"},
        *_team(page, links),
        *_paging(page),
        context("home_updated", f"Updated {when(now)}"),
    ]
    return {"type": "home", "callback_id": HOME_CALLBACK, "blocks": blocks[:MAX_VIEW_BLOCKS]}
