"""Retention against a real redis-server: every key of a session lives as long as the
session, App Home entries of expired sessions are dropped, a delete leaves nothing of the
session's data, and the export reads back what was stored."""

from __future__ import annotations

import json

import pytest
from redis.asyncio import Redis

from bot.pipeline.artifacts import ItemState, PaidItem
from bot.pipeline.models import Scene, Session, Story, StoryVersion, Turn, TurnRole, Usage
from storage import keys
from storage.export import export_team
from storage.repository import CommitConflict, Repository, Writes

TTL = 7 * 86400
TEAM = "T1"


@pytest.fixture
def repo(redis: Redis) -> Repository:
    return Repository(redis, session_ttl_s=TTL)


def make_session(sid: str = "s1", *, updated_at: float = 1000.0) -> Session:
    return Session(
        id=sid,
        team_id=TEAM,
        channel_id="C1",
        owner_id="U1",
        prompt="p",
        duration_s=30,
        thread_ts="100.1",
        created_at=updated_at,
        updated_at=updated_at,
    )


def version(n: int = 1) -> StoryVersion:
    scene = Scene(number=1, duration_s=30, visuals="v", voiceover="o")
    story = Story(title="t", logline="l", narrative="n", scenes=(scene,))
    return StoryVersion(number=n, story=story, usage=Usage(prompt_tokens=3), created_at=1.0)


async def _full_session(repo: Repository) -> Session:
    """A session with every kind of key a session writes: versions, history, ledger, items,
    thread index, fence, App Home entries."""
    fence = await repo.acquire(TEAM, "s1", 5000)
    s = make_session()
    turn = Turn(role=TurnRole.USER, ts="101.1", user_id="U2", text="funnier")
    writes = Writes().index_thread(s, "100.1").add_version(s, version()).add_turn(s, turn)
    s = await repo.commit(None, s, fence=fence, writes=writes)
    await repo.record_message(s, "story", "100.2")
    await repo.set_item(s, "reference_image:v1:1", PaidItem(state=ItemState.PLANNED), fence=fence)
    await repo.release(TEAM, "s1", fence)
    return s


async def _team_keys(redis: Redis) -> list[str]:
    return sorted([str(k) async for k in redis.scan_iter(match=f"sl:t:{TEAM}:*")])


async def test_every_key_a_session_writes_expires(redis: Redis, repo: Repository) -> None:
    await _full_session(repo)
    found = await _team_keys(redis)
    assert keys.versions(TEAM, "s1") in found and keys.thread(TEAM, "C1", "100.1") in found
    assert keys.home_recent(TEAM) in found and keys.fence(TEAM, "s1") in found
    for key in found:
        assert 0 < await redis.ttl(key) <= TTL, key


async def test_a_commit_keeps_older_keys_alive_as_long_as_the_session(
    redis: Redis, repo: Repository
) -> None:
    """A version written on day one must not expire before the session it belongs to."""
    s = await _full_session(repo)
    for key in (keys.versions(TEAM, "s1"), keys.thread(TEAM, "C1", "100.1")):
        await redis.expire(key, 60)  # as if written long ago
    await repo.commit(s, s.model_copy(update={"updated_at": 2000.0}), fence=None)
    for key in (keys.versions(TEAM, "s1"), keys.thread(TEAM, "C1", "100.1")):
        assert await redis.ttl(key) > TTL - 60, key


async def test_home_entries_of_expired_sessions_are_dropped(redis: Redis, repo: Repository) -> None:
    old = make_session("old", updated_at=1000.0)
    await repo.commit(None, old, fence=None)
    assert await redis.zscore(keys.home_recent(TEAM), "old") is not None
    # Another session changes more than the TTL after "old" last did: "old" has expired.
    await repo.commit(None, make_session("new", updated_at=1000.0 + TTL + 1), fence=None)
    assert await redis.zrange(keys.home_recent(TEAM), 0, -1) == ["new"]
    assert await redis.zrange(keys.home_mine(TEAM, "U1"), 0, -1) == ["new"]


async def test_erase_leaves_only_a_contentless_tombstone(redis: Redis, repo: Repository) -> None:
    s = await _full_session(repo)
    await redis.zadd(keys.home_viewers(TEAM), {"U1": 1})
    fence = await repo.seize(TEAM, "s1", 5000)
    await repo.unindex(s)
    gone = {"by": "U1", "at": 5.0, "job": "delete:x", "channel": "C1", "card_ts": "100.1"}
    await repo.erase(s, fence=fence, tombstone=gone)
    await repo.release(TEAM, "s1", fence)
    left = [k for k in await _team_keys(redis) if "s1" in k or "thread" in k]
    assert left == sorted([keys.fence(TEAM, "s1"), keys.tombstone(TEAM, "s1")])
    assert await repo.tombstone(TEAM, "s1") == gone
    assert await redis.get(keys.fence(TEAM, "s1")) == str(fence)  # a number, nothing more
    assert await redis.zrange(keys.home_recent(TEAM), 0, -1) == []
    assert await redis.zrange(keys.home_mine(TEAM, "U1"), 0, -1) == []
    assert await redis.zscore(keys.home_dirty(TEAM), "U1") == 0  # their Home is redrawn
    for key in left:
        assert 0 < await redis.ttl(key) <= keys.TOMBSTONE_TTL_S


async def test_seize_fences_out_the_holder_and_erase_needs_the_lease(
    redis: Redis, repo: Repository
) -> None:
    s = await _full_session(repo)
    running = await repo.acquire(TEAM, "s1", 60_000)  # a render holding the session
    seized = await repo.seize(TEAM, "s1", 5000)
    assert seized > running and not await repo.renew(TEAM, "s1", running, 60_000)
    with pytest.raises(CommitConflict):
        await repo.commit(s, s.model_copy(update={"prompt": "x"}), fence=running)
    with pytest.raises(CommitConflict):
        await repo.erase(s, fence=running, tombstone={"by": "U9"})
    assert await repo.get(TEAM, "s1") is not None


async def test_export_reads_back_the_session(redis: Redis, repo: Repository) -> None:
    await _full_session(repo)
    await repo.commit(None, make_session("s2"), fence=None)
    doc = await export_team(redis, TEAM)
    assert doc is not None
    json.dumps(doc)  # plain JSON
    assert [x["session"]["id"] for x in doc["sessions"]] == ["s1", "s2"]
    one = doc["sessions"][0]
    assert one["versions"]["story"][0]["story"]["title"] == "t"
    assert one["history"][0]["text"] == "funnier"
    assert one["costs"]["usage"] == {"prompt_tokens": 0, "completion_tokens": 0}
    assert "reference_image:v1:1" in one["costs"]["items"]
    assert await export_team(redis, TEAM, "missing") is None
    only = await export_team(redis, TEAM, "s2")
    assert only is not None and [x["session"]["id"] for x in only["sessions"]] == ["s2"]
