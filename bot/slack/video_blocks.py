"""Block Kit builders of the video stage: the cost plan to confirm, the live render, the review,
and the end of the session.

Pure like the rest of ``bot.slack``: domain objects in, JSON-ready dicts out; ``bot.slack.blocks``
re-exports everything public. Video is paid, so every screen that can lead to spending says what
it will cost *before* the button that spends it, and a render can be stopped while it runs.
Prompts, reference names, model and size come from the LLM, the provider or settings and are
escaped; the only live control sequences are the mentions of who confirmed, cancelled or
approved, and the permalinks of :func:`session_complete`, which are checked before they are
linked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from bot.pipeline.artifacts import ClipPlan, ClipResult, VideoPlan, VideoVersion
from bot.pipeline.models import Session, Stage
from bot.slack.actions import ActionId, StageButtonValue
from bot.slack.mrkdwn import escape, mention, split_text, truncate
from bot.slack.stage_blocks import (
    LINK_LABEL_MAX_CHARS,
    ReviewState,
    safe_url,
    stage_failure,
    usd,
)
from bot.slack.story_blocks import (
    MAX_BLOCKS,
    MESSAGE_TEXT_BUDGET,
    SECTION_MAX_CHARS,
    Block,
    Rendered,
    block_text_length,
    button,
    context,
    one_line,
    plain_text,
    rendered,
    section,
    versions_button,
)

__all__ = [
    "ClipProgress",
    "PlanState",
    "RenderOutcome",
    "session_complete",
    "video_cancelled",
    "video_failure",
    "video_plan",
    "video_progress",
    "video_progress_done",
    "video_review",
]

PlanState = Literal["confirm", "confirmed", "cancelled", "superseded"]
RenderOutcome = Literal["done", "cancelled", "failed"]
# One clip of a render under way: (clip number, state word, percent of that clip).
ClipProgress = tuple[int, str, int]

VIDEO = Stage.VIDEO
# Per-clip caps of the plan: thirty clips of maximal text stay well under MESSAGE_TEXT_BUDGET.
PROMPT_EXCERPT_MAX_CHARS = 200
REFERENCE_MAX_CHARS = 60
SETTING_MAX_CHARS = 60  # the model and size named in the plan's meta line
# A render's clip lines and a review's scenes are listed up to here (a plan has at most 30).
MAX_CLIPS_SHOWN = 40
MAX_SCENES_SHOWN = 40
# Room kept for an "…and K more" note when a list had to stop early.
_MORE_NOTE_CHARS = 60

_CLIP_STATES = {
    "queued": "🕓 queued",
    "rendering": "⏳ rendering",
    "downloading": "⬇️ downloading",
    "done": "✅ done",
    "failed": "⚠️ failed",
}


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def _seconds(value: float) -> str:
    """``30 s``, ``29.5 s``: a duration without a trailing ``.0``."""
    value = max(value, 0.0)
    shown = f"{value:,.1f}".removesuffix(".0")
    return f"{shown} s"


def _by(user_id: str | None) -> str:
    return f" by {mention(user_id)}" if user_id else ""


def _value(session: Session, version: int, item: int | None = None) -> StageButtonValue:
    return StageButtonValue(session=session.id, stage=VIDEO, version=version, item=item)


# --- the plan ---------------------------------------------------------------------------------


def video_plan(
    session: Session,
    plan: VideoPlan,
    *,
    state: PlanState,
    by: str | None = None,
) -> Rendered:
    """The cost plan of a render: which clips, at what length, from which reference image, and
    what it will cost, with Generate / Cancel while it waits for a confirmation.

    The same message is edited through its states: ``confirm`` (the buttons), ``confirmed`` or
    ``cancelled`` (by whom), ``superseded`` (a newer plan replaced it).
    """
    n = plan.number
    title = "Video plan"
    if plan.redo_of is not None:
        title += f" — redo of scene {plan.redo_of}"
    estimate = f"≈ {usd(plan.estimate_usd)}"
    head: list[Block] = [
        {"type": "header", "block_id": f"plan{n}_title", "text": plain_text(title)},
        context(f"plan{n}_meta", _plan_meta(session, plan)),
    ]
    cost = section(f"plan{n}_estimate", f"*Estimated cost: {estimate}* (before anything is spent)")
    tail = [cost, *_plan_footer(session, n, state, by, estimate)]
    fixed = block_text_length([*head, *tail])
    budget = MESSAGE_TEXT_BUDGET - fixed - _MORE_NOTE_CHARS
    blocks_left = MAX_BLOCKS - len(head) - len(tail) - 1
    body = _clip_sections(n, plan.clips, budget=budget, blocks=blocks_left)
    fallback = f"{title}: {_plural(len(plan.clips), 'clip')}, {estimate}"
    return rendered(fallback, [*head, *body, *tail])


def _plan_meta(session: Session, plan: VideoPlan) -> str:
    used = sum(c.scene_s for c in plan.clips)
    length = f"{used:,} s of video"
    if plan.redo_of is None:
        length += f" (target {session.duration_s:,} s)"
    else:
        length += f" (scene {plan.redo_of} only)"
    parts = [_plural(len(plan.clips), "clip"), length]
    if plan.seconds != used:
        # What is billed: the provider renders whole clips, the video uses part of some.
        parts.append(f"{plan.seconds:,} s rendered")
    model = truncate(escape(one_line(plan.model)), SETTING_MAX_CHARS) or "default"
    size = truncate(escape(one_line(plan.size)), SETTING_MAX_CHARS) or "default"
    parts += [f"model {model}", f"size {size}"]
    parts.append(f"voice-over {'on' if plan.voiceover else 'off'}")
    return " · ".join(parts)


def _clip_line(clip: ClipPlan, part: int, parts: int) -> str:
    scene = f"Scene {clip.scene}" + (f", clip {part} of {parts}" if parts > 1 else "")
    line = f"*{scene}* · {clip.seconds} s clip ({clip.scene_s} s used)"
    reference = truncate(escape(one_line(clip.reference or "")), REFERENCE_MAX_CHARS)
    line += f" · ref: {reference}" if reference else " · no reference image"
    if prompt := truncate(escape(one_line(clip.prompt)), PROMPT_EXCERPT_MAX_CHARS):
        line += f" — _{prompt}_"
    return line


def _clip_sections(n: int, clips: Sequence[ClipPlan], *, budget: int, blocks: int) -> list[Block]:
    """One line per clip, packed into sections, as many as the message has room for."""
    per_scene: dict[int, int] = {}
    for clip in clips:
        per_scene[clip.scene] = per_scene.get(clip.scene, 0) + 1
    seen: dict[int, int] = {}
    lines: list[str] = []
    for k, clip in enumerate(clips):
        seen[clip.scene] = seen.get(clip.scene, 0) + 1
        line = _clip_line(clip, seen[clip.scene], per_scene[clip.scene])
        if len(line) + 1 > budget:
            lines.append(f"…and {_plural(len(clips) - k, 'more clip')}")
            break
        lines.append(line)
        budget -= len(line) + 1
    # Every line is far shorter than a section, so pieces break between lines.
    pieces = split_text("\n".join(lines), SECTION_MAX_CHARS)[: max(blocks, 1)]
    return [section(f"plan{n}_clips{i}", piece) for i, piece in enumerate(pieces)]


def _plan_footer(
    session: Session, n: int, state: PlanState, by: str | None, estimate: str
) -> list[Block]:
    if state == "confirm":
        value = _value(session, n)
        buttons = [
            button(f"Generate video ({estimate})", ActionId.CONFIRM, value, style="primary"),
            button("Cancel", ActionId.CANCEL, value, style="danger"),
        ]
        # The plan's number in the block id lets a click on an outdated plan be told apart.
        actions = {"type": "actions", "block_id": f"plan_v{n}", "elements": buttons}
        hint = "Nothing is paid until someone allowed to approve confirms."
        return [actions, context(f"plan{n}_hint", hint)]
    if state == "confirmed":
        return [context(f"plan{n}_state", f"✅ Confirmed{_by(by)} — rendering…")]
    if state == "cancelled":
        return [context(f"plan{n}_state", f"🚫 Cancelled{_by(by)} — nothing more is spent")]
    return [context(f"plan{n}_state", "⏭️ Replaced by a newer plan")]


# --- the render -------------------------------------------------------------------------------


def video_progress(
    session: Session, number: int, clips: Sequence[ClipProgress], *, total: int
) -> Rendered:
    """The live status of a render: which clip is being made and how far along, one compact
    line per clip, and Cancel to stop spending (clips already made stay paid).

    ``clips`` are ``(clip number, state word, percent)``, the state word one of ``queued``,
    ``rendering``, ``downloading``, ``done`` or ``failed``; ``total`` is how many clips the
    render makes (``clips`` may list only those started so far).
    """
    text = _progress_headline(number, clips, total)
    lines = [_progress_line(index, state, percent) for index, state, percent in clips]
    if len(lines) > MAX_CLIPS_SHOWN:
        more = len(lines) - MAX_CLIPS_SHOWN
        lines = [*lines[:MAX_CLIPS_SHOWN], f"…and {_plural(more, 'more clip')}"]
    blocks: list[Block] = [section("progress", text)]
    for i, piece in enumerate(split_text("\n".join(lines), SECTION_MAX_CHARS)):
        blocks.append(context(f"progress_clips{i}", piece))
    cancel = button("Cancel", ActionId.CANCEL, _value(session, session.plan), style="danger")
    cancel["confirm"] = {
        "title": plain_text("Stop rendering?"),
        "text": plain_text("Clips already made are paid for; nothing more will be spent."),
        "confirm": plain_text("Stop"),
        "deny": plain_text("Keep rendering"),
        "style": "danger",
    }
    blocks.append({"type": "actions", "block_id": f"progress_v{number}", "elements": [cancel]})
    return rendered(text, blocks)


def _progress_headline(number: int, clips: Sequence[ClipProgress], total: int) -> str:
    head = f"🎬 Rendering the video (v{number})"
    done = sum(1 for _, state, _ in clips if state == "done")
    if total > 0 and done >= total:
        return f"{head} · joining the clips…"
    pending = [
        (k, percent)
        for k, (_, state, percent) in enumerate(clips, start=1)
        if state not in ("done", "failed")
    ]
    if pending:
        current, percent = pending[0]
    elif len(clips) < total:  # every listed clip is over; the next one hasn't started yet
        current, percent = len(clips) + 1, 0
    else:
        return f"{head}…" if not clips else f"{head} · {_plural(len(clips) - done, 'clip')} failed"
    shown_total = max(total, current)
    return f"{head} · clip {current} of {shown_total} · {_percent(percent)} %"


def _percent(value: int) -> int:
    return min(max(value, 0), 100)


def _progress_line(index: int, state: str, percent: int) -> str:
    word = _CLIP_STATES.get(state) or escape(truncate(one_line(state), 30)) or "…"
    line = f"Clip {index} · {word}"
    if state in ("rendering", "downloading") and 0 < percent < 100:
        line += f" {_percent(percent)} %"
    return line


def video_progress_done(number: int, *, state: RenderOutcome, spent_usd: float) -> Rendered:
    """The progress message once the render is over: it stays in the thread, so it says how."""
    spent = usd(spent_usd)
    if state == "done":
        text = f"🎬 Video v{number} rendered ({spent} spent) — review below."
    elif state == "cancelled":
        text = f"🚫 Rendering of video v{number} was stopped ({spent} spent)."
    else:
        text = f"⚠️ Video v{number} couldn't be rendered ({spent} spent)."
    return rendered(text, [section("progress", text)])


def video_failure(session: Session, reason: str, *, retry_plan: int) -> Rendered:
    """A failed plan or render, in plain words, with Retry bound to the plan to retry."""
    return stage_failure(session, reason, stage=VIDEO, retry_version=retry_plan)


def video_cancelled(
    session: Session, by: str, *, made: int, total: int, spent_usd: float
) -> Rendered:
    """A render stopped by someone: what was made, what it cost, and a way to a new plan."""
    who = mention(by)
    if made <= 0 and spent_usd <= 0:
        text = f"🚫 Video cancelled by {who} before any clip was made. Nothing is paid."
    else:
        clips = _plural(total, "clip")
        verb = "was" if total == 1 else "were"
        text = (
            f"🚫 Video cancelled by {who}: {made:,} of {clips} {verb} made"
            f" ({usd(spent_usd)} spent). Nothing more is paid."
        )
    value = _value(session, session.plan)
    actions = {
        "type": "actions",
        "block_id": f"cancelled_v{session.plan}",
        "elements": [button("New plan", ActionId.RETRY, value)],
    }
    return rendered(text, [section("cancelled", text), actions])


# --- the review -------------------------------------------------------------------------------


def video_review(
    session: Session,
    version: VideoVersion,
    plan: VideoPlan,
    *,
    state: ReviewState,
    approver: str | None = None,
) -> Rendered:
    """One finished video: what it is made of, a Redo per scene and Approve while under review.

    The joined MP4 and the separate clips are uploaded into the thread as files; this message is
    what users act on. ``plan`` is the confirmed plan the version rendered.
    """
    n = version.number
    title = f"Video v{n}"
    meta = (
        f"{_seconds(version.duration_s)} · {_plural(len(version.clips), 'clip')}"
        f" · {usd(version.cost_usd)} for this version"
        f" · {usd(session.spent_usd)} spent in this session"
    )
    redo = version.redo_of if version.redo_of is not None else plan.redo_of
    if redo is not None:
        meta += f" · redo of scene {redo}"
    if version.restored_from is not None:
        meta += f" · restored from v{version.restored_from}"
    where = (
        "The finished MP4 is above; the separate clips are in the thread too."
        if version.file_id
        else "The separate clips are in the thread above."
    )
    blocks: list[Block] = [
        {"type": "header", "block_id": f"v{n}_title", "text": plain_text(title)},
        context(f"v{n}_meta", meta, where),
    ]
    scenes = _scenes(version.clips)
    for scene, clips in scenes[:MAX_SCENES_SHOWN]:
        blocks.append(_scene_section(session, version, scene, clips, review=state == "review"))
    if len(scenes) > MAX_SCENES_SHOWN:
        more = len(scenes) - MAX_SCENES_SHOWN
        blocks.append(context(f"v{n}_more", f"…and {_plural(more, 'more scene')} not listed"))
    blocks += _review_footer(session, n, state, approver)
    return rendered(title, blocks)


def _scenes(clips: Sequence[ClipResult]) -> list[tuple[int, list[ClipResult]]]:
    """The clips grouped by scene, in the order the scenes first appear."""
    grouped: dict[int, list[ClipResult]] = {}
    for clip in clips:
        grouped.setdefault(clip.scene, []).append(clip)
    return list(grouped.items())


def _scene_section(
    session: Session,
    version: VideoVersion,
    scene: int,
    clips: Sequence[ClipResult],
    *,
    review: bool,
) -> Block:
    n = version.number
    text = f"*Scene {scene}* · {_seconds(sum(c.seconds for c in clips))}"
    if len(clips) > 1:
        text += f" · {len(clips)} clips"
    earlier = sorted({c.made_in for c in clips if c.made_in != n})
    if earlier:
        text += " · kept from " + ", ".join(f"v{v}" for v in earlier)
    # Block ids by scene: a scene is listed once, so ids stay unique.
    block = section(f"v{n}_scene{scene}", text)
    # StageButtonValue bounds items to 1..100; a scene beyond that can't be redone by button.
    if review and 1 <= scene <= 100:
        redo = button(f"Redo scene {scene}", ActionId.REDO, _value(session, n, item=scene))
        block["accessory"] = redo
    return block


def _review_footer(
    session: Session, n: int, state: ReviewState, approver: str | None
) -> list[Block]:
    if state == "review":
        approve = button("Approve", ActionId.APPROVE, _value(session, n), style="primary")
        elements = [approve]
        if n > 1:  # with one version there is nothing to compare or restore
            elements.append(versions_button(session, VIDEO, n))
        actions = {"type": "actions", "block_id": f"review_v{n}", "elements": elements}
        hint = (
            "Reply in the thread to say what to change — name the scene (e.g. “scene 2”)."
            " Redo asks for a new estimate first."
        )
        return [actions, context(f"v{n}_hint", hint)]
    if state == "approved":
        approval = session.approval(VIDEO)
        if approver is None and approval is not None and approval.version == n:
            approver = approval.user_id
        text = f"✅ Approved v{n}{_by(approver)} — the session is complete"
        return [context(f"v{n}_approved", text)]
    return [context(f"v{n}_superseded", "⏭️ Superseded by a newer version")]


# --- the end ----------------------------------------------------------------------------------


def session_complete(session: Session, links: Sequence[tuple[str, str | None]]) -> Rendered:
    """Every stage approved: one link per approved artifact, like :func:`collected`.

    Labels are escaped; a URL is linked only if :func:`safe_url` accepts it. ``session`` keeps
    the signature stable should the message ever need more of it.
    """
    headline = "🎉 Session complete — every stage approved:"
    budget = MESSAGE_TEXT_BUDGET - len(headline) - 200
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
    pieces = split_text(text, SECTION_MAX_CHARS)
    return rendered(headline, [section(f"complete_{i}", p) for i, p in enumerate(pieces)])


def _link(label: str, url: str | None) -> str:
    shown = truncate(escape(one_line(label)), LINK_LABEL_MAX_CHARS) or "Untitled"
    if url is None or not safe_url(url):
        return shown
    return f"{shown} — <{escape(url)}|open>"
