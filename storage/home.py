"""The App Home's storage: per-team indexes of sessions, who looks at their Home, whose Home
must be published again.

The indexes are written by ``commit.lua`` in the same script as the session (``Writes.
index_home``): a commit costs no extra round trip, and an index can never miss a committed
change. Every key is per team (``sl:t:{team}:{shard}:home:…``) except the publisher's list of
teams.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bot.pipeline.models import Session
from storage import keys
from storage.connection import Client
from storage.scripts import Scripts

# Slack wants the event acked within 3 s; a Home mark that can't be written in 2 is dropped.
MARK_TIMEOUT_S = 2.0


def involved(session: Session) -> tuple[str, ...]:
    """Everyone whose "My sessions" lists ``session``: its creator, the people the approval
    rule names, and everyone who voted on or approved a step. A user group's members are not
    known without asking Slack, so a group rule lists only the people it names."""
    people = [session.owner_id, *session.policy.users]
    people += [v.user_id for v in session.votes]
    for approval in session.approvals:
        people += [*approval.co_approvers, approval.user_id]
    return tuple(dict.fromkeys(p for p in people if p))


@dataclass(frozen=True)
class DueHome:
    """A Home taken to be published: whose, which page, the hash of the view Slack shows now."""

    user_id: str
    page: int
    view_hash: str | None


@dataclass(frozen=True)
class HomeData:
    """What one person's Home shows: all their sessions (newest change first, at most
    ``HOME_MINE_MAX``), one page of the team's (newest first, of ``team_total``), the page
    (clamped to the last one) and the thread links known so far."""

    mine: list[Session]
    team: list[Session]
    team_total: int
    page: int
    links: dict[str, str]


class HomeMarks:
    """The listener's part: someone opened their Home or turned its page."""

    def __init__(self, scripts: Scripts, *, ttl_s: int) -> None:
        self._scripts = scripts
        self._ttl_s = ttl_s

    async def opened(self, team_id: str, user_id: str, *, page: int | None = None) -> None:
        """Remember the viewer (and the page they asked for); their Home is published at once."""
        async with asyncio.timeout(MARK_TIMEOUT_S):
            # The publisher's list of teams has no team's hash tag, so it is written on its own
            # (first: a team listed with nothing due costs the publisher one empty look).
            pipe = self._scripts.redis.pipeline(transaction=False)
            pipe.sadd(keys.HOME_TEAMS, team_id)
            pipe.expire(keys.HOME_TEAMS, self._ttl_s)
            await pipe.execute()
            await self._scripts.run(
                "home_open",
                [keys.home_viewers(team_id), keys.home_dirty(team_id), keys.home_pages(team_id)],
                [user_id, "" if page is None else str(page), self._ttl_s],
            )


class HomeIndex:
    """The publisher's part: take the Homes that are due, read what they show, remember what
    was published."""

    def __init__(self, redis: Client, scripts: Scripts, *, ttl_s: int) -> None:
        self.redis = redis
        self._scripts = scripts
        self._ttl_s = ttl_s

    async def teams(self) -> list[str]:
        return sorted(str(t) for t in await self.redis.smembers(keys.HOME_TEAMS))

    async def take_due(self, team_id: str, *, settle_ms: int, limit: int) -> list[DueHome]:
        """Users whose first unpublished change is ``settle_ms`` old, removed from the set."""
        raw = await self._scripts.run(
            "home_take",
            [
                keys.home_dirty(team_id),
                keys.home_pages(team_id),
                keys.home_hashes(team_id),
                keys.home_pause(team_id),
            ],
            [settle_ms, limit],
        )
        flat = [str(x) for x in raw]
        return [
            DueHome(user, int(page) if page.isdigit() else 0, view_hash or None)
            for user, page, view_hash in zip(flat[0::3], flat[1::3], flat[2::3], strict=True)
        ]

    async def put_back(
        self, team_id: str, users: list[str], *, pause_ms: int, forget_hash: bool = False
    ) -> None:
        """Publishing failed for now: the users are due again once ``pause_ms`` has passed
        (no Home of the team is published before then). ``forget_hash``: the next publish
        replaces whatever Slack shows (after a ``hash_conflict``)."""
        if not users:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            if pause_ms > 0:
                pipe.set(keys.home_pause(team_id), "1", px=pause_ms)
            pipe.zadd(keys.home_dirty(team_id), dict.fromkeys(users, 0), lt=True)
            if forget_hash:
                pipe.hdel(keys.home_hashes(team_id), *users)
            await pipe.execute()

    async def published(self, team_id: str, user_id: str, view_hash: str | None) -> None:
        key = keys.home_hashes(team_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            if view_hash:
                pipe.hset(key, user_id, view_hash)
            else:
                pipe.hdel(key, user_id)
            pipe.expire(key, self._ttl_s)
            await pipe.execute()

    async def read(
        self, team_id: str, user_id: str, *, page: int, mine_per_page: int, team_per_page: int
    ) -> HomeData:
        """One person's sessions and one page of the team's, in two round trips: the indexes,
        then the sessions and their links. ``page`` past the end shows the last page."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrevrange(keys.home_mine(team_id, user_id), 0, keys.HOME_MINE_MAX - 1)
        pipe.zrevrange(keys.home_recent(team_id), 0, keys.HOME_RECENT_MAX - 1)
        mine_ids, team_ids = ([str(x) for x in ids] for ids in await pipe.execute())
        pages = max(-(-len(mine_ids) // mine_per_page), -(-len(team_ids) // team_per_page), 1)
        page = min(max(page, 0), pages - 1)
        shown = team_ids[page * team_per_page : (page + 1) * team_per_page]
        ids = list(dict.fromkeys([*mine_ids, *shown]))
        pipe = self.redis.pipeline(transaction=False)
        for sid in ids:
            pipe.hget(keys.session(team_id, sid), "data")
            pipe.hget(keys.messages(team_id, sid), keys.HOME_LINK_SLOT)
        raw = await pipe.execute()
        found: dict[str, Session] = {}
        links: dict[str, str] = {}
        for sid, data, link in zip(ids, raw[0::2], raw[1::2], strict=True):
            if data:
                found[sid] = Session.model_validate_json(data)
            if link:
                links[sid] = str(link)
        gone = [sid for sid in ids if sid not in found]
        if gone:  # expired sessions: drop them from the indexes, so later pages stay full
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrem(keys.home_mine(team_id, user_id), *gone)
            pipe.zrem(keys.home_recent(team_id), *gone)
            await pipe.execute()
        return HomeData(
            mine=[found[s] for s in mine_ids if s in found],
            team=[found[s] for s in shown if s in found],
            team_total=len(team_ids),
            page=page,
            links=links,
        )

    async def note_link(self, session: Session, link: str) -> None:
        """Keep a session's thread permalink with the session (same ledger, same expiry)."""
        key = keys.messages(session.team_id, session.id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, keys.HOME_LINK_SLOT, link)
            pipe.expire(key, self._ttl_s)
            await pipe.execute()
