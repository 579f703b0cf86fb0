"""The App Home for the emulator: ``views.publish``, the ``app_home_opened`` event and clicks on
a Home view.

Why a module of its own: a Home is per-user state the rest of the emulator doesn't have (the
view each person's tab shows now, and its hash), and its interactions have a shape of their own
— a click in a Home is a ``block_actions`` whose container is a *view*: it carries the view and
no channel, message or ``response_url``. ``SlackEmulator`` only routes the Web API method here
and constructs this class (``emu.home``).

What ``views.publish`` checks, as Slack documents it (SLACK.md §4, views limits):

- ``user_id`` must be a known user (``user_not_found``), ``view`` a JSON object of type
  ``home`` (``invalid_arguments``); more than 100 blocks is ``view_too_large``; other view rules
  (block shapes, lengths) are ``invalid_arguments`` with a ``response_metadata.messages`` line;
- ``hash``, when given, must be the hash of the view the user's Home shows now, otherwise
  ``hash_conflict`` and nothing changes (Slack's guard against an older publish landing last);
- ``not_enabled`` (the knob) answers every publish as an app whose Home tab is turned off.

Each successful publish gets a new hash and is counted per user (``publishes``).
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from tests.emulators import slack_payloads as payloads
from tests.emulators.slack_state import JSON, ApiError, BlockError, validate_view

if TYPE_CHECKING:
    from tests.emulators.slack import SlackEmulator
    from tests.emulators.slack_state import AckResult

__all__ = ["PUBLISH", "SlackHome"]

PUBLISH = "views.publish"
MAX_HOME_BLOCKS = 100


class SlackHome:
    """Every user's Home tab: the view it shows, its history, and how often it was published."""

    def __init__(self, emu: SlackEmulator) -> None:
        self.emu = emu
        #: The app's Home tab is turned off: every views.publish answers ``not_enabled``.
        self.not_enabled = False
        #: user → the view their Home shows now (as views.publish returned it).
        self.views: dict[str, JSON] = {}
        #: user → every view published to them, oldest first.
        self.history: dict[str, list[JSON]] = {}
        #: user → successful publishes.
        self.publishes: Counter[str] = Counter()
        #: (monotonic time, user) of every successful publish.
        self.published_at: list[tuple[float, str]] = []

    # --- the Web API method -------------------------------------------------------------------

    def views_publish(self, params: JSON) -> JSON:
        if self.not_enabled:
            raise ApiError("not_enabled")
        user = params.get("user_id")
        if not isinstance(user, str) or user not in self.emu.workspace.users:
            raise ApiError("user_not_found")
        view = params.get("view")
        if isinstance(view, str):
            try:
                view = json.loads(view)
            except json.JSONDecodeError as exc:
                raise ApiError("invalid_arguments") from exc
        if not isinstance(view, dict) or view.get("type") != "home":
            raise ApiError(
                "invalid_arguments", response_metadata={"messages": ["[ERROR] must be a home"]}
            )
        blocks = view.get("blocks")
        if isinstance(blocks, list) and len(blocks) > MAX_HOME_BLOCKS:
            raise ApiError("view_too_large")
        try:
            validate_view(view)
        except BlockError as exc:
            raise ApiError(
                "invalid_arguments", response_metadata={"messages": [exc.detail]}
            ) from exc
        current = self.views.get(user)
        expected = params.get("hash")
        if expected not in (None, "") and (current is None or expected != current["hash"]):
            raise ApiError("hash_conflict")
        stored = self._stored(user, view, current)
        self.views[user] = stored
        self.history.setdefault(user, []).append(stored)
        self.publishes[user] += 1
        self.published_at.append((time.monotonic(), user))
        return {"view": stored}

    def _stored(self, user: str, view: JSON, previous: JSON | None) -> JSON:
        emu = self.emu
        view_id = previous["id"] if previous else f"V0HOME{user[-6:]}"
        return {
            "id": view_id,
            "team_id": emu.team_id,
            "type": "home",
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "external_id": view.get("external_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "clear_on_close": False,
            "notify_on_close": False,
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": emu.app_id,
            "app_installed_team_id": emu.team_id,
            "bot_id": emu.bot_id,
        }

    # --- what a person does -------------------------------------------------------------------

    async def open(self, user: str = "U0ALICE", *, tab: str = "home") -> AckResult:
        """``user`` opens the app's Home (or Messages) tab → ``app_home_opened``."""
        self.emu.workspace.user(user)
        event: JSON = {
            "type": "app_home_opened",
            "user": user,
            "channel": f"D0{user[-6:]}",
            "tab": tab,
            "event_ts": f"{time.time():.6f}",
        }
        if tab == "home" and user in self.views:
            event["view"] = self.views[user]
        return await self.emu.emit_event(event)

    async def click(self, user: str, action_id: str, *, value: str | None = None) -> AckResult:
        """``user`` clicks ``action_id`` in the Home their tab shows now."""
        view = self.views.get(user)
        if view is None:
            raise AssertionError(f"{user}'s Home was never published")
        found = payloads.find_action(view.get("blocks"), action_id)
        if found is None:
            available = payloads.action_ids(view.get("blocks"))
            raise AssertionError(f"no {action_id!r} in {user}'s Home; available: {available}")
        block, element = found
        emu = self.emu
        member = emu.workspace.user(user)
        action = payloads.action_payload(
            block,
            element,
            action_ts=emu._action_ts(),
            value=value,
        )
        payload: JSON = {
            "type": "block_actions",
            "api_app_id": emu.app_id,
            "token": "legacy-verification-token",
            "trigger_id": emu._new_trigger(user),
            "team": {"id": emu.team_id, "domain": "storyloop-test"},
            "enterprise": None,
            "is_enterprise_install": False,
            "user": {
                "id": user,
                "username": member.name,
                "name": member.name,
                "team_id": emu.team_id,
            },
            "container": {"type": "view", "view_id": view["id"]},
            "view": view,
            "state": {"values": {}},
            "actions": [action],
        }
        return await emu.click_raw(payload)

    # --- assertions -----------------------------------------------------------------------------

    def view_of(self, user: str) -> JSON | None:
        return self.views.get(user)

    def text_of(self, user: str) -> str:
        """Every text in the user's current Home, one per line ("" if never published)."""
        view = self.views.get(user)
        return "\n".join(_texts(view.get("blocks") if view else None))

    def publishes_since(self, user: str, since: float) -> int:
        return sum(1 for at, who in self.published_at if who == user and at >= since)


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
