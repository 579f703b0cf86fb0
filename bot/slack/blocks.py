"""Pure Block Kit builders: every screen Storyloop shows in Slack, from domain objects.

No client, no I/O, no LLM: the job that delivers a message decides *when*, these decide *what*,
so every screen is unit-tested against Slack's limits and escaping rules. User- and LLM-written
text is always escaped here; the only live control sequences in the output are the mentions the
builders put there on purpose. The story message, which can outgrow one Slack message, lives in
``story_blocks`` and is re-exported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.pipeline.models import Session, Stage, Status, StoryVersion
from bot.slack.actions import (
    DEFAULT_DURATION_S,
    DURATION_ACTION,
    DURATION_BLOCK,
    DURATION_CHOICES_S,
    PROMPT_ACTION,
    PROMPT_BLOCK,
    PROMPT_MAX_CHARS,
    START_MODAL_CALLBACK,
    TONE_ACTION,
    TONE_BLOCK,
    TONE_MAX_CHARS,
    ActionId,
    ButtonValue,
)
from bot.slack.mrkdwn import escape, mention, split_text, truncate
from bot.slack.story_blocks import (
    BUTTON_TEXT_MAX_CHARS,
    FALLBACK_TEXT_MAX_CHARS,
    HEADER_MAX_CHARS,
    MAX_BLOCKS,
    MESSAGE_TEXT_BUDGET,
    SECTION_MAX_CHARS,
    Block,
    Rendered,
    StoryState,
    block_text_length,
    button,
    context,
    plain_text,
    rendered,
    section,
    story_messages,
)

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
    "approved_notice",
    "block_text_length",
    "ephemeral",
    "failure_final",
    "failure_message",
    "feedback_reply",
    "generating_placeholder",
    "session_card",
    "start_modal",
    "story_messages",
    "story_updated_notice",
]

PROMPT_EXCERPT_CHARS = 300
SUMMARY_MAX_CHARS = 500
REASON_MAX_CHARS = 500
MAX_MENTIONED_AUTHORS = 10

_STAGE_LABELS = {
    Stage.STORY: "Story",
    Stage.REFERENCE_IMAGE: "Images",
    Stage.STORYBOARD: "Storyboard",
    Stage.VIDEO: "Video",
}
# What the generator of a stage makes, for "… generation isn't available in this version yet".
_STAGE_ARTIFACTS = {
    Stage.REFERENCE_IMAGE: "image",
    Stage.STORYBOARD: "storyboard",
    Stage.VIDEO: "video",
}
_IN_PROGRESS = {Status.STARTING, Status.GENERATING, Status.REGENERATING, Status.AWAITING_REVIEW}
_QUOTE_OPEN = "\N{LEFT DOUBLE QUOTATION MARK}"
_QUOTE_CLOSE = "\N{RIGHT DOUBLE QUOTATION MARK}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def session_card(session: Session) -> Rendered:
    """The thread's root message: who is writing what, and where the session stands."""
    excerpt = escape(truncate(_one_line(session.prompt), PROMPT_EXCERPT_CHARS))
    headline = (
        f"🎬 {mention(session.owner_id)} is writing a {session.duration_s:,} s story: "
        f"{_QUOTE_OPEN}{excerpt}{_QUOTE_CLOSE}"
    )
    body = headline
    if session.tone and session.tone.strip():
        body += f"\nTone: {escape(truncate(_one_line(session.tone), TONE_MAX_CHARS))}"
    lines = [_stage_tracker(session)]
    if status := _status_line(session):
        lines.append(status)
    if session.approved_by and session.approved_version and session.stage is not Stage.STORY:
        lines.append(
            f"Story v{session.approved_version} approved by {mention(session.approved_by)}"
        )
    return rendered(headline, [section("card_title", body), context("card_stages", *lines)])


def _stage_tracker(session: Session) -> str:
    """``Story ✅ · Images ⏳ · Storyboard · Video``: done, current (with its state), to come."""
    stages = list(_STAGE_LABELS)
    current = stages.index(session.stage) if session.stage in _STAGE_LABELS else len(stages)
    parts: list[str] = []
    for index, stage in enumerate(stages):
        label = _STAGE_LABELS[stage]
        if index < current:
            parts.append(f"{label} ✅")
        elif index > current:
            parts.append(label)
        elif session.status in _IN_PROGRESS:
            parts.append(f"{label} ⏳")
        elif session.status is Status.FAILED:
            parts.append(f"{label} ⚠️")
        elif session.status is Status.QUEUED:
            parts.append(f"{label} (queued)")
        else:
            parts.append(label)
    return " · ".join(parts)


def _status_line(session: Session) -> str | None:
    """The current stage's state in plain words; a queued stage says it isn't built yet."""
    label = _STAGE_LABELS.get(session.stage)
    if label is None:
        return "✅ Complete"
    status = session.status
    if status is Status.STARTING:
        return "⏳ Starting…"
    if status is Status.GENERATING:
        return f"✍️ Writing the {label.lower()}…"
    if status is Status.REGENERATING:
        return f"✍️ Writing a new version of the {label.lower()}…"
    if status is Status.AWAITING_REVIEW:
        version = f" v{session.version}" if session.stage is Stage.STORY and session.version else ""
        return f"👀 {label}{version} is awaiting review in the thread"
    if status is Status.FAILED:
        reason = escape(truncate(_one_line(session.failure or "Generation failed"), 300))
        return f"⚠️ {reason} — Retry is offered in the thread"
    if status is Status.QUEUED:
        artifact = _STAGE_ARTIFACTS.get(session.stage, label.lower())
        return f"{label}: queued — {artifact} generation isn't available in this version yet"
    return None


def generating_placeholder(
    session: Session,
    *,
    regenerating: bool,
    title: str | None = None,
    chars: int = 0,
    elapsed_s: float = 0.0,
) -> Rendered:
    """The story message while the LLM writes: honest live progress, no fake percentages.

    ``session`` is taken so the caller's signature stays stable if later stages render their
    own placeholder; the story placeholder needs nothing from it yet.
    """
    headline = "🔄 Regenerating story…" if regenerating else "✍️ Generating your story…"
    blocks = [section("generating", headline)]
    if title and title.strip():
        working = escape(truncate(_one_line(title), HEADER_MAX_CHARS))
        blocks.append(section("working_title", f"*Working title:* {working}"))
    if chars > 0:
        progress = f"Writing… {chars:,} characters so far · {max(elapsed_s, 0.0):.0f} s"
        blocks.append(context("progress", progress))
    return rendered(headline, blocks)


def story_updated_notice(version: StoryVersion) -> Rendered:
    """Thread notice for a new version: editing the story message in place notifies no one."""
    text = f"Story updated to v{version.number}"
    if summary := _one_line(version.summary_of_changes):
        text += f": {escape(truncate(summary, SUMMARY_MAX_CHARS))}"
    return rendered(text, [section("story_updated", text)])


def approved_notice(user_id: str, version: int) -> Rendered:
    """Thread notice for an approval, honest that the next stage is only queued for now."""
    text = f"✅ Story approved (v{version} by {mention(user_id)})! Generating reference images…"
    note = "The Images stage is queued: image generation isn't available in this version yet."
    return rendered(text, [section("approved", text), context("approved_next", note)])


def feedback_reply(reply: str, author_ids: Sequence[str]) -> Rendered:
    """The assistant's answer to thread feedback, addressed to the people who gave it."""
    authors = list(dict.fromkeys(a for a in author_ids if a))
    addressed = ""
    if authors:
        names = ", ".join(mention(a) for a in authors[:MAX_MENTIONED_AUTHORS])
        extra = len(authors) - MAX_MENTIONED_AUTHORS
        addressed = f"Replying to {names}" + (f" and {extra} more" if extra > 0 else "")
    budget = MESSAGE_TEXT_BUDGET - len(addressed)
    answer = truncate(escape(reply.strip()), budget)
    pieces = split_text(answer, SECTION_MAX_CHARS)
    # At least one section: a blank answer still gets a visible (if terse) reply.
    blocks = [section(f"reply_{i}", piece) for i, piece in enumerate(pieces or ["…"])]
    if addressed:
        blocks.append(context("reply_authors", addressed))
    return rendered(answer or addressed or "…", blocks)


def failure_message(session: Session, reason: str, *, retry_version: int) -> Rendered:
    """A retryable failure in plain words, with a Retry button bound to the session."""
    text = f"⚠️ {escape(truncate(_one_line(reason), REASON_MAX_CHARS))}"
    value = ButtonValue(session=session.id, version=retry_version)
    actions = {
        "type": "actions",
        "block_id": f"retry_v{retry_version}",
        "elements": [button("Retry", ActionId.RETRY, value)],
    }
    return rendered(text, [section("failure", text), actions])


def failure_final(reason: str) -> Rendered:
    """A failure with nothing left to retry: the words only, no button that can't work."""
    text = f"⚠️ {escape(truncate(_one_line(reason), REASON_MAX_CHARS))}"
    return rendered(text, [section("failure", text)])


def ephemeral(text: str, *, trusted: bool = False) -> Rendered:
    """A one-section message for one user. ``trusted`` is for text the app composed itself
    (with intended mentions); everything else is escaped."""
    body = truncate(text if trusted else escape(text), SECTION_MAX_CHARS)
    return rendered(body, [section("ephemeral", body)])


def start_modal(*, channel_id: str, prompt: str = "") -> dict[str, Any]:
    """The "new story" modal; ``private_metadata`` carries the channel the story will live in."""
    prompt_input: Block = {
        "type": "plain_text_input",
        "action_id": PROMPT_ACTION,
        "multiline": True,
        "max_length": PROMPT_MAX_CHARS,
        "placeholder": plain_text("An eco water bottle launch, told by the bottle"),
    }
    if prompt.strip():
        # Input values are not parsed as mrkdwn: escaping would show users "&amp;".
        prompt_input["initial_value"] = prompt.strip()[:PROMPT_MAX_CHARS]
    options = [
        {"text": plain_text(f"{seconds} s"), "value": str(seconds)}
        for seconds in DURATION_CHOICES_S
    ]
    initial = options[DURATION_CHOICES_S.index(DEFAULT_DURATION_S)]
    return {
        "type": "modal",
        "callback_id": START_MODAL_CALLBACK,
        "private_metadata": channel_id,
        "title": plain_text("New story"),
        "submit": plain_text("Start"),
        "close": plain_text("Cancel"),
        "blocks": [
            {
                "type": "input",
                "block_id": PROMPT_BLOCK,
                "label": plain_text("What is the story about?"),
                "element": prompt_input,
            },
            {
                "type": "input",
                "block_id": DURATION_BLOCK,
                "label": plain_text("Video length"),
                "element": {
                    "type": "static_select",
                    "action_id": DURATION_ACTION,
                    "options": options,
                    "initial_option": initial,
                },
            },
            {
                "type": "input",
                "block_id": TONE_BLOCK,
                "optional": True,
                "label": plain_text("Tone"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": TONE_ACTION,
                    "max_length": TONE_MAX_CHARS,
                    "placeholder": plain_text("e.g. playful, cinematic, heartfelt"),
                },
            },
        ],
    }
