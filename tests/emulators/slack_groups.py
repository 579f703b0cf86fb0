"""User groups for the Slack emulator: ``usergroups.list`` and ``usergroups.users.list``.

Named approvers may be a user group (bot/pipeline/approvals.py); the app lists groups for the
start modal's picker and asks a group's members when someone in it approves. Shapes and errors
follow Slack's docs: a group has ``id``, ``team_id``, ``handle``, ``name``, ``user_count`` and,
with ``include_users``, ``users``; an unknown id answers ``no_such_subteam``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.emulators.slack_state import ApiError

JSON = dict[str, Any]


@dataclass
class UserGroup:
    id: str
    handle: str
    name: str
    users: list[str] = field(default_factory=list)
    disabled: bool = False

    def to_api(self, team_id: str, *, include_users: bool) -> JSON:
        out: JSON = {
            "id": self.id,
            "team_id": team_id,
            "is_usergroup": True,
            "handle": self.handle,
            "name": self.name,
            "description": "",
            "date_delete": 1 if self.disabled else 0,
            "user_count": len(self.users),
        }
        if include_users:
            out["users"] = list(self.users)
        return out


class UserGroups:
    """The workspace's user groups; tests add them with ``add``."""

    def __init__(self, team_id: str) -> None:
        self.team_id = team_id
        self.groups: dict[str, UserGroup] = {}

    def add(self, group_id: str, handle: str, users: list[str], *, name: str = "") -> UserGroup:
        group = UserGroup(group_id, handle, name or handle.title(), list(users))
        self.groups[group_id] = group
        return group

    @staticmethod
    def _flag(params: JSON, key: str) -> bool:
        return str(params.get(key, "")).lower() in ("1", "true")

    def usergroups_list(self, params: JSON) -> JSON:
        include_users = self._flag(params, "include_users")
        include_disabled = self._flag(params, "include_disabled")
        return {
            "usergroups": [
                g.to_api(self.team_id, include_users=include_users)
                for g in self.groups.values()
                if include_disabled or not g.disabled
            ]
        }

    def usergroups_users_list(self, params: JSON) -> JSON:
        group = self.groups.get(str(params.get("usergroup") or ""))
        if group is None:
            raise ApiError("no_such_subteam")
        return {"users": list(group.users)}
