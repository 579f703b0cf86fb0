"""OAuth distribution: a workspace's bot token revoked (``tokens_revoked``), end to end in HTTP
mode. Two workspaces are installed through Bolt's flow; the Slack emulator revokes one's token
and delivers the signed event; its installation leaves Redis, its later triggers are refused
without the revoked token ever being used again, and the other workspace goes on unchanged.

Also: a job recorded just before the revoke ends (no token to serve it with) instead of being
retried forever, and a person's user-token revoke (``tokens.oauth``) leaves the bot installed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bot.oauth import NOT_INSTALLED, RedisInstallationStore
from storage import keys
from tests.chaos.support import wait_until
from tests.e2e.harness import AppUnderTest, action_ids, app_env, by_slot, settings_from
from tests.e2e.test_oauth_install import install
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator, StoredMessage
from tests.support.redis_server import RedisServer

REVOKED = "T0REVOKED"  # its bot token is revoked
# The emulator's own workspace stays: its people can also reply in threads and click.


async def oauth_app_started(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, *, worker: bool, **extra: str
) -> AppUnderTest:
    env = app_env(emu, llm, redis_server.url, mode="http", **extra)
    del env["SLACK_BOT_TOKEN"]  # many workspaces: each has its own token, none is configured
    env["SLACK_CLIENT_ID"] = emu.oauth.client_id
    env["SLACK_CLIENT_SECRET"] = emu.oauth.client_secret
    running = await AppUnderTest(settings_from(env), redis_server.url).start(worker=worker)
    emu.mode = "http"
    emu.events_url = running.events_url
    return running


@pytest.fixture
async def oauth_app(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, redis: Redis
) -> AsyncIterator[AppUnderTest]:
    running = await oauth_app_started(emu, llm, redis_server, worker=True)
    yield running
    await running.stop(grace_s=2)


async def story_in(emu: SlackEmulator, team: str) -> StoredMessage:
    """``/story`` from ``team``; returns its card once the reviewable story is in its thread."""
    cards = len(by_slot(emu, "card"))
    ack = await emu.slash_command("30s eco water bottle launch", team_id=team)
    assert ack.ok, ack.error
    card = (await emu.wait_for(lambda: by_slot(emu, "card")[cards:], timeout=5))[0]
    await emu.wait_for(
        lambda: [
            m
            for m in by_slot(emu, "story")
            if m.thread_ts == card.ts and "story_approve" in action_ids(m)
        ],
        timeout=10,
    )
    return card


async def test_tokens_revoked_removes_the_installation_and_the_other_workspace_keeps_working(
    emu: SlackEmulator, redis: Redis, oauth_app: AppUnderTest
) -> None:
    store = RedisInstallationStore(redis)
    kept = emu.team_id
    for team in (REVOKED, kept):
        assert (await install(oauth_app, emu, team)).status == 200
    revoked_token, kept_token = emu.oauth.token_of(REVOKED), emu.oauth.token_of(kept)
    assert revoked_token and kept_token and revoked_token != kept_token
    await story_in(emu, REVOKED)  # served while installed

    # A person's user token revoked (``tokens.oauth``): the bot's installation stays.
    ack = await emu.oauth.revoke_tokens(kept, bot=False, users=("U0ALICE",))
    assert ack.ok, ack.error
    assert await redis.exists(keys.installation(kept)) == 1

    # The bot token of REVOKED is revoked: Slack delivers the signed ``tokens_revoked``.
    ack = await emu.oauth.revoke_tokens(REVOKED)
    assert ack.ok, ack.error
    # process_before_response: the installation was deleted before the event was acked
    assert await redis.exists(keys.installation(REVOKED)) == 0
    assert await store.async_find_bot(enterprise_id=None, team_id=REVOKED) is None
    bot = await store.async_find_bot(enterprise_id=None, team_id=kept)
    assert bot is not None and bot.bot_token == kept_token
    since = len(emu.calls)

    # A later trigger from REVOKED: the polite refusal, nothing recorded, nothing started.
    cards = len(by_slot(emu, "card"))
    refused = await emu.slash_command("another one", team_id=REVOKED)
    assert refused.ok, refused.error
    note = await emu.wait_for(lambda: [r for r in emu.responses if NOT_INSTALLED in r.text])
    assert note[0].body.get("response_type", "ephemeral") == "ephemeral"

    # The other workspace: a story, a reply in its thread and its answer, a click.
    card = await story_in(emu, kept)
    ts = await emu.user_posts(card.channel, "make it funnier", thread_ts=card.ts)
    await emu.wait_for(lambda: by_slot(emu, f"reply:{ts}"), timeout=10)
    story = next(m for m in by_slot(emu, "story") if m.thread_ts == card.ts)
    await emu.click(story.ts, "story_regenerate", channel=card.channel)
    await emu.wait_for(
        lambda: [m for m in by_slot(emu, "notice:2") if m.thread_ts == card.ts], timeout=10
    )
    assert len(by_slot(emu, "card")) == cards + 1  # REVOKED's /story started nothing

    served = emu.calls[since:]
    assert served, "the other workspace was served"
    # Not one call after the revoke used the revoked token, and every one named a workspace's
    # token: the other workspace's was used for all of it.
    assert [c.method for c in served if c.token == revoked_token] == []
    assert [c.method for c in served if c.token != kept_token] == []


async def test_a_job_recorded_before_the_revoke_ends_without_the_token(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, redis: Redis
) -> None:
    """A ``/story`` recorded, then the token revoked before any worker ran it: the worker finds
    no installation, ends the job (nobody to tell: there is no token to tell them with) and
    never calls Slack with the revoked token; the job is not retried forever."""
    app = await oauth_app_started(emu, llm, redis_server, worker=False, STORYLOOP_EAGER="false")
    try:
        assert (await install(app, emu, REVOKED)).status == 200
        token = emu.oauth.token_of(REVOKED)
        ack = await emu.slash_command("30s eco water bottle launch", team_id=REVOKED)
        assert ack.ok, ack.error
        assert app.runtime is not None
        queue = app.runtime.worker.queue
        assert (await queue.stats()).depth == 1  # recorded, waiting for a worker

        assert (await emu.oauth.revoke_tokens(REVOKED)).ok
        since = len(emu.calls)
        await app.runtime.worker.start()

        async def ended() -> bool:
            return (await queue.stats()).depth == 0

        assert await wait_until(ended, 10, interval=0.1), await queue.stats()
        assert [c.method for c in emu.calls[since:] if c.token == token] == []
        assert by_slot(emu, "card") == []
        counted = app.runtime.metrics.registry.get_sample_value(
            "storyloop_jobs_total", {"outcome": "not_installed"}
        )
        assert counted == 1
    finally:
        await app.stop(grace_s=2)
