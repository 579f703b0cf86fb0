"""Block Kit as readable terminal text, and the controls a typed word can click.

Pure functions: no I/O. The console prints what the app posts exactly as it posted it, so every
block type the app uses must read well here; a block type we don't know is named, never dropped.
Buttons are matched by label, not by action id, so a button added to the app later works in the
console without a change here. Buttons that share a label (one "Redo" per image, one "Restore"
per version) get a number — the one their row starts with or names (``v2``), else their
position — and are shown with it, so what is on screen is what to type: ``redo 2``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Block = dict[str, Any]
RULE_WIDTH = 60
MAX_OPTIONS_SHOWN = 12

# Slack's control sequences in mrkdwn (SLACK.md §5): mentions, channels, specials, links.
_CONTROL = re.compile(r"<([^<>]*)>")
_WORDS = re.compile(r"[^\W_]+")
_VERSION_NUMBER = re.compile(r"\bv(\d+)\b", re.IGNORECASE)
_LEADING_NUMBER = re.compile(r"^\W*(\d+)\b")
SELECT_TYPES = frozenset(
    {"static_select", "external_select", "overflow", "radio_buttons", "multi_static_select"}
)


@dataclass(frozen=True)
class Names:
    """Display names for ids in mrkdwn (``<@U…>``, ``<#C…>``); unknown ids show as they are."""

    users: Mapping[str, str] = field(default_factory=dict)
    channels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Control:
    """A button or menu someone can use by typing ``handle`` (a menu: ``handle <option>``)."""

    kind: Literal["button", "select"]
    handle: str
    label: str
    alias: str
    block: Block
    element: Block
    options: tuple[Block, ...] = ()


def normalize(text: str) -> str:
    """Lower-case words only: ``"✅ Approve!"`` and ``"approve"`` are the same label."""
    return " ".join(_WORDS.findall(text.lower()))


def loose(text: str) -> str:
    """``normalize`` with version numbers bare: ``Restore v1`` and ``restore 1`` match."""
    return _VERSION_NUMBER.sub(lambda m: m.group(1), normalize(text))


def _text_of(obj: object) -> str:
    """The string of a text object (``{"type": "plain_text", "text": …}``) or a bare string."""
    if isinstance(obj, dict):
        value = obj.get("text")
        return value if isinstance(value, str) else ""
    return obj if isinstance(obj, str) else ""


def _date(body: str) -> str:
    """``!date^<unix>^<format>|<fallback>`` as local time (the fallback if it won't parse)."""
    head, _, fallback = body.partition("|")
    parts = head.split("^")
    try:
        moment = datetime.fromtimestamp(int(parts[1]))
    except (IndexError, ValueError, OverflowError, OSError):
        return fallback
    shape = parts[2] if len(parts) > 2 else ""
    with_time = "{time" in shape or "{date_long_full}" in shape or not shape
    return moment.strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d")


def _control(body: str, names: Names) -> str:
    target, _, label = body.partition("|")
    if target.startswith("@"):
        who = target[1:]
        return "@" + (label or names.users.get(who, who))
    if target.startswith("#"):
        where = target[1:]
        return "#" + (label or names.channels.get(where, where))
    if target.startswith("!date^"):
        return _date(body[1:])
    if target.startswith("!subteam^"):
        return label or "@" + target.split("^", 1)[1]
    if target.startswith("!"):
        return "@" + target[1:]
    if label:
        return f"{label} ({target})"
    return target


def mrkdwn(text: str, names: Names | None = None) -> str:
    """Slack mrkdwn as plain text: mentions and links resolved, ``&amp;``/``&lt;``/``&gt;``
    decoded. Emphasis marks (``*bold*``, ``_italic_``) stay: they read fine in a terminal."""
    names = names or Names()
    resolved = _CONTROL.sub(lambda m: _control(m.group(1), names), text)
    return resolved.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _object_text(obj: object, names: Names) -> str:
    """A text object: mrkdwn is resolved, plain_text is taken as it is."""
    if isinstance(obj, dict) and obj.get("type") == "mrkdwn":
        return mrkdwn(_text_of(obj), names)
    return _text_of(obj)


def _options(element: Block) -> tuple[Block, ...]:
    options = [o for o in element.get("options") or [] if isinstance(o, dict)]
    for group in element.get("option_groups") or []:
        if isinstance(group, dict):
            options += [o for o in group.get("options") or [] if isinstance(o, dict)]
    return tuple(options)


def _alias(element: Block) -> str:
    """The last word of the action id (``video_confirm`` → ``confirm``): a second name."""
    action_id = str(element.get("action_id") or "")
    return normalize(action_id.rsplit("_", 1)[-1]) if action_id else ""


def _row_number(text: str) -> int | None:
    """The number a row is about: ``v2`` anywhere, else the number it starts with."""
    found = _VERSION_NUMBER.search(text) or _LEADING_NUMBER.match(text)
    return int(found.group(1)) if found else None


def _interactive(blocks: Sequence[object]) -> list[tuple[int, int, Block, Block, str]]:
    """Every button and menu: ``(block index, element index or -1, block, element, row text)``."""
    found: list[tuple[int, int, Block, Block, str]] = []
    for bi, block in enumerate(blocks):
        if not isinstance(block, dict):
            continue
        if block.get("type") == "actions":
            for ei, element in enumerate(block.get("elements") or []):
                if isinstance(element, dict):
                    found.append((bi, ei, block, element, ""))
        accessory = block.get("accessory")
        if isinstance(accessory, dict):
            found.append((bi, -1, block, accessory, _text_of(block.get("text"))))
    return [f for f in found if f[3].get("type") == "button" or f[3].get("type") in SELECT_TYPES]


def _label(element: Block) -> str:
    if element.get("type") == "button":
        return _text_of(element.get("text"))
    if element.get("type") == "overflow":
        return "more"
    return _text_of(element.get("placeholder")) or "choose"


def _numbered(blocks: Sequence[object]) -> list[tuple[int, int, Control]]:
    """Controls with their handles; duplicates of a label get a number."""
    raw = _interactive(blocks)
    bases = [normalize(_label(el)) or _alias(el) or "button" for _bi, _ei, _b, el, _t in raw]
    counts: dict[str, int] = {}
    for base in bases:
        counts[base] = counts.get(base, 0) + 1
    used: dict[str, set[int]] = {}
    seen: dict[str, int] = {}
    out: list[tuple[int, int, Control]] = []
    for (bi, ei, block, element, row), base in zip(raw, bases, strict=True):
        seen[base] = seen.get(base, 0) + 1
        label = _label(element)
        handle = base
        if counts[base] > 1:
            number = _row_number(mrkdwn(row))
            taken = used.setdefault(base, set())
            if number is None or number in taken:
                number = seen[base]
            taken.add(number)
            handle = f"{base} {number}"
            label = f"{label} {number}"
        kind: Literal["button", "select"] = (
            "button" if element.get("type") == "button" else "select"
        )
        control = Control(kind, handle, label, _alias(element), block, element, _options(element))
        out.append((bi, ei, control))
    return out


def controls(blocks: Sequence[object] | None) -> list[Control]:
    """The buttons and menus of a message or view, in display order."""
    return [c for _bi, _ei, c in _numbered(blocks or [])]


# --- rendering --------------------------------------------------------------------------------


def _button(control: Control) -> str:
    link = " ↗ " + str(control.element["url"]) if control.element.get("url") else ""
    return f"[{control.label}{link}]"


def _select(control: Control, names: Names) -> str:
    shown = [_object_text(o.get("text"), names) for o in control.options[:MAX_OPTIONS_SHOWN]]
    more = " | …" if len(control.options) > MAX_OPTIONS_SHOWN else ""
    listing = ": " + " | ".join(shown) + more if shown else ""
    return f"<{control.label} ▾{listing}>"


def _show(control: Control, names: Names) -> str:
    return _button(control) if control.kind == "button" else _select(control, names)


def _lines(text: str) -> list[str]:
    return text.split("\n") if text else []


def _input_value(element: Block, names: Names) -> str:
    """What an input shows before it is answered: its initial value, else its placeholder."""
    kind = element.get("type")
    initial = element.get("initial_value")
    if isinstance(initial, str) and initial:
        return initial
    option = element.get("initial_option")
    if isinstance(option, dict):
        return _object_text(option.get("text"), names)
    users = element.get("initial_users")
    if isinstance(users, list) and users:
        return ", ".join("@" + names.users.get(str(u), str(u)) for u in users)
    if kind in ("conversations_select", "channels_select") and element.get(
        "default_to_current_conversation"
    ):
        return "(this channel)"
    placeholder = _text_of(element.get("placeholder"))
    return f"<{placeholder}>" if placeholder else "<empty>"


def _input(block: Block, names: Names) -> list[str]:
    element = block.get("element") if isinstance(block.get("element"), dict) else {}
    assert isinstance(element, dict)
    label = _text_of(block.get("label")) + (" (optional)" if block.get("optional") else "")
    lines = [f"{label}: {_input_value(element, names)}"]
    options = _options(element)
    if options:
        shown = [_object_text(o.get("text"), names) for o in options[:MAX_OPTIONS_SHOWN]]
        lines.append("    choices: " + " | ".join(shown))
    if hint := _text_of(block.get("hint")):
        lines.append(f"    {hint}")
    return lines


def _rich_text(node: object) -> str:
    """The text of a rich_text block (sections, lists, quotes), flattened."""
    if isinstance(node, list):
        return "".join(_rich_text(n) for n in node)
    if not isinstance(node, dict):
        return ""
    kind = node.get("type")
    if kind == "text":
        return str(node.get("text") or "")
    if kind == "link":
        return str(node.get("text") or node.get("url") or "")
    if kind == "user":
        return "@" + str(node.get("user_id") or "")
    if kind == "emoji":
        return f":{node.get('name')}:"
    inner = _rich_text(node.get("elements") or [])
    return inner + "\n" if kind in ("rich_text_section", "rich_text_list") else inner


def _block(
    block: Block, names: Names, shown: Mapping[tuple[int, int], Control], bi: int
) -> list[str]:
    kind = block.get("type")
    if kind == "header":
        return [f"# {_text_of(block.get('text'))}"]
    if kind == "section":
        lines = _lines(_object_text(block.get("text"), names))
        for item in block.get("fields") or []:
            lines += ["  " + line for line in _lines(_object_text(item, names))]
        accessory = block.get("accessory")
        if (bi, -1) in shown:
            lines.append("  " + _show(shown[(bi, -1)], names))
        elif isinstance(accessory, dict) and accessory.get("type") == "image":
            lines.append(f"  [image] {accessory.get('image_url', '')}")
        return lines
    if kind == "context":
        parts = []
        for element in block.get("elements") or []:
            if isinstance(element, dict) and element.get("type") == "image":
                parts.append(f"[image {element.get('alt_text', '')}]".replace(" ]", "]"))
            else:
                parts.append(_object_text(element, names))
        return ["  " + line for line in "  ·  ".join(parts).split("\n")]
    if kind == "divider":
        return ["─" * RULE_WIDTH]
    if kind == "image":
        title = _text_of(block.get("title")) or str(block.get("alt_text") or "")
        return [f"[image] {title}: {block.get('image_url', '')}".replace(" : ", ": ")]
    if kind == "markdown":
        return _lines(str(block.get("text") or ""))
    if kind == "rich_text":
        return _lines(_rich_text(block.get("elements") or []).rstrip("\n"))
    if kind == "input":
        return _input(block, names)
    if kind == "video":
        return [f"[video] {_text_of(block.get('title'))}: {block.get('video_url', '')}"]
    if kind == "file":
        return [f"[file] {block.get('external_id', '')}"]
    return [f"[{kind} block]"]


def _controls_in(
    bi: int, numbered: list[tuple[int, int, Control]]
) -> dict[tuple[int, int], Control]:
    return {(b, e): c for b, e, c in numbered if b == bi}


def render_blocks(blocks: Sequence[object], names: Names | None = None) -> list[str]:
    """Blocks as lines of text, in order; buttons as ``[Label]``, menus as ``<Label ▾: …>``."""
    names = names or Names()
    numbered = _numbered(blocks)
    lines: list[str] = []
    for bi, block in enumerate(blocks):
        if isinstance(block, dict):
            shown = _controls_in(bi, numbered)
            # Buttons in an actions block are shown by position; unknown element types are
            # left out of the row rather than mis-numbered.
            if block.get("type") == "actions":
                row = [_show(c, names) for (_b, _e), c in sorted(shown.items())]
                if row:
                    lines.append(" ".join(row))
                continue
            lines += _block(block, names, shown, bi)
    return lines


def render_message(
    text: str, blocks: Sequence[object] | None, names: Names | None = None
) -> list[str]:
    """A message as Slack shows it: its blocks, or its text when it has none."""
    if blocks:
        return render_blocks(blocks, names)
    return _lines(mrkdwn(text, names))


def render_view(view: Mapping[str, Any], names: Names | None = None) -> list[str]:
    """A modal (or Home tab) as a titled box: its blocks, then its submit and close buttons."""
    names = names or Names()
    title = _text_of(view.get("title")) or ("Home" if view.get("type") == "home" else "Modal")
    body = render_blocks(view.get("blocks") or [], names)
    footer = [f"[{_text_of(view[key])}]" for key in ("submit", "close") if view.get(key)]
    top = f"┌─ {title} " + "─" * max(RULE_WIDTH - len(title) - 4, 4)
    lines = [top] + ["│ " + line for line in body]
    if footer:
        lines += ["├" + "─" * (RULE_WIDTH - 1), "│ " + " ".join(footer)]
    return [*lines, "└" + "─" * (RULE_WIDTH - 1)]
