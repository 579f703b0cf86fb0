"""Modals and the Home tab of the terminal's Slack: ``views.open/push/update/publish``.

Like Slack, modals form a stack (``views.open`` starts one, ``views.push`` adds to it) and a
view keeps its id across ``views.update``; the Home tab is one view per person.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from bot.console.payloads import JSON
from bot.console.workspace import ApiError, Host, View, json_param, required

MAX_VIEW_BLOCKS = 100


class Views:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.by_id: dict[str, View] = {}
        self.stack: list[str] = []
        self.home: View | None = None

    def methods(self) -> dict[str, Callable[[JSON], JSON]]:
        return {
            "views.open": self._open,
            "views.push": self._push,
            "views.update": self._update,
            "views.publish": self._publish,
        }

    def top(self) -> View | None:
        """The modal on screen, if any."""
        return self.by_id.get(self.stack[-1]) if self.stack else None

    def close(self, *, all_views: bool = False) -> None:
        if all_views:
            self.stack.clear()
        elif self.stack:
            self.stack.pop()

    def show(self, body: JSON, *, replace: bool) -> View:
        """A view the app returned in an ack (``response_action`` update or push)."""
        if replace and self.stack:
            return self._show(self.stack[-1], body)
        view_id = self.host.new_id("V")
        self.stack.append(view_id)
        return self._show(view_id, body)

    def _body(self, params: JSON) -> JSON:
        body = json_param(params, "view")
        if not isinstance(body, dict) or not body.get("type"):
            raise ApiError("invalid_arguments")
        if len(body.get("blocks") or []) > MAX_VIEW_BLOCKS:
            raise ApiError("view_too_large")
        return body

    def _show(self, view_id: str, body: JSON) -> View:
        view = View(view_id, body, secrets.token_hex(6))
        self.by_id[view_id] = view
        self.host.tell("view_shown", view)
        return view

    def _open(self, params: JSON) -> JSON:
        required(params, "trigger_id", "invalid_trigger_id")
        body = self._body(params)
        view_id = self.host.new_id("V")
        self.stack[:] = [view_id]
        return {"view": self._show(view_id, body).as_json(self.host.ws)}

    def _push(self, params: JSON) -> JSON:
        required(params, "trigger_id", "invalid_trigger_id")
        body = self._body(params)
        view_id = self.host.new_id("V")
        self.stack.append(view_id)
        return {"view": self._show(view_id, body).as_json(self.host.ws)}

    def _update(self, params: JSON) -> JSON:
        view_id = str(params.get("view_id") or "")
        if not view_id and params.get("external_id"):
            external = str(params["external_id"])
            found = (v.id for v in self.by_id.values() if v.body.get("external_id") == external)
            view_id = next(found, "")
        current = self.by_id.get(view_id)
        if current is None:
            raise ApiError("not_found")
        if params.get("hash") and params["hash"] != current.hash:
            raise ApiError("hash_conflict")
        return {"view": self._show(view_id, self._body(params)).as_json(self.host.ws)}

    def _publish(self, params: JSON) -> JSON:
        if required(params, "user_id", "invalid_arguments") != self.host.ws.user_id:
            raise ApiError("user_not_found")
        body = self._body(params)
        view_id = self.home.id if self.home is not None else self.host.new_id("V")
        self.home = View(view_id, body, secrets.token_hex(6))
        self.by_id[view_id] = self.home
        self.host.tell("home_published", self.home)
        return {"view": self.home.as_json(self.host.ws)}
