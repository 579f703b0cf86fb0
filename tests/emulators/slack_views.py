"""Clicks and selections inside an open modal, for the emulator (``emu.modals``).

Why a module of its own: an interaction inside a modal has a shape of its own — a
``block_actions`` whose container is the *view*: it carries the view (with its
``private_metadata`` and its ``state``: what each select shows now), no channel, no message
and no ``response_url``. Slack keeps each input's current value in the view's state and sends
it with every later action, so :meth:`ModalActions.select` records a pick (and delivers the
select's own ``block_actions``, which the app must ack) and :meth:`ModalActions.click` sends
the state as it stands. Views opened with ``views.open``/``views.update`` come from
``SlackEmulator.views_opened``; their state starts from each select's ``initial_option``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from tests.emulators import slack_payloads as payloads
from tests.emulators.slack_state import JSON, OpenedView

if TYPE_CHECKING:
    from tests.emulators.slack import SlackEmulator
    from tests.emulators.slack_state import AckResult

__all__ = ["ModalActions"]

_SELECTS = ("static_select", "external_select", "users_select", "conversations_select")


def _elements(block: JSON) -> list[JSON]:
    if block.get("type") == "actions":
        return [e for e in block.get("elements") or [] if isinstance(e, dict)]
    for key in ("accessory", "element"):
        if isinstance(block.get(key), dict):
            return [block[key]]
    return []


def initial_state(view: JSON) -> JSON:
    """``state.values`` of a freshly drawn view: each select with its ``initial_option``."""
    values: JSON = {}
    for block in view.get("blocks") or []:
        for element in _elements(block):
            if element.get("type") in _SELECTS:
                values.setdefault(block.get("block_id", ""), {})[element["action_id"]] = {
                    "type": element["type"],
                    "selected_option": element.get("initial_option"),
                }
    return values


class ModalActions:
    """What a person does inside the modals the app opened."""

    def __init__(self, emu: SlackEmulator) -> None:
        self.emu = emu
        #: view id → its state values as the person left them (reset when the view is redrawn).
        self._state: dict[str, tuple[str, JSON]] = {}

    def current(self, view: str | JSON | OpenedView | None = None) -> OpenedView:
        """The view (by id or object), or the newest one opened."""
        if view is None:
            if not self.emu.views_opened:
                raise AssertionError("no view was opened")
            return self.emu.views_opened[-1]
        return self.emu._find_view(view)

    def state(self, opened: OpenedView) -> JSON:
        """The view's state now: its selects' initial options, overlaid with picks made since
        it was last drawn (a redraw — a new hash — starts again from the initial options)."""
        kept = self._state.get(opened.id)
        if kept is None or kept[0] != opened.hash:
            kept = (opened.hash, initial_state(opened.view))
            self._state[opened.id] = kept
        return kept[1]

    def _find(self, opened: OpenedView, action_id: str, block_id: str | None) -> tuple[JSON, JSON]:
        for block in opened.view.get("blocks") or []:
            if block_id is not None and block.get("block_id") != block_id:
                continue
            for element in _elements(block):
                if element.get("action_id") == action_id:
                    return block, element
        available = payloads.action_ids(opened.view.get("blocks"))
        raise AssertionError(
            f"no {action_id!r} (block {block_id!r}) in view {opened.id}; available: {available}"
        )

    def payload(
        self,
        opened: OpenedView,
        action: JSON,
        *,
        user: str,
        team_id: str | None = None,
        private_metadata: str | None = None,
    ) -> JSON:
        """A ``block_actions`` from inside ``opened``, as Slack sends it. ``team_id`` and
        ``private_metadata`` override what the payload says (hostile tests)."""
        emu = self.emu
        member = emu.workspace.user(user)
        team = team_id or emu.team_id
        view = copy.deepcopy(opened.view)
        view["state"] = {"values": copy.deepcopy(self.state(opened))}
        if private_metadata is not None:
            view["private_metadata"] = private_metadata
        return {
            "type": "block_actions",
            "api_app_id": emu.app_id,
            "token": "legacy-verification-token",
            "trigger_id": emu._new_trigger(user),
            "team": {"id": team, "domain": "storyloop-test"},
            "enterprise": None,
            "is_enterprise_install": False,
            "user": {"id": user, "username": member.name, "name": member.name, "team_id": team},
            "container": {"type": "view", "view_id": opened.id},
            "view": view,
            "actions": [action],
        }

    async def click(
        self,
        action_id: str,
        *,
        view: str | JSON | OpenedView | None = None,
        block_id: str | None = None,
        user: str | None = None,
        value: str | None = None,
        team_id: str | None = None,
        private_metadata: str | None = None,
    ) -> AckResult:
        """``user`` (the modal's owner by default) clicks the button ``action_id`` — the one in
        ``block_id`` when several blocks have one; ``value`` overrides the button's value."""
        opened = self.current(view)
        if opened.closed:
            raise AssertionError(f"view {opened.id} is closed")
        block, element = self._find(opened, action_id, block_id)
        action = payloads.action_payload(
            block, element, action_ts=self.emu._action_ts(), value=value
        )
        who = user or opened.user or "U0ALICE"
        body = self.payload(
            opened, action, user=who, team_id=team_id, private_metadata=private_metadata
        )
        return await self.emu.click_raw(body)

    async def select(
        self,
        action_id: str,
        option_value: str,
        *,
        view: str | JSON | OpenedView | None = None,
        user: str | None = None,
    ) -> AckResult:
        """Pick the option ``option_value`` in the select ``action_id``: the view's state keeps
        it for later actions, and the app gets the select's own ``block_actions``."""
        opened = self.current(view)
        block, element = self._find(opened, action_id, None)
        action = payloads.action_payload(
            block, element, action_ts=self.emu._action_ts(), value=option_value
        )
        state = self.state(opened)
        state.setdefault(block.get("block_id", ""), {})[action_id] = {
            "type": element.get("type"),
            "selected_option": action["selected_option"],
        }
        who = user or opened.user or "U0ALICE"
        return await self.emu.click_raw(self.payload(opened, action, user=who))

    def texts(self, view: str | JSON | OpenedView | None = None) -> str:
        """Every text in the view as it is drawn now, one per line."""
        opened = self.current(view)
        return "\n".join(_texts(opened.view.get("blocks")))


def _texts(node: Any) -> list[str]:
    if isinstance(node, dict):
        found: list[str] = []
        for key, value in node.items():
            if key == "text" and isinstance(value, str):
                found.append(value)
            else:
                found += _texts(value)
        return found
    if isinstance(node, list):
        return [t for item in node for t in _texts(item)]
    return []
