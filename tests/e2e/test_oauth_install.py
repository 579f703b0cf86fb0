"""OAuth distribution end to end (HTTP mode): install into a second workspace through Bolt's
flow, serve it with its own token, and refuse it politely once it uninstalls the app."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from redis.asyncio import Redis

from bot.oauth import RedisInstallationStore
from tests.e2e.harness import AppUnderTest, action_ids, app_env, by_slot, settings_from
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator
from tests.support.redis_server import RedisServer

TEAM = "T0SECOND"


@pytest.fixture
async def oauth_app(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, redis: Redis
) -> AsyncIterator[AppUnderTest]:
    env = app_env(emu, llm, redis_server.url, mode="http")
    del env["SLACK_BOT_TOKEN"]  # many workspaces: no one token
    env["SLACK_CLIENT_ID"] = emu.oauth.client_id
    env["SLACK_CLIENT_SECRET"] = emu.oauth.client_secret
    running = await AppUnderTest(settings_from(env), redis_server.url).start()
    emu.mode = "http"
    emu.events_url = running.events_url
    yield running
    await running.stop(grace_s=2)


def _cookie(page: aiohttp.ClientResponse) -> dict[str, str]:
    """Bolt's state cookie, sent back by hand: it is ``Secure`` and this test speaks http."""
    return {"Cookie": "; ".join(f"{k}={v.value}" for k, v in page.cookies.items())}


async def install(app: AppUnderTest, emu: SlackEmulator, team: str) -> aiohttp.ClientResponse:
    """A browser: /slack/install (state + its cookie) → "Allow" → /slack/oauth_redirect."""
    base = f"http://127.0.0.1:{app.settings.port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(f"{base}/slack/install", allow_redirects=False) as page:
            assert page.status in {200, 302}
            where = page.headers.get("Location") or await page.text()
            cookie = _cookie(page)
        found = re.search(r"[?&;]state=([A-Za-z0-9_\-]+)", where)
        assert found, where
        assert "client_id=1111.2222" in where and "chat%3Awrite" in where.replace(":", "%3A")
        code = emu.oauth.authorize(team)
        redirect = f"{base}/slack/oauth_redirect?code={code}&state={found.group(1)}"
        async with browser.get(redirect, allow_redirects=False, headers=cookie) as done:
            await done.read()
            return done


async def test_install_serve_and_uninstall_a_second_workspace(
    emu: SlackEmulator, redis: Redis, oauth_app: AppUnderTest
) -> None:
    store = RedisInstallationStore(redis)
    done = await install(oauth_app, emu, TEAM)
    assert done.status == 200
    token = emu.oauth.token_of(TEAM)
    assert token is not None and token != emu.bot_token
    bot = await store.async_find_bot(enterprise_id=None, team_id=TEAM)
    assert bot is not None and bot.bot_token == token  # the installation is saved in Redis

    before = len(emu.calls)
    ack = await emu.slash_command("30s eco water bottle launch", team_id=TEAM)
    assert ack.ok, ack.error
    card = (await emu.wait_for(lambda: by_slot(emu, "card"), timeout=5))[0]
    await emu.wait_for(
        lambda: [
            m
            for m in by_slot(emu, "story")
            if m.thread_ts == card.ts and "story_approve" in action_ids(m)
        ],
        timeout=10,
    )
    served = emu.calls[before:]
    assert {"chat.postMessage", "chat.update"} <= {c.method for c in served}
    # every Slack call serving the second workspace (the listener's and the worker's) used
    # its token: none went out with the emulator's own token, or with none
    assert [c.method for c in served if c.token != token] == []

    ack = await emu.oauth.uninstall(TEAM)
    assert ack.ok, ack.error
    # process_before_response: Bolt deleted the installation before it acked
    assert await store.async_find_bot(enterprise_id=None, team_id=TEAM) is None

    refused = await emu.slash_command("another one", team_id=TEAM)
    assert refused.ok, refused.error  # answered within the ack, no error page
    # Bolt answers through the command's response_url: an ephemeral note, no stack trace
    note = await emu.wait_for(lambda: [r for r in emu.responses if "isn't installed" in r.text])
    assert note[0].body.get("response_type", "ephemeral") == "ephemeral"
    assert len(by_slot(emu, "card")) == 1  # nothing started for it


async def test_a_state_is_good_for_one_redirect_only(
    emu: SlackEmulator, redis: Redis, oauth_app: AppUnderTest
) -> None:
    """A replayed redirect (same state, new code) installs nothing."""
    base = f"http://127.0.0.1:{oauth_app.settings.port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(f"{base}/slack/install", allow_redirects=False) as page:
            where = page.headers.get("Location") or await page.text()
            cookie = _cookie(page)
        found = re.search(r"[?&;]state=([A-Za-z0-9_\-]+)", where)
        assert found
        state = found.group(1)
        first = f"{base}/slack/oauth_redirect?code={emu.oauth.authorize(TEAM)}&state={state}"
        async with browser.get(first, allow_redirects=False, headers=cookie) as done:
            assert done.status == 200
        again = f"{base}/slack/oauth_redirect?code={emu.oauth.authorize('T0THIRD')}&state={state}"
        async with browser.get(again, allow_redirects=False, headers=cookie) as replay:
            assert replay.status >= 400
    store = RedisInstallationStore(redis)
    assert await store.async_find_bot(enterprise_id=None, team_id="T0THIRD") is None
