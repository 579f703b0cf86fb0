"""`/story delete`: which session a person names, and whether they may delete it. Pure.

A slash command can't be typed in a thread in most Slack clients, so the session is named
by what a person can copy from Slack: the link of its card or of any message in its thread
("Copy link"), or the session's id (the App Home and `storyloop export` show it). The command
then works from any channel, which is also what an admin cleaning up needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.pipeline.models import Session

WORD = "delete"
USAGE = (
    "To delete a story session's data, copy the link of its card (⋯ → *Copy link*) and type "
    "`/story delete <link>`. The person who started it or a workspace admin can delete it."
)
_SESSION_ID = re.compile(r"^[0-9a-f]{20}$")
# https://acme.slack.com/archives/C0TALES/p1767225600000100?thread_ts=1767225600.000100&cid=…
_LINK = re.compile(
    r"^<?(?P<url>https://[^\s/|>]+/archives/(?P<channel>[A-Z0-9]{2,30})/p(?P<ts>\d{16})"
    r"(?P<query>\?[^\s|>]*)?)(?:\|[^>]*)?>?$"
)
_THREAD_TS = re.compile(r"[?&]thread_ts=(?P<ts>\d{10}\.\d{6})(?:&|$)")


@dataclass(frozen=True)
class ByThread:
    """The session of the thread a message link points into."""

    channel_id: str
    thread_ts: str


@dataclass(frozen=True)
class ById:
    session_id: str


@dataclass(frozen=True)
class Unreadable:
    """`/story delete` with nothing (or nothing we can read) after it: say how to use it."""

    message: str = USAGE


DeleteRequest = ByThread | ById | Unreadable


def parse_delete(text: str) -> DeleteRequest | None:
    """``None``: the text is not a delete command but a story prompt ("delete the old logo
    from the ad" is a story). A delete command is the word alone, or followed by one link
    or one id."""
    words = text.split()
    if not words or words[0].lower() != WORD or len(words) > 2:
        return None
    if len(words) == 1:
        return Unreadable()
    arg = words[1]
    if _SESSION_ID.match(arg):
        return ById(arg)
    link = _LINK.match(arg)
    if link is None:
        return None if arg[:1].isalpha() and not arg.startswith("http") else Unreadable()
    raw_ts = link.group("ts")
    ts = f"{raw_ts[:10]}.{raw_ts[10:]}"
    # A reply's link names its thread; the card's own link is the thread's root.
    query = link.group("query") or ""
    thread = _THREAD_TS.search(query)
    return ByThread(link.group("channel"), thread.group("ts") if thread else ts)


def may_delete(session: Session, user_id: str, *, is_admin: bool) -> bool:
    """The session's creator, or a workspace admin or owner (Slack's ``is_admin`` /
    ``is_owner``). Nobody else: approvers and voters shape a session, they don't own it."""
    return user_id == session.owner_id or is_admin


# --- words ---------------------------------------------------------------------------------
def mention(user_id: str) -> str:
    return f"<@{user_id}>"


def deleted_notice(by: str) -> str:
    """Posted in the session's thread."""
    return f"🗑️ {mention(by)} deleted this session's data."


def deleted_card(by: str) -> str:
    """What the session card says from now on: none of the session's words are left on it."""
    return (
        f"🗑️ This story session was deleted by {mention(by)}. Its story, versions and history "
        "are gone from Storyloop; the messages above stay in Slack until someone removes them."
    )


def deleted_session(by: str | None) -> str:
    """A click on one of a deleted session's buttons."""
    who = f" by {mention(by)}" if by else ""
    return (
        f"This story session was deleted{who}, so its buttons don't work any more. "
        "Start a new one with `/story`."
    )


def deleted_done() -> str:
    return "Done — that story session's data is deleted. I said so in its thread."


def not_allowed() -> str:
    return (
        "Only the person who started this story session or a workspace admin can delete it. "
        "Ask them, or leave it: it expires by itself after a while without activity."
    )


def no_such_session() -> str:
    return (
        "I can't find a story session there — it may already be deleted or expired. Use the "
        "link of the session's card (⋯ → *Copy link*)."
    )


def deleting() -> str:
    return "Deleting that story session's data…"
