"""``/healthz``, ``/readyz`` and ``/metrics`` of a replica.

- ``/healthz``: the listener's event loop answers (liveness: restart the replica if not).
- ``/readyz``: Redis answers PING, the Slack side is up (Socket Mode connected, or the HTTP
  server serving) and the job worker answers; 503 with the reasons otherwise (readiness: send
  no traffic). The worker's answer is the same one ``/metrics`` asks for, so a frozen worker
  (SIGSTOP, a stuck loop) counts as down, not only a dead one.
- ``/metrics``: both processes' metrics on one page (bot/metrics.py), and the queue's depth and
  oldest job, sampled here at scrape time (one Redis round trip per scrape, none per request).

HTTP mode serves them on ``PORT`` beside ``/slack/events``; Socket Mode on
``STORYLOOP_METRICS_PORT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

from bot.jobs.worker import Worker
from bot.metrics import CONTENT_TYPE, Metrics, merge, parse
from storage.queue import JobQueue

log = logging.getLogger(__name__)
CHECK_TIMEOUT_S = 1.0


class WorkerDown(Exception):
    """The job worker did not answer; ``str()`` says how, for ``/readyz``."""


class WorkerProbe(Protocol):
    async def snapshot(self) -> bytes | None:
        """The worker's exposition text (None: it shares the listener's metrics); raises
        ``WorkerDown`` if it is dead or does not answer within ``CHECK_TIMEOUT_S``."""
        ...


class InlineWorker:
    """The worker runs on the listener's own loop and shares its metrics."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def snapshot(self) -> bytes | None:
        if not self.worker.alive():
            raise WorkerDown("the job worker is not running")
        return None


class Health:
    def __init__(
        self,
        metrics: Metrics,
        queue: JobQueue,
        worker: WorkerProbe,
        slack_ready: Callable[[], Awaitable[str | None]],
    ) -> None:
        """``slack_ready()`` returns None when connected, else why not."""
        self.metrics = metrics
        self.queue = queue
        self.worker = worker
        self.slack_ready = slack_ready

    def add_routes(self, web_app: web.Application) -> None:
        web_app.router.add_get("/healthz", self.healthz)
        web_app.router.add_get("/readyz", self.readyz)
        web_app.router.add_get("/metrics", self.metrics_page)

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.Response:
        redis, slack, worker = await asyncio.gather(
            self._redis_problem(), self._slack_problem(), self._worker_problem()
        )
        problems = {k: v for k, v in (("redis", redis), ("slack", slack), ("worker", worker)) if v}
        if problems:
            return web.json_response({"status": "not ready", "problems": problems}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics_page(self, _request: web.Request) -> web.Response:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                stats = await self.queue.stats()
            self.metrics.sample_queue(stats.depth, stats.pending, stats.oldest_age_s)
        worker_text: bytes | None = None
        try:
            worker_text = await self.worker.snapshot()
            self.metrics.worker_up.set(1)
        except WorkerDown:
            self.metrics.worker_up.set(0)
        listener = [*self.metrics.registry.collect(), *self.metrics.scraped.collect()]
        parts = [("listener", listener)]
        if worker_text is not None:
            parts.append(("worker", parse(worker_text)))
        return web.Response(body=merge(parts), headers={"Content-Type": CONTENT_TYPE})

    async def _redis_problem(self) -> str | None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                await self.queue.redis.ping()
        except Exception as exc:
            return f"Redis does not answer ({type(exc).__name__})"
        return None

    async def _slack_problem(self) -> str | None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                return await self.slack_ready()
        except Exception as exc:
            return f"Slack connection state unknown ({type(exc).__name__})"

    async def _worker_problem(self) -> str | None:
        try:
            await self.worker.snapshot()
        except WorkerDown as exc:
            return str(exc)
        return None


async def serve_on_port(health: Health, port: int, host: str = "0.0.0.0") -> web.AppRunner:  # noqa: S104
    """Socket Mode: the three endpoints on their own port."""
    web_app = web.Application()
    health.add_routes(web_app)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    log.info("health and metrics on :%d (/healthz, /readyz, /metrics)", port)
    return runner
