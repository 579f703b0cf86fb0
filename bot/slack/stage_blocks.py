"""Block Kit builders of the stages after the story: reference images, then the storyboard.

Pure like the rest of ``bot.slack``: domain objects in, JSON-ready dicts out; ``bot.slack.blocks``
re-exports everything public. Images and shots are LLM-written, so every name, prompt, role,
action and audio line is escaped; the only live control sequences are the approver's mention
and the permalinks of :func:`collected`, which are checked before they are linked.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Literal

from bot.pipeline.artifacts import (
    ImageArtifact,
    ImageOutcome,
    ImageSetVersion,
    ImageSpec,
    Shot,
    StoryboardVersion,
)
from bot.pipeline.models import Session, Stage
from bot.pipeline.stages import REGISTRY, definition
from bot.slack.actions import ActionId, StageButtonValue
from bot.slack.mrkdwn import escape, mention, split_text, truncate
from bot.slack.story_blocks import (
    MESSAGE_TEXT_BUDGET,
    SECTION_MAX_CHARS,
    Block,
    Rendered,
    button,
    clock,
    context,
    one_line,
    paginate,
    plain_text,
    rendered,
    section,
    versions_button,
)

__all__ = [
    "ReviewState",
    "collected",
    "image_file_title",
    "image_filename",
    "images_progress",
    "images_progress_done",
    "images_review",
    "safe_url",
    "stage_failure",
    "stage_title",
    "storyboard_filename",
    "storyboard_markdown",
    "storyboard_messages",
    "storyboard_progress",
    "storyboard_progress_done",
    "unavailable_title",
    "usd",
]

ReviewState = Literal["review", "approved", "superseded"]

# Per-image caps, sized so ten images of maximal text stay under MESSAGE_TEXT_BUDGET (11k).
IMAGE_NAME_MAX_CHARS = 100
IMAGE_ROLE_MAX_CHARS = 300
PROMPT_EXCERPT_MAX_CHARS = 300
IMAGE_FAILURE_MAX_CHARS = 200
# Settings cap a set at 10 images; more would only ever be listed up to here, never overflow.
MAX_IMAGES_SHOWN = 10
REASON_MAX_CHARS = 500
FILE_TITLE_MAX_CHARS = 250
FILENAME_MAX_CHARS = 80
LINK_LABEL_MAX_CHARS = 200
URL_MAX_CHARS = 1000
_UNSAFE_URL = re.compile(r"[|<>\s]")


def usd(amount: float) -> str:
    """Money as people read it: ``$0.20``, ``$1,234.50``; under ten cents three decimals
    (``$0.042``), since image prices are a few cents and ``$0.04`` would hide the difference."""
    amount = max(amount, 0.0)
    if amount > 0 and round(amount, 3) < 0.1:
        return f"${amount:.3f}"
    return f"${amount:,.2f}"


def stage_title(stage: Stage) -> str:
    """A version's heading ("Reference images"), from the registry; one word for ``complete``."""
    found = definition(stage)
    return found.title if found else "Everything"


def unavailable_title() -> str | None:
    """The first stage this version of Storyloop can't make ("Video"), if any."""
    return next((d.title for d in REGISTRY if not d.available), None)


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


# --- progress ---------------------------------------------------------------------------------


def images_progress(
    session: Session, number: int, *, done: int, total: int, planning: bool = False
) -> Rendered:
    """The progress message of an image set being made: which image, out of how many.

    ``session`` keeps the signature stable should progress ever show more of it.
    """
    if planning:
        text = f"🎨 Planning the reference images (v{number})…"
    elif total > 0:
        current = min(max(done, 0) + 1, total)
        text = f"🎨 Making reference images (v{number}) · image {current} of {total}…"
    else:
        text = f"🎨 Making reference images (v{number})…"
    return rendered(text, [section("progress", text)])


def images_progress_done(number: int, made: int, total: int) -> Rendered:
    """The progress message once the set is in: it stays in the thread, so it says the outcome."""
    text = f"🎨 Reference images v{number}"
    text += f": {made} of {total} made — review below." if total > 0 else " — review below."
    return rendered(text, [section("progress", text)])


def storyboard_progress(session: Session, number: int) -> Rendered:
    """The storyboard's progress message while the LLM drafts the shot list."""
    text = f"🎬 Drafting the storyboard (v{number})…"
    return rendered(text, [section("progress", text)])


def storyboard_progress_done(number: int) -> Rendered:
    text = f"🎬 Storyboard v{number} drafted — review below."
    return rendered(text, [section("progress", text)])


# --- reference images -------------------------------------------------------------------------


def image_file_title(spec: ImageSpec) -> str:
    """The uploaded file's title, "1 · Hero (character)". Slack file titles are plain text
    (never parsed as mrkdwn), so the name is not escaped, only put on one line and capped."""
    name = one_line(spec.name) or "Untitled"
    return truncate(f"{spec.index} · {name} ({spec.kind})", FILE_TITLE_MAX_CHARS)


def image_filename(spec: ImageSpec, version: int) -> str:
    """``v2-1-hero.png``: an ASCII slug any tool, OS or download folder takes as is."""
    ascii_name = unicodedata.normalize("NFKD", spec.name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    prefix = f"v{version}-{spec.index}-"
    room = FILENAME_MAX_CHARS - len(prefix) - len(".png")
    slug = slug[: max(room, 0)].rstrip("-") or "image"
    return f"{prefix}{slug}.png"[-FILENAME_MAX_CHARS:]


def images_review(
    session: Session,
    version: ImageSetVersion,
    *,
    state: ReviewState,
    approver: str | None = None,
) -> Rendered:
    """One version of the reference image set: what each image is for, with a Redo (or Retry)
    per image and Approve / Regenerate all while under review. The images themselves are
    uploaded into the thread as files; this message is the list users act on."""
    stage = Stage.REFERENCE_IMAGE
    n = version.number
    title = f"{stage_title(stage)} v{n}"
    images = version.images
    meta = (
        f"{_plural(len(images), 'image')} · {usd(version.cost_usd)} for this version"
        f" · {usd(session.spent_usd)} spent in this session"
    )
    if version.redo_of is not None:
        meta += f" · redo of image {version.redo_of}"
    if version.restored_from is not None:
        meta += f" · restored from v{version.restored_from}"
    blocks: list[Block] = [
        {"type": "header", "block_id": f"v{n}_title", "text": plain_text(title)},
        context(f"v{n}_meta", meta),
    ]
    for k, image in enumerate(images[:MAX_IMAGES_SHOWN], start=1):
        blocks.append(_image_section(session, n, k, image, review=state == "review"))
    if len(images) > MAX_IMAGES_SHOWN:
        more = len(images) - MAX_IMAGES_SHOWN
        blocks.append(context(f"v{n}_more", f"…and {_plural(more, 'more image')} not listed"))
    hint = "Reply in the thread to say what to change — name the image (e.g. “image 2”)."
    blocks += _review_footer(
        session, stage, n, state, approver, can_approve=version.complete, hint=hint
    )
    return rendered(title, blocks)


def _image_section(
    session: Session, n: int, position: int, image: ImageArtifact, *, review: bool
) -> Block:
    spec = image.spec
    name = truncate(escape(one_line(spec.name)) or "Untitled", IMAGE_NAME_MAX_CHARS)
    role = truncate(escape(one_line(spec.role)), IMAGE_ROLE_MAX_CHARS)
    text = f"*{spec.index} · {name}* ({spec.kind})" + (f" — {role}" if role else "")
    if prompt := truncate(escape(one_line(spec.prompt)), PROMPT_EXCERPT_MAX_CHARS):
        text += f"\n_{prompt}_"
    failed = image.outcome is ImageOutcome.FAILED
    if failed:
        reason = truncate(escape(one_line(image.failure or "")), IMAGE_FAILURE_MAX_CHARS)
        text += f"\n⚠️ Couldn't be made: {reason or 'the image service gave no reason'}"
    # Block ids by position: a set with a repeated index must still have unique ids.
    block = section(f"v{n}_img{position}", text)
    # StageButtonValue bounds items to 1..100; an index beyond that can't be redone by button.
    if review and 1 <= spec.index <= 100:
        value = StageButtonValue(
            session=session.id, stage=Stage.REFERENCE_IMAGE, version=n, item=spec.index
        )
        block["accessory"] = button("Retry" if failed else "Redo", ActionId.REDO, value)
    return block


def _review_footer(
    session: Session,
    stage: Stage,
    n: int,
    state: ReviewState,
    approver: str | None,
    *,
    can_approve: bool,
    hint: str,
) -> list[Block]:
    """Approve / Regenerate under review, else who approved it or that it was superseded."""
    if state == "review":
        value = StageButtonValue(session=session.id, stage=stage, version=n)
        # A stage with per-item Redo says "all", so the two buttons can't be mistaken.
        item = definition(stage)
        label = "Regenerate all" if item and item.item else "Regenerate"
        buttons = [button(label, ActionId.REGENERATE, value)]
        if can_approve:
            buttons.insert(0, button("Approve", ActionId.APPROVE, value, style="primary"))
        if n > 1:  # with one version there is nothing to compare or restore
            buttons.append(versions_button(session, stage, n))
        # The version in the block id lets a click from a stale client be told apart.
        actions = {"type": "actions", "block_id": f"review_v{n}", "elements": buttons}
        return [actions, context(f"v{n}_hint", hint)]
    if state == "approved":
        approval = session.approval(stage)
        if approver is None and approval is not None and approval.version == n:
            approver = approval.user_id
        by = f" by {mention(approver)}" if approver else ""
        return [context(f"v{n}_approved", f"✅ Approved v{n}{by}")]
    return [context(f"v{n}_superseded", "⏭️ Superseded by a newer version")]


# --- storyboard -------------------------------------------------------------------------------


def storyboard_messages(
    session: Session,
    version: StoryboardVersion,
    *,
    state: ReviewState,
    approver: str | None = None,
) -> list[Rendered]:
    """The shot list, over as many messages as it needs (no text is ever dropped).

    Unlike the story, the buttons go on the *last* message: storyboard versions are new
    messages at the bottom of the thread, and a list is acted on where it ends.
    """
    stage = Stage.STORYBOARD
    n = version.number
    title = f"{stage_title(stage)} v{n}"
    meta = (
        f"{_plural(len(version.shots), 'shot')} · {version.total_duration_s:,} s"
        f" (target {session.duration_s:,} s)"
    )
    if version.restored_from is not None:
        meta += f" · restored from v{version.restored_from}"
    head: list[Block] = [
        {"type": "header", "block_id": f"v{n}_title", "text": plain_text(title)},
        context(f"v{n}_meta", meta, f"Also attached as {storyboard_filename(version)}"),
    ]
    hint = "Reply in the thread to say what to change — name the shot (e.g. “shot 3”)."
    tail = _review_footer(session, stage, n, state, approver, can_approve=True, hint=hint)
    longest_note = len(f"{title} (continued, part 99999/99999)")
    pages = paginate(
        head,
        _storyboard_body(version),
        tail,
        note_chars=longest_note,
        continues="Storyboard continues below ↓",
        tail_last=True,
    )
    messages = [rendered(title, pages[0])]
    for k, page in enumerate(pages[1:], start=2):
        note = f"{title} (continued, part {k}/{len(pages)})"
        messages.append(rendered(note, [context(f"v{n}_part{k}", note), *page]))
    return messages


def _storyboard_body(version: StoryboardVersion) -> list[Block]:
    blocks: list[Block] = []
    start = 0
    for shot in version.shots:
        for text in split_text(_shot_text(shot, start), SECTION_MAX_CHARS):
            blocks.append(section(f"v{version.number}_b{len(blocks)}", text))
        start += shot.duration_s
    return blocks


def _shot_text(shot: Shot, start_s: int) -> str:
    span = f"{clock(start_s)}\N{EN DASH}{clock(start_s + shot.duration_s)}"
    framing = ", ".join(p for p in (one_line(shot.shot_type), one_line(shot.camera)) if p)
    heading = f"Shot {shot.number} · Scene {shot.scene} · {span} · {shot.duration_s} s"
    if framing:
        heading += f" · {escape(framing)}"
    uses = ", ".join(escape(one_line(r)) for r in shot.references if r.strip())
    return (
        f"*{heading}*\n{escape(shot.action.strip()) or '—'}\n"
        f"*Audio:* {escape(shot.audio.strip()) or '—'}\n*Uses:* {uses or '—'}"
    )


def storyboard_filename(version: StoryboardVersion) -> str:
    return f"storyboard-v{version.number}.md"


def storyboard_markdown(session: Session, story_title: str, version: StoryboardVersion) -> str:
    """The storyboard as a Markdown file to take elsewhere (an editor, a shoot, a video tool).

    Raw text, not Slack-escaped: it is a file, never parsed as mrkdwn. Only what would break the
    table is escaped: backslashes and pipes, and line breaks become ``<br>``.
    """
    title = one_line(story_title) or "Untitled story"
    lines = [
        f"# {title} — Storyboard v{version.number}",
        "",
        f"Target: {session.duration_s} s · {_plural(len(version.shots), 'shot')}"
        f" · {version.total_duration_s} s in total",
        "",
        "| # | Scene | Start | Dur | Shot | Camera | What we see | Audio | Uses |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    start = 0
    for shot in version.shots:
        cells = [
            str(shot.number),
            str(shot.scene),
            clock(start),
            f"{shot.duration_s} s",
            _cell(shot.shot_type),
            _cell(shot.camera),
            _cell(shot.action),
            _cell(shot.audio),
            _cell(", ".join(shot.references)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
        start += shot.duration_s
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    text = text.strip().replace("\\", "\\\\").replace("|", "\\|")
    return "<br>".join(line.strip() for line in text.splitlines())


# --- the end of the line ----------------------------------------------------------------------


def collected(session: Session, links: Sequence[tuple[str, str | None]]) -> Rendered:
    """Everything approved so far, one link each, once the next stage can't be made here.

    Labels are escaped; a URL is linked only if it is plainly http(s) with nothing in it that
    could close the link or start another control sequence, else the label stands alone.
    ``session`` keeps the signature stable should the list ever need more of it.
    """
    headline = "📦 Everything approved so far, in one place:"
    budget = MESSAGE_TEXT_BUDGET - len(headline) - 200  # room for the notes below
    lines: list[str] = []
    for k, (label, url) in enumerate(links):
        line = f"• {_link(label, url)}"
        if len(line) + 1 > budget:
            lines.append(f"…and {len(links) - k} more")
            break
        lines.append(line)
        budget -= len(line) + 1
    text = "\n".join([headline, *lines])
    # Lines are far shorter than a section, so pieces break between lines, never inside a link.
    blocks = [section(f"collected_{i}", piece) for i, piece in enumerate(split_text(text, 3000))]
    if missing := unavailable_title():
        blocks.append(
            context(
                "collected_next", f"{missing} isn't available in this version of Storyloop yet."
            )
        )
    return rendered(headline, blocks)


def _link(label: str, url: str | None) -> str:
    shown = truncate(escape(one_line(label)), LINK_LABEL_MAX_CHARS) or "Untitled"
    if url is None or not safe_url(url):
        return shown
    return f"{shown} — <{escape(url)}|open>"


def safe_url(url: str) -> bool:
    """Whether ``url`` can go inside ``<url|text>``: http(s), bounded, and nothing that could
    end the link early (``|``, ``>``) or open another sequence (``<``), and no whitespace."""
    return (
        url.startswith(("https://", "http://"))
        and len(url) <= URL_MAX_CHARS
        and _UNSAFE_URL.search(url) is None
    )


def stage_failure(session: Session, reason: str, *, stage: Stage, retry_version: int) -> Rendered:
    """A retryable failure of any stage, in plain words, with Retry bound to that stage."""
    text = f"⚠️ {truncate(escape(one_line(reason)), REASON_MAX_CHARS) or 'Something went wrong'}"
    value = StageButtonValue(session=session.id, stage=stage, version=retry_version)
    actions = {
        "type": "actions",
        "block_id": f"retry_v{retry_version}",
        "elements": [button("Retry", ActionId.RETRY, value)],
    }
    return rendered(text, [section("failure", text), actions])
