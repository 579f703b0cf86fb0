"""Block Kit primitives and limits, and the story message, which is the one screen that can
outgrow a single Slack message.

The primitives live here rather than in ``blocks`` so both modules can use them without an
import cycle; ``bot.slack.blocks`` re-exports everything public. Every builder is pure: domain
objects in, JSON-ready dicts out, so each screen can be unit-tested against Slack's limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bot.pipeline.models import Scene, Session, Stage, Story, StoryVersion
from bot.slack.actions import (
    ActionId,
    AnyButtonValue,
    ButtonValue,
    StageButtonValue,
    VersionsAction,
)
from bot.slack.mrkdwn import escape, mention, split_text, truncate

__all__ = [
    "BUTTON_TEXT_MAX_CHARS",
    "FALLBACK_TEXT_MAX_CHARS",
    "HEADER_MAX_CHARS",
    "MAX_BLOCKS",
    "MESSAGE_TEXT_BUDGET",
    "SECTION_MAX_CHARS",
    "Block",
    "Rendered",
    "StoryState",
    "block_text_length",
    "button",
    "clock",
    "context",
    "mrkdwn_text",
    "one_line",
    "paginate",
    "plain_text",
    "rendered",
    "section",
    "story_messages",
]

Block = dict[str, Any]
StoryState = Literal["review", "approved", "regenerating", "superseded"]

MAX_BLOCKS = 50  # per message (msg_blocks_too_many)
SECTION_MAX_CHARS = 3000  # section text; also used for context elements
HEADER_MAX_CHARS = 150  # header plain_text
BUTTON_TEXT_MAX_CHARS = 75
# Slack fails with msg_blocks_too_long at ~12-13k characters of block text in total, although
# that cap is undocumented; staying at 11k leaves room for whatever it counts that we don't.
MESSAGE_TEXT_BUDGET = 11_000
# Notification fallback: chat.update rejects text over 4,000, so keep well below it.
FALLBACK_TEXT_MAX_CHARS = 3000


@dataclass(frozen=True, slots=True)
class Rendered:
    """One Slack message: ``text`` (escaped notification fallback) plus its ``blocks``."""

    text: str
    blocks: list[Block]


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(text.split())


def rendered(text: str, blocks: list[Block]) -> Rendered:
    """A ``Rendered`` whose fallback text respects :data:`FALLBACK_TEXT_MAX_CHARS`."""
    return Rendered(text=truncate(text, FALLBACK_TEXT_MAX_CHARS), blocks=blocks)


def mrkdwn_text(text: str) -> Block:
    """A mrkdwn text object; ``verbatim`` stops Slack auto-linking names and URLs in it."""
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def plain_text(text: str) -> Block:
    return {"type": "plain_text", "text": text, "emoji": True}


def section(block_id: str, text: str) -> Block:
    """A mrkdwn section; ``text`` must already be escaped. Over-long text is truncated, so
    callers that must not lose text split it first (:func:`~bot.slack.mrkdwn.split_text`)."""
    return {
        "type": "section",
        "block_id": block_id,
        "text": mrkdwn_text(truncate(text, SECTION_MAX_CHARS)),
    }


def context(block_id: str, *texts: str) -> Block:
    """A context block of escaped mrkdwn lines (Slack allows at most 10 elements)."""
    elements = [mrkdwn_text(truncate(t, SECTION_MAX_CHARS)) for t in texts[:10]]
    return {"type": "context", "block_id": block_id, "elements": elements}


def button(
    label: str, action_id: ActionId, value: AnyButtonValue, *, style: str | None = None
) -> Block:
    element: Block = {
        "type": "button",
        "action_id": str(action_id),
        "text": plain_text(truncate(label, BUTTON_TEXT_MAX_CHARS)),
        "value": value.encode(),
    }
    if style is not None:
        element["style"] = style
    return element


def versions_button(session: Session, stage: Stage, n: int) -> Block:
    """Versions: list, compare and restore the stage's versions (a modal; see version_blocks).
    Bound to the session, stage and the version the message shows, like a review button."""
    return {
        "type": "button",
        "action_id": str(VersionsAction.OPEN),
        "text": plain_text("Versions"),
        "value": StageButtonValue(session=session.id, stage=stage, version=n).encode(),
    }


def block_text_length(blocks: object) -> int:
    """Characters of text in ``blocks``: what Slack's undocumented aggregate cap counts
    (every ``text`` string at any depth: sections, headers, context elements, buttons)."""
    if isinstance(blocks, dict):
        return sum(
            len(value) if key == "text" and isinstance(value, str) else block_text_length(value)
            for key, value in blocks.items()
        )
    if isinstance(blocks, list):
        return sum(block_text_length(item) for item in blocks)
    return 0


def story_messages(
    session: Session,
    version: StoryVersion,
    *,
    state: StoryState,
    approved_by: str | None = None,
) -> list[Rendered]:
    """The story message (first element, edited in place) and its continuation messages.

    Any story fits: long text is split into sections of at most 3,000 characters, and sections
    that would break the 50-block or ~11k-character message limits move to continuation
    messages. Review buttons stay on the first message, which is the one users act on.
    """
    n = version.number
    story = version.story
    title = truncate(escape(" ".join(story.title.split()) or "Untitled story"), HEADER_MAX_CHARS)
    head: list[Block] = [{"type": "header", "block_id": f"v{n}_title", "text": plain_text(title)}]
    if state == "regenerating":
        head.append(context(f"v{n}_regenerating", "🔄 Regenerating story…"))
    meta = (
        f"Story v{n} · target {session.duration_s:,} s · {story.word_count:,} words"
        f" · {version.usage.total_tokens:,} tokens"
    )
    if version.restored_from is not None:
        meta += f" · restored from v{version.restored_from}"
    head.append(context(f"v{n}_meta", meta))
    tail = _story_footer(session, n, state, approved_by or session.approved_by)

    longest_note = len(f"Story v{n} (continued, part 99999/99999)")
    pages = paginate(head, _story_body(story, n), tail, note_chars=longest_note)
    count = len(pages)
    messages = [rendered(f"Story v{n}: {title}", pages[0])]
    for k, page in enumerate(pages[1:], start=2):
        note = f"Story v{n} (continued, part {k}/{count})"
        blocks = [context(f"v{n}_part{k}", note), *page]
        messages.append(rendered(f"{note}: {title}", blocks))
    return messages


def _story_footer(session: Session, n: int, state: StoryState, approver: str | None) -> list[Block]:
    if state == "review":
        value = ButtonValue(session=session.id, version=n)
        buttons = [
            button("Approve", ActionId.APPROVE, value, style="primary"),
            button("Regenerate", ActionId.REGENERATE, value),
        ]
        if n > 1:  # with one version there is nothing to compare or restore
            buttons.append(versions_button(session, Stage.STORY, n))
        # The version in the block id lets a click from a stale client be told apart.
        return [{"type": "actions", "block_id": f"review_v{n}", "elements": buttons}]
    if state == "approved":
        by = f" by {mention(approver)}" if approver else ""
        return [context(f"v{n}_approved", f"✅ Approved v{n}{by}")]
    if state == "superseded":
        return [context(f"v{n}_superseded", "⏭️ Superseded by a newer version")]
    return []


def _story_body(story: Story, n: int) -> list[Block]:
    """Logline, narrative and scenes as sections of at most 3,000 characters each."""
    texts: list[str] = []
    title = escape(" ".join(story.title.split()))
    if len(title) > HEADER_MAX_CHARS:
        # The header holds 150 characters: a longer title is shown whole here too.
        texts += split_text("*Title:* " + title, SECTION_MAX_CHARS)
    if story.logline.strip():
        texts += split_text("*Logline:* " + escape(story.logline), SECTION_MAX_CHARS)
    texts += split_text(escape(story.narrative), SECTION_MAX_CHARS)
    blocks = [section(f"v{n}_b{i}", t) for i, t in enumerate(texts)]
    if story.scenes:
        blocks.append({"type": "divider", "block_id": f"v{n}_scenes"})
    start = 0
    for scene in story.scenes:
        for text in split_text(_scene_text(scene, start), SECTION_MAX_CHARS):
            blocks.append(section(f"v{n}_b{len(blocks)}", text))
        start += scene.duration_s
    return blocks


def _scene_text(scene: Scene, start_s: int) -> str:
    span = f"{clock(start_s)}\N{EN DASH}{clock(start_s + scene.duration_s)}"
    return (
        f"*Scene {scene.number} · {span} · {scene.duration_s} s*\n"
        f"*Visuals:* {escape(scene.visuals)}\n"
        f"*Voice-over:* {escape(scene.voiceover)}"
    )


def clock(seconds: int) -> str:
    """``m:ss``, the way timings read on a script or a shot list."""
    return f"{seconds // 60}:{seconds % 60:02d}"


def paginate(
    head: list[Block],
    body: Sequence[Block],
    tail: list[Block],
    *,
    note_chars: int,
    continues: str = "Script continues below ↓",
    tail_last: bool = False,
) -> list[list[Block]]:
    """Lay ``body`` out over as many messages as the block-count and text budgets require.

    The first message is ``head + body… + tail``. When the body doesn't fit, the first message
    also gets a ``continues`` note and each later one is left room for a one-line part note
    of at most ``note_chars`` characters (added by the caller, who knows the part count).
    ``tail`` (the buttons and state footer) goes on the first message, or with ``tail_last`` on
    the last one: a list read top to bottom is acted on at its end, the bottom of the thread.
    """
    fixed = [*head, *tail]
    if (
        len(fixed) + len(body) <= MAX_BLOCKS
        and block_text_length([*fixed, *body]) <= MESSAGE_TEXT_BUDGET
    ):
        return [[*head, *body, *tail]]

    note = context("continues", continues)
    # Every later page keeps room for the tail too when it may end up on it: which page is the
    # last is only known once the body has been laid out.
    later_blocks = MAX_BLOCKS - 1 - (len(tail) if tail_last else 0)
    later_chars = MESSAGE_TEXT_BUDGET - note_chars - (block_text_length(tail) if tail_last else 0)
    pages: list[list[Block]] = [[]]
    blocks_left = MAX_BLOCKS - len(fixed) - 1
    chars_left = MESSAGE_TEXT_BUDGET - block_text_length([*fixed, note])
    for block in body:
        size = block_text_length(block)
        if pages[-1] and (blocks_left < 1 or size > chars_left):
            pages.append([])
            blocks_left, chars_left = later_blocks, later_chars
        pages[-1].append(block)
        blocks_left -= 1
        chars_left -= size
    if tail_last:
        pages[0] = [*head, *pages[0], note]
        pages[-1] = [*pages[-1], *tail]
    else:
        pages[0] = [*head, *pages[0], note, *tail]
    return pages
