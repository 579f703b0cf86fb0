"""Reading a session — or all of a workspace's — out of Redis as plain JSON-ready data
(``storyloop export``): the session, every version of every stage, the thread's history,
approvals and costs. Nothing else: no lease or fence tokens, no job markers, no Slack token
(none is ever stored with a session).
"""

from __future__ import annotations

import json
from typing import Any

from bot.pipeline.models import Session
from storage import keys
from storage.connection import Client

FORMAT = "storyloop-export/1"


async def session_ids(redis: Client, team_id: str) -> list[str]:
    """Every session of the workspace still stored (SCAN: no blocking, no index needed)."""
    prefix = keys.session(team_id, "")
    found = {
        str(key)[len(prefix) :]
        async for key in redis.scan_iter(match=keys.session_match(team_id), count=500)
        if keys.is_session_key(team_id, str(key))
    }
    return sorted(found)


def _versions(raw: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """The versions hash by stage, oldest first (the story's fields are bare numbers)."""
    out: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for field, value in raw.items():
        stage, _, number = str(field).rpartition(":")
        if number.isdigit():
            out.setdefault(stage or "story", []).append((int(number), json.loads(value)))
    return {
        stage: [v for _n, v in sorted(found, key=lambda p: p[0])] for stage, found in out.items()
    }


async def export_session(redis: Client, team_id: str, session_id: str) -> dict[str, Any] | None:
    """One session as data, or None if it isn't stored (expired, deleted, never existed)."""
    pipe = redis.pipeline(transaction=True)  # one consistent snapshot
    pipe.hget(keys.session(team_id, session_id), "data")
    pipe.hgetall(keys.versions(team_id, session_id))
    pipe.lrange(keys.history(team_id, session_id), 0, -1)
    pipe.hgetall(keys.items(team_id, session_id))
    pipe.hget(keys.messages(team_id, session_id), keys.HOME_LINK_SLOT)
    data, versions, history, items, link = await pipe.execute()
    if not data:
        return None
    session = Session.model_validate_json(data)
    return {
        "session": session.model_dump(mode="json"),
        "thread_link": link or None,
        "versions": _versions(versions),
        "history": [json.loads(turn) for turn in history],
        "approvals": [a.model_dump(mode="json") for a in session.approvals],
        "costs": {
            "spent_usd": session.spent_usd,
            "estimate_usd": session.estimate_usd,
            "usage": session.usage.model_dump(mode="json"),
            "items": {str(k): json.loads(v) for k, v in items.items()},
        },
    }


async def export_team(
    redis: Client, team_id: str, session_id: str | None = None
) -> dict[str, Any] | None:
    """The export document: one session (None if it isn't stored) or all of the workspace's."""
    ids = [session_id] if session_id else await session_ids(redis, team_id)
    sessions = [s for sid in ids if (s := await export_session(redis, team_id, sid)) is not None]
    if session_id and not sessions:
        return None
    return {"format": FORMAT, "team_id": team_id, "sessions": sessions}
