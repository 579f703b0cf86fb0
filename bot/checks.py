"""`storyloop check`: is the configuration good, and can we reach Slack, Redis, the LLM and the
image endpoint, and is ffmpeg installed?"""

from __future__ import annotations

import asyncio

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.app import image_client, web_client
from bot.config import Settings
from bot.llm.client import LLMClient
from bot.media import ffmpeg
from storage.connection import connect


async def _slack(settings: Settings) -> str:
    client = web_client(settings)
    if settings.oauth:
        return await _oauth_client(settings, client)
    resp = await client.auth_test()
    return f"ok — workspace {resp.get('team')} as {resp.get('user')}"


async def _oauth_client(settings: Settings, client: AsyncWebClient) -> str:
    """OAuth distribution has no one bot token to try, so the client id and secret are.

    ``oauth.v2.access`` with a code that can't exist installs nothing: Slack answers
    ``invalid_code`` when the client id and secret are good, ``invalid_client_id`` or
    ``bad_client_secret`` when they are not (its documented errors).
    """
    assert settings.slack_client_id and settings.slack_client_secret
    try:
        await client.oauth_v2_access(
            client_id=settings.slack_client_id,
            client_secret=settings.slack_client_secret.get_secret_value(),
            code="storyloop-check",
        )
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error == "invalid_code":
            return (
                "ok — OAuth distribution: Slack accepts the client id and secret; each "
                "workspace's token is saved when it installs the app (/slack/install)"
            )
        raise RuntimeError(
            f"Slack refused SLACK_CLIENT_ID / SLACK_CLIENT_SECRET ({error}); copy both from "
            "the app's Basic Information → App Credentials"
        ) from None
    raise RuntimeError("Slack accepted a made-up OAuth code")


async def _redis(settings: Settings) -> str:
    if settings.redis_url is None:
        return "ok — not configured: `storyloop run` starts a local redis-server with AOF"
    redis = connect(settings.redis_url, cluster=settings.redis_cluster)
    try:
        await redis.ping()
        persistence = await redis.info("persistence")
        cfg = await redis.config_get("maxmemory-policy")
    finally:
        await redis.aclose()
    aof = bool(int(persistence.get("aof_enabled", 0)))
    policy = cfg.get("maxmemory-policy", "?")
    notes = ["persists with AOF" if aof else "WARNING: AOF is off — a restart can lose work"]
    if policy != "noeviction":
        notes.append(f"WARNING: maxmemory-policy is {policy}; use noeviction")
    return "ok — " + "; ".join(notes)


async def _llm(settings: Settings) -> str:
    llm = LLMClient(
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key.get_secret_value(),
        model=settings.model,
        timeout_s=10,
        attempts=1,
    )
    try:
        return f"ok — models: {await llm.ping()}"
    finally:
        await llm.close()


async def _images(settings: Settings) -> str:
    """Reachability of the image endpoint and whether it lists the model — no paid call."""
    images = image_client(settings)
    try:
        return f"ok — {await images.ping()} at {settings.images_url}"
    finally:
        await images.close()


async def _ffmpeg(settings: Settings) -> str:
    """ffmpeg joins the video's clips and mixes the voice-over."""
    found = ffmpeg.version()
    if found is None:
        raise RuntimeError(
            "ffmpeg is not installed (apt-get install ffmpeg; .ci/bootstrap does it)"
        )
    return f"ok — {found}"


async def run_checks(settings: Settings) -> int:
    mode = "Socket Mode" if settings.socket_mode else f"HTTP mode on :{settings.port}"
    print(f"configuration: ok — {mode}, model {settings.model}")
    failed = 0
    for name, probe in (
        ("slack", _slack),
        ("redis", _redis),
        ("llm", _llm),
        ("images", _images),
        ("ffmpeg", _ffmpeg),
    ):
        try:
            result = await asyncio.wait_for(probe(settings), timeout=15)
        except Exception as exc:
            failed += 1
            result = f"FAILED — {type(exc).__name__}: {str(exc)[:200]}"
        print(f"{name}: {result}")
    return 1 if failed else 0
