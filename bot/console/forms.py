"""A modal's inputs as questions in the terminal, and the answers as the view's ``state``.

Pure: no I/O. Each input block becomes one question; the answer becomes the state value Slack
would put in a ``view_submission`` for that element type. Enter keeps what the input shows
(its initial value), so a form with good defaults needs one line: the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.console.payloads import JSON, Workspace
from bot.console.render import Names, loose

TEXT_TYPES = frozenset(
    {"plain_text_input", "number_input", "email_text_input", "url_text_input", "rich_text_input"}
)
ONE_OPTION = frozenset({"static_select", "radio_buttons", "external_select"})
MANY_OPTIONS = frozenset({"multi_static_select", "checkboxes", "multi_external_select"})
CHANNEL_TYPES = {
    "conversations_select": "selected_conversation",
    "channels_select": "selected_channel",
}


@dataclass(frozen=True)
class Field:
    """One input of a modal."""

    block_id: str
    action_id: str
    label: str
    optional: bool
    element: JSON

    @property
    def kind(self) -> str:
        return str(self.element.get("type") or "plain_text_input")

    @property
    def options(self) -> list[JSON]:
        options = [o for o in self.element.get("options") or [] if isinstance(o, dict)]
        for group in self.element.get("option_groups") or []:
            if isinstance(group, dict):
                options += [o for o in group.get("options") or [] if isinstance(o, dict)]
        return options


class Invalid(ValueError):
    """The answer doesn't fit the input; the message says what would."""


def _text(obj: object) -> str:
    return str(obj.get("text") or "") if isinstance(obj, dict) else ""


def fields(view: JSON) -> list[Field]:
    """The view's inputs, in order."""
    found = []
    for block in view.get("blocks") or []:
        if not isinstance(block, dict) or block.get("type") != "input":
            continue
        element = block.get("element")
        if not isinstance(element, dict):
            continue
        found.append(
            Field(
                block_id=str(block.get("block_id") or ""),
                action_id=str(element.get("action_id") or ""),
                label=_text(block.get("label")) or "Input",
                optional=bool(block.get("optional")),
                element=element,
            )
        )
    return found


def question(field: Field, names: Names | None = None) -> str:
    """What to ask: the label, the choices, and what Enter keeps."""
    names = names or Names()
    words = [field.label + (" (optional)" if field.optional else "")]
    options = field.options
    if options and field.kind != "external_select":
        listed = ", ".join(f"{i}) {_text(o.get('text'))}" for i, o in enumerate(options, 1))
        words.append(f"— {listed}")
    if field.kind in ("multi_users_select", "users_select"):
        words.append("— people: `you` or user ids, separated by commas")
    if field.kind in MANY_OPTIONS:
        words.append("— several allowed, separated by commas")
    if field.element.get("multiline"):
        words.append("— one line here")
    shown = _initial_text(field, names)
    if shown:
        words.append(f"[Enter keeps: {shown}]")
    elif field.optional:
        words.append("[Enter skips]")
    return " ".join(words)


def _initial_text(field: Field, names: Names) -> str:
    element = field.element
    if isinstance(element.get("initial_value"), str) and element["initial_value"]:
        return str(element["initial_value"])
    if isinstance(element.get("initial_option"), dict):
        return _text(element["initial_option"].get("text"))
    initial_many = element.get("initial_options")
    if isinstance(initial_many, list) and initial_many:
        return ", ".join(_text(o.get("text")) for o in initial_many if isinstance(o, dict))
    people = element.get("initial_users")
    if isinstance(people, list) and people:
        return ", ".join(names.users.get(str(u), str(u)) for u in people)
    if element.get("initial_user"):
        return names.users.get(str(element["initial_user"]), str(element["initial_user"]))
    if field.kind in CHANNEL_TYPES and (
        element.get("default_to_current_conversation") or element.get("initial_conversation")
    ):
        return "#" + names.channels.get(
            str(element.get("initial_conversation") or ""), "this channel"
        )
    return ""


def pick_option(options: Sequence[JSON], answer: str, *, by_position: bool = True) -> JSON:
    """An option by its position in the list shown (``by_position``), its label (or the
    label's unique beginning; ``1`` and ``v1`` are the same) or its value."""
    wanted = loose(answer)
    number = answer.strip().isdigit()
    if by_position and number and 1 <= int(answer) <= len(options):
        return options[int(answer) - 1]
    exact = [o for o in options if loose(_text(o.get("text"))) == wanted]
    exact += [o for o in options if str(o.get("value")) == answer.strip() and o not in exact]
    if exact:
        return exact[0]
    # A number is a choice's position or value, never the beginning of a label ("9" ≠ "90 s").
    starts = [o for o in options if loose(_text(o.get("text"))).startswith(wanted)]
    if wanted and not (number and by_position) and len(starts) == 1:
        return starts[0]
    listed = ", ".join(_text(o.get("text")) for o in options[:12])
    raise Invalid(f"Pick one of: {listed}")


def _people(answer: str, ws: Workspace) -> list[str]:
    found = []
    for part in answer.replace(" ", ",").split(","):
        word = part.strip().lstrip("@")
        if not word:
            continue
        if word.lower() in ("you", "me", ws.user_name):
            found.append(ws.user_id)
        elif word.upper()[:1] in ("U", "W") and word[1:].isalnum():
            found.append(word.upper())
        else:
            raise Invalid(f"`{word}` isn't a person here: type `you`, or user ids like U0123")
    return found


def _channel(answer: str, ws: Workspace) -> str:
    word = answer.strip().lstrip("#")
    if word.lower() in (ws.channel_name, ws.channel_id.lower(), "here", "this"):
        return ws.channel_id
    return word.upper()


def initial_value(field: Field, ws: Workspace) -> JSON:
    """The state of an input nobody touched: what it was opened with."""
    element, kind = field.element, field.kind
    value: JSON = {"type": kind}
    if kind in ONE_OPTION:
        value["selected_option"] = element.get("initial_option")
    elif kind in MANY_OPTIONS:
        value["selected_options"] = list(element.get("initial_options") or [])
    elif kind == "multi_users_select":
        value["selected_users"] = list(element.get("initial_users") or [])
    elif kind == "users_select":
        value["selected_user"] = element.get("initial_user")
    elif kind in CHANNEL_TYPES:
        current = ws.channel_id if element.get("default_to_current_conversation") else None
        value[CHANNEL_TYPES[kind]] = element.get("initial_conversation") or current
    elif kind == "datepicker":
        value["selected_date"] = element.get("initial_date")
    elif kind == "timepicker":
        value["selected_time"] = element.get("initial_time")
    else:
        value["value"] = element.get("initial_value")
    return value


def _is_empty(value: JSON) -> bool:
    return all(not v for k, v in value.items() if k != "type")


def answer(field: Field, line: str, ws: Workspace, options: Sequence[JSON] | None = None) -> JSON:
    """The state value for ``line`` (blank: the initial value). ``options``: an external
    select's options as the app suggested them. Raises ``Invalid`` with a plain-words reason."""
    kind = field.kind
    if not line.strip():
        initial = initial_value(field, ws)
        if _is_empty(initial) and not field.optional:
            raise Invalid("This one is required.")
        return initial
    text = line.strip()
    value: JSON = {"type": kind}
    if kind in ONE_OPTION:
        value["selected_option"] = pick_option(
            options if options is not None else field.options, text
        )
    elif kind in MANY_OPTIONS:
        choices = options if options is not None else field.options
        value["selected_options"] = [pick_option(choices, p) for p in text.split(",") if p.strip()]
    elif kind == "multi_users_select":
        value["selected_users"] = _people(text, ws)
    elif kind == "users_select":
        people = _people(text, ws)
        if len(people) != 1:
            raise Invalid("Name one person.")
        value["selected_user"] = people[0]
    elif kind in CHANNEL_TYPES:
        value[CHANNEL_TYPES[kind]] = _channel(text, ws)
    elif kind == "number_input":
        _number(field.element, text)
        value["value"] = text
    elif kind == "datepicker":
        value["selected_date"] = text
    elif kind == "timepicker":
        value["selected_time"] = text
    else:
        limit = field.element.get("max_length")
        if isinstance(limit, int) and len(text) > limit:
            raise Invalid(f"That's {len(text)} characters; this takes at most {limit}.")
        value["value"] = text
    return value


def _number(element: JSON, text: str) -> None:
    try:
        number = float(text) if element.get("is_decimal_allowed") else int(text)
    except ValueError:
        raise Invalid("A number, please.") from None
    low, high = element.get("min_value"), element.get("max_value")
    if low is not None and number < float(low):
        raise Invalid(f"At least {low}, please.")
    if high is not None and number > float(high):
        raise Invalid(f"At most {high}, please.")


def _menus(view: JSON) -> list[tuple[str, JSON]]:
    """Menus outside inputs (in actions blocks and accessories), with their block ids."""
    found = []
    for block in view.get("blocks") or []:
        if not isinstance(block, dict):
            continue
        elements = list(block.get("elements") or []) if block.get("type") == "actions" else []
        if isinstance(block.get("accessory"), dict):
            elements.append(block["accessory"])
        for element in elements:
            if isinstance(element, dict) and element.get("type") in ONE_OPTION | MANY_OPTIONS:
                found.append((str(block.get("block_id") or ""), element))
    return found


def state(
    view: JSON,
    answers: dict[str, JSON],
    ws: Workspace,
    chosen: dict[str, dict[str, JSON]] | None = None,
) -> JSON:
    """``view.state.values``: the inputs' answers (their initial value when unanswered) and
    the menus' choices (``chosen[block][action]``, else what they were shown with)."""
    values: dict[str, Any] = {}
    for field in fields(view):
        got = answers.get(field.block_id) or initial_value(field, ws)
        values[field.block_id] = {field.action_id: got}
    for block_id, element in _menus(view):
        action_id = str(element.get("action_id") or "")
        picked = (chosen or {}).get(block_id, {}).get(action_id)
        if picked is None and element.get("initial_option") is not None:
            picked = {"type": element["type"], "selected_option": element["initial_option"]}
        if picked is not None:
            values.setdefault(block_id, {})[action_id] = picked
    return values
