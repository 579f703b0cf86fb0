"""Is this request from the workspace the app is installed in? One check for every entry point.

Storyloop runs with one bot token (single-workspace). Bolt's ``authorize`` (``BotIdentity`` in
bot/app.py) answers every request with that token's ``auth.test`` identity, whatever team the
payload names, so a payload from another team would otherwise be recorded under that team's
keys and answered with our token. Each handler compares the team it is about to record under
with the installed one and refuses politely, recording nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncBoltContext

log = logging.getLogger(__name__)


def installed_team(context: AsyncBoltContext) -> str | None:
    """The workspace of our bot token (``auth.test``), or None before authorization ran."""
    result = context.authorize_result
    return result.team_id if result is not None and result.team_id else None


def is_foreign(context: AsyncBoltContext, team_id: object, surface: str) -> bool:
    """True (and logged) when ``team_id`` names a workspace other than ours.

    A missing team is left to the handler's own completeness check; an unknown installed team
    (authorization didn't run) can't be compared, so it isn't refused here.
    """
    installed = installed_team(context)
    foreign = (
        bool(installed) and isinstance(team_id, str) and bool(team_id) and team_id != installed
    )
    if foreign:
        log.warning("refused a %s from team %s (installed in %s)", surface, team_id, installed)
    return foreign


def payload_team(body: dict[str, Any]) -> str | None:
    """The team an interactive payload comes from: ``team.id``, else ``user.team_id``."""
    team = body.get("team")
    user = body.get("user")
    found = (team.get("id") if isinstance(team, dict) else None) or (
        user.get("team_id") if isinstance(user, dict) else None
    )
    return str(found) if found else None
