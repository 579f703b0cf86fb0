"""Running a replica: Socket Mode or HTTP, the worker beside it, and a graceful SIGTERM.

On SIGTERM the replica stops taking Slack requests and jobs, lets running jobs finish for a
grace period and leaves the rest pending in Redis, where another replica (or this one after
restart) reclaims them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiohttp import web
from aiohttp.typedefs import Handler
from redis.exceptions import RedisError
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

from bot.app import Runtime, build_runtime
from bot.config import Settings

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The replica could not start; the message tells the admin what to fix."""


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def start_socket_mode(rt: Runtime) -> AsyncSocketModeHandler:
    assert rt.settings.slack_app_token is not None
    handler = AsyncSocketModeHandler(
        rt.app, app_token=rt.settings.slack_app_token.get_secret_value(), web_client=rt.client
    )
    timeout = rt.settings.socket_connect_timeout_s
    try:
        # connect_async() retries forever on a bad app token: bound it and say why.
        await asyncio.wait_for(
            handler.connect_async(),  # type: ignore[no-untyped-call]
            timeout=timeout,
        )
    except TimeoutError:
        with contextlib.suppress(Exception):
            await handler.close_async()  # type: ignore[no-untyped-call]
        raise StartupError(
            f"Could not open a Socket Mode connection within {timeout:.0f} s. "
            "Check SLACK_APP_TOKEN (an xapp- token with connections:write, from the app's "
            "Basic Information page) and that Socket Mode is "
            "enabled for the app."
        ) from None
    return handler


@web.middleware
async def reject_malformed_timestamps(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A non-numeric X-Slack-Request-Timestamp makes slack_sdk's verifier raise (500): answer
    401 like any other bad signature."""
    stamp = (request.headers.get("X-Slack-Request-Timestamp") or "0").strip()
    if request.method == "POST" and not (stamp.isascii() and stamp.isdigit()):
        return web.json_response({"error": "invalid request"}, status=401)
    return await handler(request)


async def start_http(rt: Runtime, host: str = "0.0.0.0") -> web.AppRunner:  # noqa: S104
    web_app = rt.app.web_app(path="/slack/events", port=rt.settings.port)
    web_app.middlewares.append(reject_malformed_timestamps)
    runner = web.AppRunner(web_app)
    await runner.setup()
    await web.TCPSite(runner, host, rt.settings.port).start()
    return runner


async def serve(settings: Settings, redis_url: str) -> None:
    rt = build_runtime(settings, redis_url)
    try:
        await rt.redis.ping()
    except (RedisError, OSError) as exc:
        await rt.close()
        where = redis_url.rsplit("@", maxsplit=1)[-1]  # never print a password in the URL
        raise StartupError(f"Redis at {where} is not reachable.") from exc
    try:
        await rt.identity.load()
    except Exception as exc:
        await rt.close()
        raise StartupError(
            "Slack refused the bot token (auth.test failed). Check SLACK_BOT_TOKEN and that the "
            "app is installed in the workspace."
        ) from exc
    await rt.worker.start()
    handler: AsyncSocketModeHandler | None = None
    runner: web.AppRunner | None = None
    try:
        if settings.socket_mode:
            handler = await start_socket_mode(rt)
            log.info("Storyloop is running in Socket Mode")
        else:
            runner = await start_http(rt)
            log.info("Storyloop is listening on :%d/slack/events (HTTP mode)", settings.port)
        await _wait_for_signal()
        log.info("shutting down: no new work; finishing running jobs")
    finally:
        if handler is not None:
            with contextlib.suppress(Exception):
                await handler.close_async()  # type: ignore[no-untyped-call]
        if runner is not None:
            await runner.cleanup()
        await rt.worker.stop()
        await rt.close()
