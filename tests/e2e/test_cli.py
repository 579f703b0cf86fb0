"""The entry points as an admin runs them: `storyloop run` and `storyloop check`."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from redis.asyncio import Redis

from tests.e2e.harness import app_env
from tests.e2e.processes import ROOT, AppProcess
from tests.e2e.test_story_flow import start_story
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator
from tests.support.redis_server import RedisServer


async def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "OPENAI_", "REDIS_", "STORYLOOP_"))
    }
    base.update(env)
    base["PYTHONPATH"] = str(ROOT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=str(cwd),
        env=base,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return int(proc.returncode or 0), out.decode()


async def test_missing_settings_are_listed_in_one_message(tmp_path: Path) -> None:
    code, out = await run_cli(["run"], {}, tmp_path)
    assert code == 2
    assert "SLACK_BOT_TOKEN is missing" in out and "OPENAI_API_KEY is missing" in out
    assert "get it from" in out and "Traceback" not in out


async def test_http_mode_without_signing_secret_refuses_to_start(tmp_path: Path) -> None:
    env = {"SLACK_BOT_TOKEN": "xoxb-1", "OPENAI_API_KEY": "k"}
    code, out = await run_cli(["run"], env, tmp_path)
    assert code == 2 and "SLACK_SIGNING_SECRET is missing" in out and "SLACK_APP_TOKEN" in out


async def test_check_reaches_slack_redis_and_llm(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    env = app_env(emu, llm, redis_server.url, mode="socket")
    code, out = await run_cli(["check"], env, tmp_path)
    assert code == 0, out
    assert "slack: ok" in out and "redis: ok — persists with AOF" in out and "llm: ok" in out
    # The image endpoint is reached without a paid call (models are listed, nothing generated).
    assert "images: ok" in out and "gpt-image-2" in out
    assert "ffmpeg: ok — ffmpeg version" in out
    assert llm.image_requests == []
    assert emu.calls_to("auth.test")
    assert emu.bot_token not in out and env["OPENAI_API_KEY"] not in out


async def test_check_reports_failures_plainly(
    emu: SlackEmulator, llm: FakeLLM, tmp_path: Path
) -> None:
    env = app_env(emu, llm, "redis://127.0.0.1:1/0", mode="socket")
    env["SLACK_BOT_TOKEN"] = "xoxb-wrong"
    code, out = await run_cli(["check"], env, tmp_path)
    assert code == 1
    assert "slack: FAILED" in out and "invalid_auth" in out and "redis: FAILED" in out
    assert "images: ok" in out  # each part is reported on its own


async def test_bad_app_token_fails_fast_with_a_clear_message(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, tmp_path: Path
) -> None:
    env = app_env(
        emu,
        llm,
        redis_server.url,
        mode="socket",
        SLACK_APP_TOKEN="xapp-wrong",
        STORYLOOP_SOCKET_CONNECT_TIMEOUT="3",
    )
    code, out = await run_cli(["run"], env, tmp_path)
    assert code == 1
    assert "Socket Mode connection" in out and "SLACK_APP_TOKEN" in out
    assert "xapp-wrong" not in out


async def test_run_without_redis_url_starts_a_persistent_local_redis(
    emu: SlackEmulator, llm: FakeLLM, tmp_path: Path
) -> None:
    env = app_env(emu, llm, "unused", mode="socket")
    del env["REDIS_URL"]
    env["STORYLOOP_DATA_DIR"] = str(tmp_path / "data")
    proc = await AppProcess(env, tmp_path / "app.log").start()
    try:
        await emu.wait_connected(timeout=20)
        await start_story(emu)
    finally:
        assert await proc.terminate() == 0, proc.log()
    redis_dir = tmp_path / "data" / "redis"
    assert any(p.name.startswith("appendonly") for p in redis_dir.iterdir())
    assert not (redis_dir / "redis.sock").exists()  # the local server stopped with the app
