"""Pure Block Kit builders: every screen Storyloop shows in Slack, from domain objects.

No client, no I/O, no LLM: the job that delivers a message decides *when*, these decide *what*,
so every screen is unit-tested against Slack's limits and escaping rules. User- and LLM-written
text is always escaped here; the only live control sequences in the output are the mentions the
builders put there on purpose. The story message, which can outgrow one Slack message, lives in
``story_blocks``, the images' and storyboard's screens in ``stage_blocks``, the video's (plan,
render, review, the end of the session) in ``video_blocks``; all are re-exported, so callers
import ``bot.slack.blocks`` only. Stage words (labels, titles, what a stage makes) come from
``bot.pipeline.stages``; this layer adds only its voice (:data:`STAGE_DOING`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.pipeline.approvals import approvers_of, current_votes
from bot.pipeline.models import Session, Stage, Status, StoryVersion
from bot.pipeline.review import approvers_phrase
from bot.pipeline.stages import REGISTRY, definition, next_stage
from bot.slack.actions import (
    TONE_MAX_CHARS,
    ActionId,
    ButtonValue,
)
from bot.slack.mrkdwn import escape, mention, split_text, truncate
from bot.slack.stage_blocks import (
    ReviewState,
    collected,
    image_file_title,
    image_filename,
    images_progress,
    images_progress_done,
    images_review,
    safe_url,
    stage_failure,
    stage_title,
    storyboard_filename,
    storyboard_markdown,
    storyboard_messages,
    storyboard_progress,
    storyboard_progress_done,
    unavailable_title,
    usd,
)
from bot.slack.start_blocks import start_modal
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
    one_line,
    rendered,
    section,
    story_messages,
)
from bot.slack.video_blocks import (
    ClipProgress,
    PlanState,
    RenderOutcome,
    session_complete,
    video_cancelled,
    video_failure,
    video_plan,
    video_progress,
    video_progress_done,
    video_review,
)

__all__ = [
    "BUTTON_TEXT_MAX_CHARS",
    "FALLBACK_TEXT_MAX_CHARS",
    "HEADER_MAX_CHARS",
    "MAX_BLOCKS",
    "MESSAGE_TEXT_BUDGET",
    "SECTION_MAX_CHARS",
    "STAGE_DOING",
    "Block",
    "ClipProgress",
    "Doing",
    "PlanState",
    "RenderOutcome",
    "Rendered",
    "ReviewState",
    "StoryState",
    "approved_notice",
    "block_text_length",
    "collected",
    "ephemeral",
    "failure_final",
    "failure_message",
    "feedback_reply",
    "feedback_reply_draft",
    "generating_placeholder",
    "image_file_title",
    "image_filename",
    "images_progress",
    "images_progress_done",
    "images_review",
    "safe_url",
    "session_card",
    "session_complete",
    "stage_failure",
    "stage_title",
    "stage_updated_notice",
    "start_modal",
    "story_messages",
    "story_updated_notice",
    "storyboard_filename",
    "storyboard_markdown",
    "storyboard_messages",
    "storyboard_progress",
    "storyboard_progress_done",
    "unavailable_title",
    "usd",
    "video_cancelled",
    "video_failure",
    "video_plan",
    "video_progress",
    "video_progress_done",
    "video_review",
    "vote_notice",
]

PROMPT_EXCERPT_CHARS = 300
SUMMARY_MAX_CHARS = 500
REASON_MAX_CHARS = 500
MAX_MENTIONED_AUTHORS = 10


@dataclass(frozen=True)
class Doing:
    """How the card words a stage at work: "🎨 Making the reference images…". The words for
    *what* is made come from the stage registry; this is only the Slack layer's voice."""

    emoji: str
    verb: str
    plural: bool = False  # "Reference images v2 are awaiting review"
    # What the stage does first once the one before it is approved, when that isn't ``verb``:
    # the video is planned (its cost shown for confirmation) before anything is made.
    starts: str | None = None


# One entry per registry stage (a unit test checks it); an unknown stage gets _DEFAULT_DOING.
STAGE_DOING: Mapping[Stage, Doing] = {
    Stage.STORY: Doing("✍️", "Writing"),
    Stage.REFERENCE_IMAGE: Doing("🎨", "Making", plural=True),
    Stage.STORYBOARD: Doing("🎬", "Drafting"),
    Stage.VIDEO: Doing("🎞️", "Making", starts="Planning"),
}
_DEFAULT_DOING = Doing("⏳", "Making")
_IN_PROGRESS = {Status.STARTING, Status.GENERATING, Status.REGENERATING, Status.AWAITING_REVIEW}
_QUOTE_OPEN = "\N{LEFT DOUBLE QUOTATION MARK}"
_QUOTE_CLOSE = "\N{RIGHT DOUBLE QUOTATION MARK}"


def session_card(
    session: Session,
    *,
    progress: str | None = None,
    links: Sequence[tuple[str, str | None]] = (),
) -> Rendered:
    """The thread's root message: who is writing what, and where the session stands.

    ``progress``: live words for a long generation (the video's "clip 3 of 6 · 40 %"), shown
    in place of the status line while it runs. ``links``: (label, permalink) of every approved
    artifact, shown once the session is complete."""
    excerpt = escape(truncate(one_line(session.prompt), PROMPT_EXCERPT_CHARS))
    headline = (
        f"🎬 {mention(session.owner_id)} is writing a {session.duration_s:,} s story: "
        f"{_QUOTE_OPEN}{excerpt}{_QUOTE_CLOSE}"
    )
    body = headline
    if session.tone and session.tone.strip():
        body += f"\nTone: {escape(truncate(one_line(session.tone), TONE_MAX_CHARS))}"
    lines = [_stage_tracker(session)]
    if progress:
        lines.append(escape(truncate(one_line(progress), 300)))
    elif status := _status_line(session):
        lines.append(status)
    if who := _approvers_line(session):
        lines.append(who)
    # The latest approval of each stage: at most one line per stage, so the context block
    # stays within Slack's 10 elements (tracker + status + approvers + 4 stages + 2 costs;
    # the links of a complete session replace the approvers line).
    for stage_def in REGISTRY:
        if approval := session.approval(stage_def.stage):
            by = _and_list([mention(u) for u in approvers_of(session, stage_def.stage)])
            lines.append(f"{stage_def.title} v{approval.version} approved by {by}")
    # A plan waiting for confirmation states its estimate in the status line; a cancelled one
    # has nothing under way to estimate.
    waiting = session.status in (Status.AWAITING_CONFIRMATION, Status.CANCELLED)
    if session.estimate_usd is not None and not waiting:
        lines.append(f"💵 Estimated {usd(session.estimate_usd)} for this generation")
    if session.spent_usd > 0:
        lines.append(f"💵 Spent so far: {usd(session.spent_usd)}")
    if links:
        lines.append(" · ".join(_link(label, url) for label, url in links))
    return rendered(headline, [section("card_title", body), context("card_stages", *lines)])


def _and_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _approvers_line(session: Session) -> str | None:
    """Who may approve this session's steps, and — under a quorum — who already has."""
    if session.stage is Stage.COMPLETE or session.status in (Status.DONE, Status.UNPOSTABLE):
        return None
    line = f"👥 Approves: {approvers_phrase(session)}"
    confirming = session.status is Status.AWAITING_CONFIRMATION
    votes = current_votes(
        session,
        session.stage,
        session.plan if confirming else session.version,
        act="confirm" if confirming else "approve",
    )
    if votes:
        needed = session.policy.votes_needed
        names = _and_list([mention(v.user_id) for v in votes])
        line += f" — {len(votes)} of {needed} so far: {names}"
    return line


def _link(label: str, url: str | None) -> str:
    text = escape(truncate(one_line(label), 80))
    if url and safe_url(url):
        return f"<{url.replace('&', '&amp;')}|{text}>"
    return text


def _stage_tracker(session: Session) -> str:
    """``Story ✅ · Images ⏳ · Storyboard · Video``: done, current (with its state), to come."""
    stages = [d.stage for d in REGISTRY]
    current = stages.index(session.stage) if session.stage in stages else len(stages)
    parts: list[str] = []
    for index, stage_def in enumerate(REGISTRY):
        label = stage_def.label
        if index < current:
            parts.append(f"{label} ✅")
        elif index > current:
            parts.append(label)
        elif session.status in _IN_PROGRESS:
            parts.append(f"{label} ⏳")
        elif session.status is Status.FAILED:
            parts.append(f"{label} ⚠️")
        elif session.status is Status.AWAITING_CONFIRMATION:
            parts.append(f"{label} 💵")
        elif session.status is Status.CANCELLED:
            parts.append(f"{label} 🚫")
        elif session.status is Status.QUEUED:
            parts.append(f"{label} (not available yet)")
        else:
            parts.append(label)
    return " · ".join(parts)


def _status_line(session: Session) -> str | None:
    """The current stage's state in plain words; a stage this version can't make says so."""
    stage_def = definition(session.stage)
    if stage_def is None:
        return "🎉 Complete"
    doing = STAGE_DOING.get(session.stage, _DEFAULT_DOING)
    status = session.status
    if status is Status.STARTING:
        return "⏳ Starting…"
    if status is Status.GENERATING:
        return f"{doing.emoji} {doing.verb} {stage_def.artifact}…"
    if status is Status.REGENERATING:
        return f"{doing.emoji} {doing.verb} a new version of {stage_def.artifact}…"
    if status is Status.AWAITING_REVIEW:
        version = f" v{session.version}" if session.version else ""
        verb = "are" if doing.plural else "is"
        return f"👀 {stage_def.title}{version} {verb} awaiting review in the thread"
    if status is Status.FAILED:
        reason = escape(truncate(one_line(session.failure or "Generation failed"), 300))
        return f"⚠️ {reason} — Retry is offered in the thread"
    if status is Status.AWAITING_CONFIRMATION:
        estimate = f" ≈ {usd(session.estimate_usd)}" if session.estimate_usd is not None else ""
        return f"💵 {stage_def.title} plan{estimate} is waiting for confirmation in the thread"
    if status is Status.CANCELLED:
        return f"🚫 {stage_def.title} cancelled — a new plan is offered in the thread"
    if status is Status.QUEUED:
        return (
            f"{stage_def.title} isn't available in this version of Storyloop yet — "
            "everything approved so far is collected in the thread."
        )
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
        working = escape(truncate(one_line(title), HEADER_MAX_CHARS))
        blocks.append(section("working_title", f"*Working title:* {working}"))
    if chars > 0:
        progress = f"Writing… {chars:,} characters so far · {max(elapsed_s, 0.0):.0f} s"
        blocks.append(context("progress", progress))
    return rendered(headline, blocks)


def story_updated_notice(version: StoryVersion) -> Rendered:
    """Thread notice for a new version: editing the story message in place notifies no one."""
    return stage_updated_notice(Stage.STORY, version.number, version.summary_of_changes)


def stage_updated_notice(stage: Stage, number: int, summary: str) -> Rendered:
    """Thread notice that ``stage`` has a new version, with what changed when it is known."""
    text = f"{stage_title(stage)} updated to v{number}"
    if summary := one_line(summary):
        text += f": {escape(truncate(summary, SUMMARY_MAX_CHARS))}"
    return rendered(text, [section(f"{stage}_updated", text)])


def approved_notice(
    stage: Stage, user_id: str, version: int, *, co_approvers: Sequence[str] = ()
) -> Rendered:
    """Thread notice for an approval: what starts next, or honestly that nothing can yet.
    ``co_approvers``: under a quorum, the people whose approvals came first."""
    by = _and_list([mention(u) for u in (*co_approvers, user_id)])
    text = f"✅ {stage_title(stage)} approved (v{version} by {by})!"
    upcoming = definition(next_stage(stage))
    note: str | None = None
    if upcoming is None:
        text += " The session is complete."
    elif upcoming.available:
        doing = STAGE_DOING.get(upcoming.stage, _DEFAULT_DOING)
        text += f" {doing.starts or doing.verb} {upcoming.artifact}…"
    else:
        note = (
            f"{upcoming.title} isn't available in this version of Storyloop yet — "
            "everything approved so far is collected below."
        )
    blocks = [section("approved", text)]
    if note:
        blocks.append(context("approved_next", note))
    return rendered(text, blocks)


def vote_notice(
    stage: Stage, act: str, version: int, user_id: str, *, have: int, needed: int
) -> Rendered:
    """Thread notice for one approval towards a quorum: who, which version, how many to go."""
    what = (
        f"confirmed the video plan {version}"
        if act == "confirm"
        else (f"approved {stage_title(stage)} v{version}")
    )
    text = (
        f"👍 {mention(user_id)} {what} — {have} of {needed} approvals. {needed - have} more to go."
    )
    return rendered(text, [section("vote", text)])


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


def feedback_reply_draft(partial: str, author_ids: Sequence[str]) -> Rendered:
    """An answer still being written, where it can't be streamed: the text so far (escaped,
    like the answer) and a note that more is coming. ``feedback_reply`` replaces it."""
    shown = feedback_reply(partial, author_ids)
    note = context("reply_writing", "✍️ still writing…")
    return rendered(shown.text, [*shown.blocks, note])


def failure_message(session: Session, reason: str, *, retry_version: int) -> Rendered:
    """A retryable failure in plain words, with a Retry button bound to the session."""
    text = f"⚠️ {escape(truncate(one_line(reason), REASON_MAX_CHARS))}"
    value = ButtonValue(session=session.id, version=retry_version)
    actions = {
        "type": "actions",
        "block_id": f"retry_v{retry_version}",
        "elements": [button("Retry", ActionId.RETRY, value)],
    }
    return rendered(text, [section("failure", text), actions])


def failure_final(reason: str) -> Rendered:
    """A failure with nothing left to retry: the words only, no button that can't work."""
    text = f"⚠️ {escape(truncate(one_line(reason), REASON_MAX_CHARS))}"
    return rendered(text, [section("failure", text)])


def ephemeral(text: str, *, trusted: bool = False) -> Rendered:
    """A one-section message for one user. ``trusted`` is for text the app composed itself
    (with intended mentions); everything else is escaped."""
    body = truncate(text if trusted else escape(text), SECTION_MAX_CHARS)
    return rendered(body, [section("ephemeral", body)])
