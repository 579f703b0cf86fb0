"""The Versions modal — list a stage's versions, compare two, restore one — and the thread
notice a restore posts.

Pure like every builder here: domain rows and diffs in, a view dict out. A modal holds at most
100 blocks, 3,000 characters per section and 3,000 of private metadata, and the Slack client
(like our emulator) refuses views whose text adds up past ~12k characters; so the list is paged
(:data:`PAGE_SIZE` rows) and a long comparison is clipped, and the view says so. Version text
is LLM- or user-written: everything shown is escaped; the only live sequences are our mentions
and Slack's date token.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from bot.pipeline.diffs import Diff, Part, Run
from bot.pipeline.models import Session, Stage
from bot.pipeline.stages import definition
from bot.pipeline.versions import VersionRow
from bot.slack.actions import (
    COMPARE_BLOCK,
    VERSIONS_MODAL_CALLBACK,
    RestoreButtonValue,
    VersionsAction,
    VersionsMetadata,
)
from bot.slack.mrkdwn import escape, mention, split_text, truncate
from bot.slack.story_blocks import (
    MESSAGE_TEXT_BUDGET,
    SECTION_MAX_CHARS,
    Block,
    Rendered,
    block_text_length,
    context,
    one_line,
    plain_text,
    rendered,
    section,
)

__all__ = [
    "MAX_VIEW_BLOCKS",
    "PAGE_SIZE",
    "compare_view",
    "notice_view",
    "restored_notice",
    "versions_view",
]

View = dict[str, Any]
MAX_VIEW_BLOCKS = 100
PAGE_SIZE = 10
MAX_SELECT_OPTIONS = 50  # newest first; Slack allows 100, the view's text budget wants fewer
MAX_ASKERS_SHOWN = 5
VIEW_TEXT_BUDGET = MESSAGE_TEXT_BUDGET  # the same ~12k aggregate cap as messages, with room
_MARKS = {"*": "\N{ASTERISK OPERATOR}", "~": "\N{TILDE OPERATOR}"}


def _title(stage: Stage) -> str:
    found = definition(stage)
    return f"{found.label if found else 'Stage'} versions"  # ≤ 24 characters for every stage


def _stage_name(stage: Stage) -> str:
    found = definition(stage)
    return found.title if found else "This stage"


def _view(title: str, meta: VersionsMetadata, blocks: list[Block]) -> View:
    return {
        "type": "modal",
        "callback_id": VERSIONS_MODAL_CALLBACK,
        "title": plain_text(truncate(title, 24)),
        "close": plain_text("Close"),
        "private_metadata": meta.encode(),
        "blocks": blocks,
    }


def slack_date(ts: float) -> str:
    """Slack's date token: shown in the reader's own time zone, with a UTC fallback."""
    fallback = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))
    return f"<!date^{int(ts)}^{{date_short_pretty}} {{time}}|{fallback}>"


def _who(row: VersionRow, owner: str) -> str:
    if row.restored_from is not None:
        by = mention(row.restored_by) if row.restored_by else "someone"
        return f"restored by {by} from v{row.restored_from}"
    if row.asked_by:
        names = ", ".join(mention(u) for u in row.asked_by[:MAX_ASKERS_SHOWN])
        more = len(row.asked_by) - MAX_ASKERS_SHOWN
        return "asked by " + names + (f" and {more} more" if more > 0 else "")
    if row.number == 1:
        return f"started by {mention(owner)}"
    return "regenerated without new feedback"


def _row(
    meta: VersionsMetadata, row: VersionRow, *, owner: str, approved: int, restorable: bool
) -> Block:
    n = row.number
    flags = []
    if n == meta.current:
        flags.append("current")
    if n == approved:
        flags.append("✅ approved")
    head = f"*v{n}*" + "".join(f" · {f}" for f in flags)
    changes = truncate(escape(one_line(row.changes)), 400)
    text = f"{head}\n{slack_date(row.created_at)} · {_who(row, owner)}\n{changes}"
    block = section(f"version_{n}", text)
    if restorable and n != meta.current:
        value = RestoreButtonValue(
            session=meta.session, stage=meta.stage, version=n, current=meta.current
        )
        block["accessory"] = {
            "type": "button",
            "action_id": str(VersionsAction.RESTORE),
            "text": plain_text(f"Restore v{n}"),
            "value": value.encode(),
        }
    return block


def _option(n: int, current: int) -> Block:
    label = f"v{n} (current)" if n == current else f"v{n}"
    return {"text": plain_text(label), "value": str(n)}


def _compare(numbers: Sequence[int], current: int) -> Block:
    """Two selects (older, newer) and Compare; they start on the previous and current one."""
    newest = sorted(numbers, reverse=True)[:MAX_SELECT_OPTIONS]
    right = current if current in newest else newest[0]
    left = next((n for n in newest if n < right), newest[-1])
    options = [_option(n, current) for n in newest]

    def select(action: VersionsAction, placeholder: str, initial: int) -> Block:
        return {
            "type": "static_select",
            "action_id": str(action),
            "placeholder": plain_text(placeholder),
            "options": options,
            "initial_option": _option(initial, current),
        }

    return {
        "type": "actions",
        "block_id": COMPARE_BLOCK,
        "elements": [
            select(VersionsAction.COMPARE_FROM, "Older", left),
            select(VersionsAction.COMPARE_TO, "Newer", right),
            _button("Compare", VersionsAction.COMPARE, "compare", style="primary"),
        ],
    }


def _button(label: str, action: VersionsAction, value: str, *, style: str | None = None) -> Block:
    element: Block = {
        "type": "button",
        "action_id": str(action),
        "text": plain_text(label),
        "value": value,
    }
    if style:
        element["style"] = style
    return element


def versions_view(
    s: Session, stage: Stage, versions: Sequence[VersionRow], *, page: int = 0
) -> View:
    """The list: newest first, :data:`PAGE_SIZE` per page, each with when, who asked, what
    changed, which is current and which approved; Restore on the others while the stage is
    under review; Compare for any two."""
    current = s.version_of(stage)
    approval = s.approval(stage)
    approved = approval.version if approval else 0
    ordered = sorted(versions, key=lambda r: r.number, reverse=True)
    pages = max(1, -(-len(ordered) // PAGE_SIZE))
    page = min(max(page, 0), pages - 1)
    meta = VersionsMetadata(session=s.id, stage=stage, current=current, page=page)
    restorable = s.stage is stage
    shown = ordered[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    name = _stage_name(stage)
    count = len(ordered)
    intro = f"*{escape(name)}* has {count} version{'s' if count != 1 else ''}"
    intro += f"; v{current} is the current one." if current else "."
    blocks: list[Block] = [section("versions_intro", intro)]
    if restorable:
        how = (
            "Restore makes a chosen version the newest one again (a new version number, no new "
            "generation, nothing paid again); the thread says who restored what."
        )
    else:
        how = f"{escape(name)} is approved: its versions can be compared, no longer restored."
    blocks.append(context("versions_how", how))
    if count >= 2:
        blocks.append(_compare([r.number for r in ordered], current))
    blocks.append({"type": "divider", "block_id": "versions_divider"})
    blocks += [
        _row(meta, r, owner=s.owner_id, approved=approved, restorable=restorable) for r in shown
    ]
    if pages > 1:
        first, last = shown[0].number, shown[-1].number
        blocks.append(
            context(
                "versions_page",
                f"Page {page + 1} of {pages}: v{first} to v{last}, newest first."
                + (
                    f" Compare lists the newest {MAX_SELECT_OPTIONS}."
                    if count > MAX_SELECT_OPTIONS
                    else ""
                ),
            )
        )
        paging = []
        if page > 0:
            paging.append(_button("Newer", VersionsAction.NEWER, str(page - 1)))
        if page < pages - 1:
            paging.append(_button("Older", VersionsAction.OLDER, str(page + 1)))
        blocks.append({"type": "actions", "block_id": "versions_paging", "elements": paging})
    return _view(_title(stage), meta, blocks)


# --- the comparison ---------------------------------------------------------------------------


def _safe(text: str) -> str:
    """Escaped, with the characters that would close our *bold* / ~strike~ early replaced by
    lookalikes (inside a marked run only)."""
    out = escape(text)
    for mark, lookalike in _MARKS.items():
        out = out.replace(mark, lookalike)
    return out


def _marked(text: str, mark: str) -> str:
    """``text`` wrapped in ``mark`` line by line (Slack's markers don't span lines), with the
    whitespace kept outside the markers so Slack recognises them."""
    lines = []
    for line in text.split("\n"):
        core = line.strip()
        if not core:
            lines.append(line)
            continue
        lead = line[: len(line) - len(line.lstrip())]
        trail = line[len(line.rstrip()) :]
        lines.append(f"{lead}{mark}{_safe(core)}{mark}{trail}")
    return "\n".join(lines)


def render_runs(runs: Sequence[Run]) -> str:
    """Runs as readable mrkdwn: kept words plain, ~removed~ struck through, *added* in bold."""
    out = ""
    for run in runs:
        if run.kind == "same":
            piece = escape(run.text)
        else:
            piece = _marked(run.text, "~" if run.kind == "removed" else "*")
            if out and not out[-1].isspace():
                out += " "  # a marker must follow a space (a struck word, then its new one)
        out += piece
    return out


def _part_text(part: Part) -> str:
    status = {"added": "added", "removed": "removed", "changed": "changed"}[part.status]
    lines = [f"*{_safe(one_line(part.title))}* · {status}"]
    for change in part.changes:
        body = render_runs(change.runs).strip()
        single = len(part.changes) == 1 and change.label == part.title
        lines.append(body if single else f"_{_safe(change.label)}:_ {body}")
    return "\n".join(lines)


def compare_view(s: Session, stage: Stage, diff: Diff, *, page: int = 0) -> View:
    """Version ``diff.old`` against ``diff.new``: each added, removed or changed part with its
    words struck (old) or bold (new); what is the same is named, not repeated. Clipped, and
    saying so, where a modal would overflow."""
    current = s.version_of(stage)
    meta = VersionsMetadata(session=s.id, stage=stage, current=current, page=page)
    name = escape(_stage_name(stage))
    head = f"*{name}: v{diff.old} → v{diff.new}*"
    if diff.same:
        head += "\nThe two versions have the same content."
    blocks: list[Block] = [
        section("compare_head", head),
        context("compare_key", "~Struck through~: only in the older one · *bold*: new."),
    ]
    tail: list[Block] = []
    if diff.unchanged:
        same = ", ".join(escape(u) for u in diff.unchanged)
        tail.append(context("compare_same", truncate(f"Unchanged: {same}.", SECTION_MAX_CHARS)))
    tail.append(
        {
            "type": "actions",
            "block_id": "compare_actions",
            "elements": [_button("Back to the list", VersionsAction.BACK, str(page))],
        }
    )
    budget = VIEW_TEXT_BUDGET - block_text_length(blocks) - block_text_length(tail) - 200
    room = MAX_VIEW_BLOCKS - len(blocks) - len(tail) - 1
    body: list[Block] = []
    clipped = 0
    for k, part in enumerate(diff.parts):
        pieces = split_text(_part_text(part), SECTION_MAX_CHARS)
        size = sum(len(p) for p in pieces)
        if clipped or len(body) + len(pieces) > room or size > budget:
            if not clipped and size > budget and budget > 500 and len(body) < room:
                # One long part (a rewritten narrative): show its beginning, then stop.
                body.append(section(f"part_{k}_1", truncate(pieces[0], budget)))
            clipped = len(diff.parts) - k
            break
        body += [section(f"part_{k}_{j}", p) for j, p in enumerate(pieces, start=1)]
        budget -= size
    if clipped:
        body.append(
            context(
                "compare_clipped",
                f"The comparison is longer than Slack shows in one window: {clipped} more "
                f"part{'s' if clipped != 1 else ''} not shown. Compare two closer versions "
                "to see them.",
            )
        )
    return _view("Compare versions", meta, blocks + body + tail)


# --- plain words in the modal, and the thread notice -------------------------------------------


def notice_view(meta: VersionsMetadata | None, stage: Stage | None, text: str) -> View:
    """The modal showing one message (a restore asked for, or why nothing can be done); with
    metadata it keeps a way back to the list. ``text`` is ours (trusted mrkdwn)."""
    blocks: list[Block] = [section("versions_notice", truncate(text, SECTION_MAX_CHARS))]
    if meta is not None:
        blocks.append(
            {
                "type": "actions",
                "block_id": "notice_actions",
                "elements": [_button("Back to the list", VersionsAction.BACK, str(meta.page))],
            }
        )
        return _view(_title(meta.stage), meta, blocks)
    view = _view(_title(stage) if stage else "Versions", _NO_META, blocks)
    view["private_metadata"] = ""
    return view


_NO_META = VersionsMetadata(session="none", stage=Stage.STORY, current=0)


def restored_notice(stage: Stage, user_id: str, source: int, number: int) -> Rendered:
    """Thread notice for a restore: who brought back which version, under which number."""
    text = f"↩️ {mention(user_id)} restored v{source} as v{number}"
    note = f"{_stage_name(stage)} v{number} is a copy of v{source}; nothing was generated again."
    return rendered(text, [section(f"{stage}_restored", text), context("restored_note", note)])
