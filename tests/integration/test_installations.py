"""Bolt's OAuth stores (bot/oauth.py) on a real redis-server."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from slack_sdk.oauth.installation_store.models.installation import Installation

from bot.oauth import RedisInstallationStore, RedisStateStore
from bot.slack.tokens import InstalledTokens
from storage import keys


def _installation(team: str, token: str) -> Installation:
    return Installation(
        app_id="A1",
        team_id=team,
        team_name=f"{team} Inc",
        bot_token=token,
        bot_id="B1",
        bot_user_id="UBOT",
        bot_scopes="chat:write,commands",
        user_id="UADMIN",
        installed_at=1_700_000_000.5,
    )


async def test_save_find_delete_installation(redis: Redis) -> None:
    store = RedisInstallationStore(redis)
    await store.async_save(_installation("T2", "xoxb-two"))
    await store.async_save(_installation("T3", "xoxb-three"))

    found = await store.async_find_installation(enterprise_id=None, team_id="T2")
    assert found is not None
    assert (found.bot_token, found.team_name, found.installed_at) == (
        "xoxb-two",
        "T2 Inc",
        1_700_000_000.5,
    )
    assert found.bot_scopes == ["chat:write", "commands"]
    bot = await store.async_find_bot(enterprise_id=None, team_id="T3")
    assert bot is not None and bot.bot_token == "xoxb-three"
    assert await redis.exists(keys.installation("T2")) == 1  # under the workspace's tagged prefix

    # a reinstall replaces the token
    await store.async_save(_installation("T2", "xoxb-two-again"))
    again = await store.async_find_bot(enterprise_id=None, team_id="T2")
    assert again is not None and again.bot_token == "xoxb-two-again"

    # a user's revoke keeps the bot; deleting the workspace's installation leaves the other
    await store.async_delete_installation(enterprise_id=None, team_id="T2", user_id="UADMIN")
    assert await store.async_find_bot(enterprise_id=None, team_id="T2") is not None
    await store.async_delete_all(enterprise_id=None, team_id="T2")
    assert await store.async_find_bot(enterprise_id=None, team_id="T2") is None
    assert await store.async_find_installation(enterprise_id=None, team_id="T2") is None
    assert await store.async_find_bot(enterprise_id=None, team_id="T3") is not None


async def test_state_is_accepted_once(redis: Redis) -> None:
    store = RedisStateStore(redis)
    first, second = await store.async_issue(), await store.async_issue()
    assert first != second
    results = await asyncio.gather(*(store.async_consume(first) for _ in range(5)))
    assert sorted(results) == [False] * 4 + [True]  # concurrent redirects: one wins
    assert await store.async_consume(first) is False
    assert await store.async_consume("never-issued") is False
    assert await store.async_consume(second) is True


async def test_state_expires(redis: Redis) -> None:
    store = RedisStateStore(redis, ttl_s=1)
    state = await store.async_issue()
    assert 0 < await redis.pttl(keys.oauth_state(state)) <= 1000
    await asyncio.sleep(1.2)
    assert await store.async_consume(state) is False


async def test_installed_tokens_are_cached_briefly(redis: Redis) -> None:
    """The gateway's TokenSource: a workspace's token from the store, cached for ``ttl_s``, so
    an uninstall stops a replica's calls within that time."""
    store = RedisInstallationStore(redis)
    tokens = InstalledTokens(store, ttl_s=0.3)
    assert await tokens.token("T2") is None
    await store.async_save(_installation("T2", "xoxb-two"))
    await asyncio.sleep(0.35)
    assert await tokens.token("T2") == "xoxb-two"
    await store.async_delete_all(enterprise_id=None, team_id="T2")
    assert await tokens.token("T2") == "xoxb-two"  # cached
    await asyncio.sleep(0.35)
    assert await tokens.token("T2") is None
