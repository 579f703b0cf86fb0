"""Running a replica: Socket Mode or HTTP, the worker beside it (its own process by default,
``bot/workerproc.py``), and a graceful SIGTERM.

On SIGTERM the replica stops taking Slack requests and jobs, lets running jobs finish for a
grace period and leaves the rest pending in Redis, where another replica (or this one after
restart) reclaims them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.web.async_client import AsyncWebClient

from bot.app import Runtime, build_runtime
from bot.config import Settings
from bot.health import CHECK_TIMEOUT_S, Health, InlineWorker, WorkerDown, WorkerProbe, serve_on_port
from bot.metrics import Metrics
from bot.workerproc import WorkerProcess, WorkerProcessError
from handlers.messages import is_noise

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The replica could not start; the message tells the admin what to fix."""


class ReplicaFailed(Exception):
    """The replica stopped because a part of it died (its worker process)."""


async def _wait_for_signal(or_until: asyncio.Event) -> None:
    """Until SIGTERM / SIGINT, or until ``or_until`` is set."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    waits = {asyncio.create_task(stop.wait()), asyncio.create_task(or_until.wait())}
    _done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()


class FrameClient(SocketModeClient):
    """slack_sdk's Socket Mode client with frames parsed by orjson and noise acked at once.

    Each frame is parsed on the listener's loop before anything else can run, and most are
    echoes that carry a whole message (a story is kilobytes): ``json.loads`` of them was 7 %
    of the listener's CPU in the bench's profile, time an ack waits behind. Every post and edit
    the app makes comes back as a ``message`` event (about 40 per session against 6 triggers);
    Bolt would run each through authorization, its middleware chain and listener matching only
    for ``handle_message`` to drop it, and slack_sdk would first build a ``SocketModeRequest``
    and run its listener chain. ``is_noise`` is that handler's own test, so acking these here,
    straight from the parsed frame, records nothing less (bench/README.md: the listener's CPU).
    Everything else takes the library's own path, unchanged.
    """

    _dispatching: ClassVar[set[asyncio.Future[None]]] = set()
    metrics: Metrics | None = None

    async def process_message(self) -> None:
        raw_message = await self.message_queue.get()
        if raw_message is not None:
            message: dict[str, Any] = {}
            if raw_message.startswith("{"):
                message = orjson.loads(raw_message)
            envelope, payload = message.get("envelope_id"), message.get("payload")
            if (
                message.get("type") == "events_api"
                and envelope
                and isinstance(payload, dict)
                and is_noise(payload)
            ):
                task = asyncio.ensure_future(self._ack_noise(str(envelope)))
            else:
                task = asyncio.ensure_future(self.run_message_listeners(message, raw_message))
            self._dispatching.add(task)  # a reference until it ends (the loop's is weak)
            task.add_done_callback(self._dispatching.discard)

    async def _ack_noise(self, envelope_id: str) -> None:
        start = time.perf_counter()
        try:
            await self.send_message(orjson.dumps({"envelope_id": envelope_id}).decode())
        except Exception:
            # An ack that can't be sent is re-delivered by Slack (and dropped again).
            self.logger.warning("could not ack a noise event", exc_info=True)
            return
        if self.metrics is not None:
            self.metrics.ack("event", True, time.perf_counter() - start)


class SocketModeHandler(AsyncSocketModeHandler):
    """Bolt's Socket Mode handler on our ``FrameClient`` (noise acked before Bolt's dispatch)."""

    def __init__(
        self, app: AsyncApp, app_token: str, web_client: AsyncWebClient, metrics: Metrics
    ) -> None:
        # Bolt's own __init__, with our client class.
        self.app = app
        self.app_token = app_token
        self.client = FrameClient(app_token=app_token, logger=app.logger, web_client=web_client)
        self.client.metrics = metrics
        self.client.socket_mode_request_listeners.append(self.handle)  # type: ignore[arg-type]


async def start_socket_mode(rt: Runtime) -> AsyncSocketModeHandler:
    assert rt.settings.slack_app_token is not None
    handler = SocketModeHandler(
        rt.app,
        app_token=rt.settings.slack_app_token.get_secret_value(),
        web_client=rt.client,
        metrics=rt.metrics,
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


def noise_filter(verifier: SignatureVerifier, metrics: Metrics) -> Any:
    """HTTP mode's ``SocketModeHandler``: a signed ``message`` event that can't be feedback is
    answered 200 before Bolt parses it again and runs its middleware chain. The signature is
    checked first, as Bolt would (a bad one goes on to Bolt, which answers 401)."""

    @web.middleware
    async def drop_noise(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "POST" or request.content_type != "application/json":
            return await handler(request)
        start = time.perf_counter()
        raw = await request.read()  # aiohttp keeps it: Bolt's adapter reads it again
        if b'"event_callback"' not in raw or b'"message"' not in raw:
            return await handler(request)
        try:
            body = orjson.loads(raw)
        except ValueError:
            return await handler(request)
        signed = verifier.is_valid(
            body=raw.decode(),
            timestamp=request.headers.get("X-Slack-Request-Timestamp", ""),
            signature=request.headers.get("X-Slack-Signature", ""),
        )
        if not (isinstance(body, dict) and signed and is_noise(body)):
            return await handler(request)
        metrics.ack("event", True, time.perf_counter() - start)
        return web.Response(status=200)

    return drop_noise


async def start_http(
    rt: Runtime,
    host: str = "0.0.0.0",  # noqa: S104
    health: Health | None = None,
) -> web.AppRunner:
    """``/slack/events`` on ``PORT``; with ``health``, /healthz, /readyz and /metrics beside it."""
    web_app = rt.app.web_app(path="/slack/events", port=rt.settings.port)
    web_app.middlewares.append(reject_malformed_timestamps)
    if rt.settings.slack_signing_secret is not None:  # always, in HTTP mode (Settings checks)
        verifier = SignatureVerifier(rt.settings.slack_signing_secret.get_secret_value())
        web_app.middlewares.append(noise_filter(verifier, rt.metrics))
    if health is not None:
        health.add_routes(web_app)
    # No access log: a line per Slack request is noise, and formatting it was ~10 % of the
    # listener's CPU under load (bench/README.md, the HTTP profile).
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, rt.settings.port).start()
    return runner


class WorkerThread:
    """The job worker on its own thread and event loop.

    Slack needs its ack within 3 s whatever the workers are doing; on one event loop an ack
    queues behind every ready job callback (streamed LLM chunks, renders, commits). With the
    worker on its own loop the listener's loop stays idle enough to ack at once. It is a thread,
    not a process, so the replica still lives and dies as one: SIGKILL, SIGSTOP and a crash take
    both down together.
    """

    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._runtime: Runtime | None = None
        self._grace_s = 20.0
        self._thread = threading.Thread(target=self._main, name="storyloop-worker", daemon=True)

    async def snapshot(self) -> bytes | None:
        """The worker's metrics, asked on its own loop (which proves that loop is running)."""
        if not self._thread.is_alive() or self._loop is None or self._runtime is None:
            raise WorkerDown("the job worker thread is not running")
        metrics = self._runtime.metrics

        async def exposition() -> bytes:
            return metrics.exposition()

        try:
            answer = asyncio.run_coroutine_threadsafe(exposition(), self._loop)
            return await asyncio.wait_for(asyncio.wrap_future(answer), CHECK_TIMEOUT_S)
        except (TimeoutError, RuntimeError):
            raise WorkerDown("the job worker thread did not answer") from None

    def start(self, timeout_s: float = 20.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout_s) or self._failed is not None:
            raise StartupError("the job worker could not start") from self._failed

    def stop(self, grace_s: float = 20.0) -> None:
        """Stop taking jobs; running ones get ``grace_s`` to finish (the rest are reclaimed)."""
        self._grace_s = grace_s
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(grace_s + 10)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:
            self._failed = exc
            log.exception("the job worker stopped")
            self._ready.set()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        rt = self._runtime = build_runtime(self.settings, self.redis_url)
        try:
            await rt.worker.start()
            self._ready.set()
            await self._stop.wait()
            await rt.worker.stop(grace_s=self._grace_s)
        finally:
            await rt.close()


def socket_state(handler: AsyncSocketModeHandler) -> Callable[[], Awaitable[str | None]]:
    """For /readyz: is the Socket Mode connection up?"""

    async def state() -> str | None:
        connected: bool = await handler.client.is_connected()
        return None if connected else "the Socket Mode connection to Slack is down"

    return state


async def http_state() -> str | None:
    """For /readyz in HTTP mode: it is answered by the server that serves /slack/events."""
    return None


#: Redis connections the listener opens before it takes Slack requests.
WARM_CONNECTIONS = 64


async def warm_pool(rt: Runtime) -> None:
    """Open the listener's Redis connections before the first Slack request.

    A new connection costs several round trips before its first command (redis-py's HELLO,
    CLIENT SETINFO, maintenance notifications). A burst of `/story` (500 at once in the bench)
    made the pool open hundreds at the same moment; on a loaded machine those handshakes took
    past the intake's 2 s bound, and the triggers were refused. Opened here, one at a time,
    the burst finds them ready. A cluster client keeps its pools per node: not warmed here.
    """
    pool = getattr(rt.redis, "connection_pool", None)
    if not isinstance(pool, ConnectionPool):
        return
    held = []
    try:
        for _ in range(min(WARM_CONNECTIONS, pool.max_connections)):
            held.append(await pool.get_connection())  # type: ignore[no-untyped-call]
    finally:
        for conn in held:
            await pool.release(conn)


async def serve(settings: Settings, redis_url: str) -> None:
    rt = build_runtime(settings, redis_url)
    try:
        await rt.redis.ping()
        await warm_pool(rt)
    except (RedisError, OSError) as exc:
        await rt.close()
        where = redis_url.rsplit("@", maxsplit=1)[-1]  # never print a password in the URL
        raise StartupError(f"Redis at {where} is not reachable.") from exc
    try:
        if not settings.oauth:  # with OAuth there is no one token: each workspace has its own
            await rt.identity.load()
    except Exception as exc:
        await rt.close()
        raise StartupError(
            "Slack refused the bot token (auth.test failed). Check SLACK_BOT_TOKEN and that the "
            "app is installed in the workspace."
        ) from exc
    worker_thread: WorkerThread | None = None
    worker_process: WorkerProcess | None = None
    worker_died = asyncio.Event()
    if settings.worker_mode == "process":
        worker_process = WorkerProcess(settings, redis_url)
        worker_process.start()  # from this (the main) thread: see WorkerProcess.start
        try:
            await asyncio.to_thread(worker_process.wait_ready)
        except WorkerProcessError as exc:
            await rt.close()
            raise StartupError(str(exc)) from None
        asyncio.get_running_loop().add_reader(worker_process.sentinel, worker_died.set)
    elif settings.worker_mode == "thread":
        sys.setswitchinterval(0.001)  # hand the GIL over quickly when a Slack request arrives
        worker_thread = WorkerThread(settings, redis_url)
        try:
            await asyncio.to_thread(worker_thread.start)
        except StartupError:
            await rt.close()
            raise
    else:
        await rt.worker.start()
    handler: AsyncSocketModeHandler | None = None
    runner: web.AppRunner | None = None
    health_runner: web.AppRunner | None = None
    probe: WorkerProbe = (
        worker_process.pipe
        if worker_process is not None
        else worker_thread or InlineWorker(rt.worker)
    )
    try:
        if settings.socket_mode:
            handler = await start_socket_mode(rt)
            log.info("Storyloop is running in Socket Mode")
            if settings.metrics_port:
                health = Health(rt.metrics, rt.worker.queue, probe, socket_state(handler))
                try:
                    health_runner = await serve_on_port(health, settings.metrics_port)
                except OSError as exc:
                    # Not worth stopping Slack work for (e.g. two replicas on one host).
                    log.error(
                        "can't serve /healthz, /readyz and /metrics on :%d (%s); set "
                        "STORYLOOP_METRICS_PORT to a free port, or 0 to turn them off",
                        settings.metrics_port,
                        exc.strerror or exc,
                    )
        else:
            health = Health(rt.metrics, rt.worker.queue, probe, http_state)
            runner = await start_http(rt, health=health)
            log.info("Storyloop is listening on :%d/slack/events (HTTP mode)", settings.port)
        await _wait_for_signal(worker_died)
        if worker_died.is_set():
            log.error("the job worker process stopped; stopping the replica")
        else:
            log.info("shutting down: no new work; finishing running jobs")
    finally:
        if worker_process is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(worker_process.sentinel)
        if handler is not None:
            with contextlib.suppress(Exception):
                await handler.close_async()  # type: ignore[no-untyped-call]
        if runner is not None:
            await runner.cleanup()
        if health_runner is not None:
            await health_runner.cleanup()
        if rt.eager is not None:
            await rt.eager.stop()
        if worker_process is not None:
            await asyncio.to_thread(worker_process.stop)
        elif worker_thread is not None:
            await asyncio.to_thread(worker_thread.stop)
        else:
            await rt.worker.stop()
        await rt.close()
    if worker_died.is_set():
        code = worker_process.exitcode if worker_process is not None else None
        raise ReplicaFailed(
            f"the job worker process stopped unexpectedly (exit code {code}); "
            "jobs it held are taken over by other replicas or after a restart"
        )
