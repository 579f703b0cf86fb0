"""Building the Bolt app and the worker from one ``Settings``. No globals: tests call these too."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.payload_utils import (
    is_action,
    is_event,
    is_options,
    is_shortcut,
    is_slash_command,
    is_view,
)
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

import handlers
from bot.config import Settings
from bot.crashpoints import CrashPoints
from bot.jobs.context import FlowContext
from bot.jobs.eager import EagerLane
from bot.jobs.flows import Flows
from bot.jobs.worker import Worker
from bot.llm.client import LLMClient
from bot.logs import team_id
from bot.media.images import ImageClient
from bot.media.speech import SpeechClient
from bot.media.video import OpenAIVideoJobs
from bot.metrics import Metrics
from bot.oauth import (
    NOT_INSTALLED,
    RedisInstallationStore,
    RedisStateStore,
    installation_authorize,
    oauth_settings,
)
from bot.services import HandlerServices
from bot.slack.gateway import SlackGateway
from bot.slack.tokens import InstalledTokens
from bot.slack.uploads import Uploads
from storage.budget import Bucket, RedisRateBudget
from storage.connection import Client, connect
from storage.home import HomeMarks
from storage.intake import Intake
from storage.queue import JobQueue
from storage.repository import Repository
from storage.scripts import Scripts

log = logging.getLogger(__name__)


def web_client(
    settings: Settings,
    session: aiohttp.ClientSession | None = None,
    metrics: Metrics | None = None,
) -> AsyncWebClient:
    """Our Web API client, with the base URL from settings.

    Rate limits (429) are handled by the gateway, which waits Retry-After and then checks that
    the job still owns its session before sending again.

    With a shared ``session`` its connections are reused (without one, slack_sdk opens a new
    aiohttp session, and a new TCP/TLS connection, for every call).

    The SDK's default connection-error retry is left out on purpose: a re-sent chat.postMessage
    after a reset can post twice. The gateway resolves such errors by looking in Slack first.
    With ``metrics``, a handler that never retries counts the 429s of every call.
    """
    return AsyncWebClient(
        token=settings.bot_token,  # None with OAuth: each call names its workspace's token
        base_url=settings.slack_api_url,
        timeout=15,
        retry_handlers=[metrics.slack_counter()] if metrics is not None else [],
        session=session,
    )


@dataclass
class Runtime:
    """Everything a running replica holds; ``close()`` releases it."""

    settings: Settings
    redis: Client
    app: AsyncApp
    worker: Worker
    llm: LLMClient
    client: AsyncWebClient

    http: aiohttp.ClientSession
    identity: BotIdentity
    images: ImageClient
    speech: SpeechClient
    eager: EagerLane | None = None
    metrics: Metrics = field(default_factory=Metrics)

    async def close(self) -> None:
        await self.llm.close()
        await self.images.close()
        await self.speech.close()
        await self.redis.aclose()
        await self.http.close()


class BotIdentity:
    """Who the bot is (``auth.test``), asked once and shared by every request.

    Bolt's default single-workspace authorization calls ``auth.test`` lazily, once per concurrent
    first request; the replica loads this at start instead, so no ack waits for it.
    """

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self.result: AuthorizeResult | None = None
        self._lock = asyncio.Lock()

    async def load(self) -> AuthorizeResult:
        async with self._lock:
            if self.result is None:
                resp = await self.client.auth_test()
                self.result = AuthorizeResult(
                    enterprise_id=resp.get("enterprise_id"),
                    team_id=resp.get("team_id"),
                    team=resp.get("team"),
                    url=resp.get("url"),
                    bot_user_id=resp.get("user_id"),
                    bot_id=resp.get("bot_id"),
                    bot_token=self.client.token,
                )
            return self.result

    def authorizer(self) -> Callable[..., Awaitable[AuthorizeResult]]:
        """Bolt's ``authorize`` hook (Bolt passes the arguments it finds in the signature)."""

        async def authorize(team_id: str | None = None) -> AuthorizeResult:
            return self.result or await self.load()

        return authorize


def image_client(settings: Settings, metrics: Metrics | None = None) -> ImageClient:
    return ImageClient(
        metrics=metrics,
        base_url=settings.images_url,
        api_key=settings.images_key,
        model=settings.image_model,
        size=settings.image_size,
        quality=settings.image_quality,
        timeout_s=settings.image_timeout_s,
    )


def video_provider(
    settings: Settings, http: aiohttp.ClientSession, metrics: Metrics | None = None
) -> OpenAIVideoJobs:
    return OpenAIVideoJobs(
        metrics=metrics,
        base_url=settings.video_url,
        api_key=settings.video_key,
        model=settings.video_model,
        size=settings.video_size,
        supported_seconds=settings.video_lengths,
        session=http,
    )


def speech_client(settings: Settings, metrics: Metrics | None = None) -> SpeechClient:
    return SpeechClient(
        metrics=metrics,
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key.get_secret_value(),
        model=settings.speech_model,
        voice=settings.speech_voice,
        timeout_s=120.0,
    )


def request_kind(body: dict[str, object]) -> str:
    """The kind of a Slack request, for the ack metrics."""
    kinds = (
        (is_slash_command, "command"),
        (is_action, "action"),
        (is_view, "view"),
        (is_shortcut, "shortcut"),
        (is_options, "options"),
        (is_event, "event"),
    )
    for test, kind in kinds:
        if test(body):
            return kind
    return "other"


class TimedApp(AsyncApp):
    """Bolt's app, timing each request from dispatch to its ack (both modes dispatch here).

    With ``process_before_response=True`` the response Bolt returns *is* the ack, so this is
    the ack latency the replica adds (the network to Slack aside). Global middleware can't
    measure it: Bolt runs the listeners after the middleware chain has returned.
    """

    metrics: Metrics

    async def async_dispatch(self, req: AsyncBoltRequest) -> BoltResponse:
        start = time.perf_counter()
        token = team_id.set(req.context.team_id)  # log lines of this request name the workspace
        ok = False
        try:
            response = await super().async_dispatch(req)
            ok = response.status < 400
            return response
        finally:
            team_id.reset(token)
            self.metrics.ack(request_kind(req.body), ok, time.perf_counter() - start)


def build_app(
    settings: Settings,
    services: HandlerServices,
    client: AsyncWebClient,
    identity: BotIdentity | None = None,
    metrics: Metrics | None = None,
    *,
    oauth: AsyncOAuthSettings | None = None,
) -> AsyncApp:
    identity = identity or BotIdentity(client)
    bolt_log = logging.getLogger("slack_bolt")
    if bolt_log.level == logging.NOTSET:
        # Bolt tests ``logger.level <= DEBUG`` (not the effective level) before formatting a
        # debug line for every event it skips and every Socket Mode ack: NOTSET passes, so an
        # unset level formatted a dict per echo for nothing (bench/README.md, the profile).
        # INFO and above still follow the root logger; DEBUG only if the root is at DEBUG now.
        root_debug = logging.getLogger().getEffectiveLevel() <= logging.DEBUG
        bolt_log.setLevel(logging.DEBUG if root_debug else logging.INFO)
    common: dict[str, Any] = dict(
        client=client,
        signing_secret=(
            settings.slack_signing_secret.get_secret_value()
            if settings.slack_signing_secret
            else None
        ),
        process_before_response=True,  # ack only after the intake script has run
        request_verification_enabled=not settings.socket_mode,
        raise_error_for_unhandled_request=False,
        logger=bolt_log,
    )
    if oauth is None:
        app = TimedApp(authorize=identity.authorizer(), **common)
    else:
        # Many workspaces: Bolt's install flow, and its authorize finds each request's
        # workspace in the installation store (no installation: the polite refusal).
        app = TimedApp(
            oauth_settings=oauth,
            # auth.test cached per token. Bolt's annotation names plain functions only; its
            # __init__ takes an AsyncAuthorize instance as is (an isinstance check).
            authorize=installation_authorize(oauth, client),  # type: ignore[arg-type]
            installation_store_bot_only=True,
            user_facing_authorize_error_message=NOT_INSTALLED,
            **common,
        )
        app.enable_token_revocation_listeners()  # app_uninstalled, tokens_revoked: delete
    app.metrics = metrics or Metrics()
    handlers.register(app, services)
    return app


def rate_budget(settings: Settings, scripts: Scripts) -> RedisRateBudget | None:
    """The shared Slack rate budget (``storage/budget.py``), or None when it is turned off."""
    if not settings.slack_budget:
        return None
    return RedisRateBudget(
        scripts,
        channel=Bucket(settings.channel_per_s, settings.channel_burst, settings.channel_reserve),
        updates=Bucket(
            settings.updates_per_min / 60, settings.update_burst, settings.update_reserve
        ),
        max_wait_s=settings.budget_max_wait_s,
    )


def build_runtime(settings: Settings, redis_url: str, *, partner_pid: int | None = None) -> Runtime:
    """Everything a replica needs. Call it from a running event loop (it opens an HTTP session).

    ``partner_pid``: in a worker process, the listener's pid (crash points take both down).
    """
    # Every job may hold a connection at once (plus heartbeats, readers, intake).
    metrics = Metrics()  # this process's; bot/metrics.py shows both of a replica's as one
    redis = connect(
        redis_url, max_connections=settings.workers * 2 + 32, cluster=settings.redis_cluster
    )
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
    repo = Repository(redis, session_ttl_s=settings.session_ttl_days * 86400)
    intake = Intake(repo.scripts, session_ttl_s=repo.session_ttl_s)
    client = web_client(settings, http, metrics)
    llm = LLMClient(
        metrics=metrics,
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key.get_secret_value(),
        model=settings.model,
        timeout_s=settings.llm_timeout_s,
        attempts=settings.llm_attempts,
        backoff_s=settings.llm_backoff_s,
    )
    crash = CrashPoints(settings.crash_point, partner=partner_pid)
    images = image_client(settings, metrics)
    speech = speech_client(settings, metrics)
    oauth: AsyncOAuthSettings | None = None
    tokens: InstalledTokens | None = None
    if settings.oauth:
        assert settings.slack_client_id and settings.slack_client_secret
        installations = RedisInstallationStore(redis)
        tokens = InstalledTokens(installations)
        oauth = oauth_settings(
            settings.slack_client_id,
            settings.slack_client_secret.get_secret_value(),
            installations,
            RedisStateStore(redis),
        )
    gateway = SlackGateway(client, repo, tokens, rate_budget(settings, repo.scripts))
    ctx = FlowContext(
        settings=settings,
        repo=repo,
        gateway=gateway,
        llm=llm,
        crash=crash,
        images=images,
        uploads=Uploads(gateway, http),
        spool=Path(settings.data_dir) / "spool",
        video=video_provider(settings, http, metrics),
        speech=speech,
        metrics=metrics,
    )
    consumer = f"{socket.gethostname()}-{os.getpid()}"
    flows = Flows(ctx)
    worker = Worker(
        JobQueue(redis, consumer),
        flows,
        concurrency=settings.workers,
        lease_s=settings.lease_s,
        max_deliveries=settings.max_deliveries,
        metrics=metrics,
    )
    identity = BotIdentity(client)
    eager = EagerLane(flows, lease_s=settings.lease_s) if settings.eager else None
    services = HandlerServices(
        settings=settings,
        intake=intake,
        crash=crash,
        eager=eager,
        repo=repo,
        home=HomeMarks(repo.scripts, ttl_s=repo.session_ttl_s),
    )
    app = build_app(settings, services, client, identity, metrics, oauth=oauth)
    return Runtime(
        settings, redis, app, worker, llm, client, http, identity, images, speech, eager, metrics
    )
