"""`storyloop check` with OAuth distribution (no single bot token): it checks the client id and
secret with Slack instead of ``auth.test``, installing nothing."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis

from tests.e2e.harness import app_env
from tests.e2e.test_cli import run_cli
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator
from tests.support.redis_server import RedisServer


def oauth_env(emu: SlackEmulator, llm: FakeLLM, redis_url: str, secret: str) -> dict[str, str]:
    env = app_env(emu, llm, redis_url, mode="http")
    del env["SLACK_BOT_TOKEN"]
    env["SLACK_CLIENT_ID"] = emu.oauth.client_id
    env["SLACK_CLIENT_SECRET"] = secret
    return env


async def test_check_accepts_good_oauth_credentials_without_installing(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    env = oauth_env(emu, llm, redis_server.url, emu.oauth.client_secret)
    code, out = await run_cli(["check"], env, tmp_path)
    assert code == 0, out
    assert "slack: ok — OAuth distribution" in out
    assert [c.error for c in emu.calls_to("oauth.v2.access")] == ["invalid_code"]
    assert emu.calls_to("auth.test") == [] and emu.oauth.installs == {}
    assert emu.oauth.client_secret not in out


async def test_check_reports_a_wrong_client_secret(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    env = oauth_env(emu, llm, redis_server.url, "not-the-secret")
    code, out = await run_cli(["check"], env, tmp_path)
    assert code == 1
    assert "slack: FAILED" in out and "bad_client_secret" in out
    assert "redis: ok" in out  # the other checks still run
