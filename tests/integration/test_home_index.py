"""The App Home's storage against a real redis-server: the indexes and dirty marks written by
``commit.lua``, ``home_open.lua`` and ``home_take.lua``; then the emulator's ``views.publish``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.pipeline.approvals import named
from bot.pipeline.models import Approval, Session, Stage, Status
from storage import keys
from storage.home import HomeIndex, HomeMarks
from storage.repository import Repository
from tests.emulators.slack import SlackEmulator
from tests.support.redis_server import RedisServer

TTL = 3600
TEAM = "T1"


def make(sid: str = "s1", *, owner: str = "U0ALICE", at: float = 1000.0, **extra: Any) -> Session:
    return Session(
        id=sid,
        team_id=TEAM,
        channel_id="C1",
        owner_id=owner,
        prompt="p",
        duration_s=30,
        created_at=at,
        updated_at=at,
        **extra,
    )


@pytest.fixture
def repo(redis: Redis) -> Repository:
    return Repository(redis, session_ttl_s=TTL)


@pytest.fixture
def index(redis: Redis, repo: Repository) -> HomeIndex:
    return HomeIndex(redis, repo.scripts, ttl_s=TTL)


@pytest.fixture
def marks(repo: Repository) -> HomeMarks:
    return HomeMarks(repo.scripts, ttl_s=TTL)


async def dirty(redis: Redis) -> dict[str, float]:
    return dict(await redis.zrange(keys.home_dirty(TEAM), 0, -1, withscores=True))


async def test_a_commit_files_the_session_for_the_team_and_everyone_involved(
    redis: Redis, repo: Repository
) -> None:
    s = make(
        policy=named(["U0BOB"], "S0EDITORS"),
        votes=(Approval(stage=Stage.STORY, version=1, user_id="U0CAROL", at=1.0),),
        approvals=(
            Approval(
                stage=Stage.STORY, version=1, user_id="U0DAVE", at=1.0, co_approvers=("U0ERIN",)
            ),
        ),
    )
    await repo.commit(None, s, fence=None)
    assert await redis.zrange(keys.home_recent(TEAM), 0, -1, withscores=True) == [("s1", 1000.0)]
    for user in ("U0ALICE", "U0BOB", "U0CAROL", "U0DAVE", "U0ERIN"):
        assert await redis.zscore(keys.home_mine(TEAM, user), "s1") == 1000.0, user
        assert 0 < await redis.ttl(keys.home_mine(TEAM, user)) <= TTL
    assert await redis.exists(keys.home_mine(TEAM, "S0EDITORS")) == 0  # a group is no person
    # Later commits move it up by their updated_at.
    s2 = await repo.commit(
        s.model_copy(update={"rev": 1}), s.model_copy(update={"updated_at": 2000.0}), fence=None
    )
    assert s2.rev == 2
    assert await redis.zscore(keys.home_recent(TEAM), "s1") == 2000.0


async def test_the_indexes_are_bounded_to_the_newest(redis: Redis, repo: Repository) -> None:
    for n in range(keys.HOME_RECENT_MAX + 5):
        await repo.commit(None, make(f"s{n:03d}", at=1000.0 + n), fence=None)
    recent = await redis.zrevrange(keys.home_recent(TEAM), 0, -1)
    assert len(recent) == keys.HOME_RECENT_MAX and recent[0] == "s104" and "s004" not in recent
    mine = await redis.zrevrange(keys.home_mine(TEAM, "U0ALICE"), 0, -1)
    assert len(mine) == keys.HOME_MINE_MAX and mine[0] == "s104"
    assert 0 < await redis.ttl(keys.home_recent(TEAM)) <= TTL


async def test_only_viewers_are_marked_and_the_first_mark_stays(
    redis: Redis, repo: Repository, marks: HomeMarks, index: HomeIndex
) -> None:
    s = await repo.commit(None, make(policy=named(["U0BOB"], None)), fence=None)
    assert await dirty(redis) == {}  # nobody opened the Home: nothing to publish
    await marks.opened(TEAM, "U0ALICE")
    assert await dirty(redis) == {"U0ALICE": 0.0}  # due at once
    assert await redis.smembers(keys.HOME_TEAMS) == {TEAM}
    assert [d.user_id for d in await index.take_due(TEAM, settle_ms=0, limit=10)] == ["U0ALICE"]

    before_ms = time.time() * 1000
    s = await repo.commit(s, s.model_copy(update={"status": Status.GENERATING}), fence=None)
    first = (await dirty(redis))["U0ALICE"]
    assert before_ms - 1000 <= first <= time.time() * 1000 + 1000  # Redis's clock, in ms
    await asyncio.sleep(0.01)
    await repo.commit(s, s.model_copy(update={"status": Status.AWAITING_REVIEW}), fence=None)
    assert await dirty(redis) == {"U0ALICE": first}  # ZADD NX: the first change's time stays
    # Bob is involved (named) but never opened his Home.
    assert "U0BOB" not in await dirty(redis)


async def test_a_viewer_who_stopped_looking_is_not_marked(redis: Redis, repo: Repository) -> None:
    long_ago_ms = (time.time() - TTL - 60) * 1000
    await redis.zadd(keys.home_viewers(TEAM), {"U0ALICE": long_ago_ms})
    await repo.commit(None, make(), fence=None)
    assert await dirty(redis) == {}


async def test_take_waits_for_the_settle_time_and_takes_each_user_once(
    redis: Redis, repo: Repository, marks: HomeMarks, index: HomeIndex
) -> None:
    await marks.opened(TEAM, "U0ALICE")
    await index.take_due(TEAM, settle_ms=0, limit=10)
    await repo.commit(None, make(), fence=None)
    assert await index.take_due(TEAM, settle_ms=60_000, limit=10) == []  # too fresh
    assert "U0ALICE" in await dirty(redis)
    await asyncio.sleep(0.3)
    taken = await index.take_due(TEAM, settle_ms=200, limit=10)
    assert [d.user_id for d in taken] == ["U0ALICE"]
    assert await index.take_due(TEAM, settle_ms=0, limit=10) == []


async def test_two_publishers_never_take_the_same_user(
    redis_server: RedisServer, repo: Repository, marks: HomeMarks
) -> None:
    users = [f"U0USER{n:03d}" for n in range(60)]
    for user in users:
        await marks.opened(TEAM, user)
    clients = [Redis.from_url(redis_server.url, decode_responses=True) for _ in range(2)]
    try:
        a, b = (HomeIndex(c, repo.scripts, ttl_s=TTL) for c in clients)

        async def drain(ix: HomeIndex) -> list[str]:
            got: list[str] = []
            for _ in range(20):
                got += [d.user_id for d in await ix.take_due(TEAM, settle_ms=0, limit=7)]
            return got

        got_a, got_b = await asyncio.gather(drain(a), drain(b))
    finally:
        for c in clients:
            await c.aclose()
    assert not set(got_a) & set(got_b)
    assert sorted(got_a + got_b) == users


async def test_page_and_view_hash_travel_with_the_user(marks: HomeMarks, index: HomeIndex) -> None:
    await marks.opened(TEAM, "U0ALICE", page=2)
    (due,) = await index.take_due(TEAM, settle_ms=0, limit=10)
    assert (due.page, due.view_hash) == (2, None)
    await index.published(TEAM, "U0ALICE", "h1")
    await marks.opened(TEAM, "U0ALICE")  # reopening keeps the page
    (due,) = await index.take_due(TEAM, settle_ms=0, limit=10)
    assert (due.page, due.view_hash) == (2, "h1")
    await index.put_back(TEAM, ["U0ALICE"], pause_ms=0, forget_hash=True)
    (due,) = await index.take_due(TEAM, settle_ms=0, limit=10)
    assert due.view_hash is None


async def test_put_back_pauses_the_teams_homes(
    redis: Redis, marks: HomeMarks, index: HomeIndex
) -> None:
    await marks.opened(TEAM, "U0ALICE")
    await index.take_due(TEAM, settle_ms=0, limit=10)
    await index.put_back(TEAM, ["U0ALICE"], pause_ms=300)
    assert await index.take_due(TEAM, settle_ms=0, limit=10) == []  # Retry-After not over
    assert await dirty(redis) == {"U0ALICE": 0.0}
    await asyncio.sleep(0.35)
    assert [d.user_id for d in await index.take_due(TEAM, settle_ms=0, limit=10)] == ["U0ALICE"]


async def test_read_gives_my_sessions_a_page_of_the_teams_and_links(
    redis: Redis, repo: Repository, index: HomeIndex
) -> None:
    for n in range(12):
        owner = "U0ALICE" if n % 3 == 0 else "U0BOB"
        await repo.commit(None, make(f"s{n:02d}", owner=owner, at=1000.0 + n), fence=None)
    gone = make("s09")
    await redis.delete(keys.session(TEAM, "s09"))  # expired
    await index.note_link(make("s06"), "https://acme.slack.com/archives/C1/p1")
    data = await index.read(TEAM, "U0ALICE", page=0, mine_per_page=10, team_per_page=5)
    assert [s.id for s in data.mine] == ["s06", "s03", "s00"]
    assert [s.id for s in data.team] == ["s11", "s10", "s08", "s07"]  # s09 is gone
    assert (data.team_total, data.page) == (12, 0)
    assert data.links == {"s06": "https://acme.slack.com/archives/C1/p1"}
    assert await redis.zscore(keys.home_recent(TEAM), gone.id) is None  # dropped from the index
    far = await index.read(TEAM, "U0ALICE", page=9, mine_per_page=10, team_per_page=5)
    assert far.page == 2 and [s.id for s in far.team] == ["s00"]  # clamped to the last page


# --- the emulator's views.publish --------------------------------------------------------------


@pytest.fixture
async def slack() -> AsyncIterator[tuple[SlackEmulator, AsyncWebClient]]:
    emu = SlackEmulator()
    await emu.start()
    yield emu, AsyncWebClient(token=emu.bot_token, base_url=emu.api_url)
    await emu.stop()


def home(n: int = 1) -> dict[str, Any]:
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}
    return {"type": "home", "blocks": [section] * n}


async def error_of(call: Any) -> str:
    with pytest.raises(SlackApiError) as raised:
        await call
    return str(raised.value.response["error"])


async def test_views_publish_rules(slack: tuple[SlackEmulator, AsyncWebClient]) -> None:
    emu, client = slack
    first = await client.views_publish(user_id="U0ALICE", view=home())
    view = first["view"]
    assert view["type"] == "home" and view["hash"] and view["id"]
    assert emu.home.view_of("U0ALICE") == view and emu.home.publishes["U0ALICE"] == 1
    assert await error_of(client.views_publish(user_id="U0NOBODY", view=home())) == "user_not_found"
    modal = {**home(), "type": "modal", "title": {"type": "plain_text", "text": "x"}}
    assert (
        await error_of(client.views_publish(user_id="U0ALICE", view=modal)) == "invalid_arguments"
    )
    assert (
        await error_of(client.views_publish(user_id="U0ALICE", view=home(101))) == "view_too_large"
    )
    assert (await client.views_publish(user_id="U0ALICE", view=home(100)))["ok"]
    bad = {"type": "home", "blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "x"}}]}
    assert await error_of(client.views_publish(user_id="U0ALICE", view=bad)) == "invalid_arguments"
    stale = view["hash"]
    assert (
        await error_of(client.views_publish(user_id="U0ALICE", view=home(), hash=stale))
        == "hash_conflict"
    )
    current = emu.home.view_of("U0ALICE")
    assert current is not None
    assert (await client.views_publish(user_id="U0ALICE", view=home(2), hash=current["hash"]))["ok"]
    assert emu.home.publishes["U0ALICE"] == 3
    assert emu.home.view_of("U0ALICE")["id"] == view["id"]  # type: ignore[index]
    emu.home.not_enabled = True
    assert await error_of(client.views_publish(user_id="U0ALICE", view=home())) == "not_enabled"
    assert emu.home.publishes["U0ALICE"] == 3
