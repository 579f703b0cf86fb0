"""`storyloop console`: start Redis, the terminal's Slack, the app and its worker; then type.

The app is built exactly as ``storyloop run`` builds it (``build_runtime`` from ``Settings``)
and served in HTTP mode, with signature verification, on 127.0.0.1 only. Everything Slack-
related is made up here: a random signing secret and bot token, and ``SLACK_API_URL`` pointing
at the terminal's Slack. Only the LLM settings come from the environment or ``.env``.

The console keeps its own Redis (a local redis-server in a fresh folder), never ``REDIS_URL``:
a shared Redis would share the job stream, so a production replica could take the console's
jobs (and post them to the real workspace) and the console's worker could take production's.
``--redis-url`` names a Redis explicitly (for tests and machines without redis-server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
from aiohttp import web
from redis.exceptions import RedisError

from bot import logs
from bot.app import Runtime, build_runtime
from bot.config import Settings, SettingsError, load_settings
from bot.console.link import AppLink
from bot.console.repl import Console
from bot.console.slackapi import TerminalSlack
from bot.console.terminal import LineReader, Screen
from bot.localredis import LocalRedisError, start_local_redis
from bot.runtime import StartupError, WorkerThread, start_http
from bot.workerproc import WorkerProcess, WorkerProcessError

LLM_PROBE_S = 5.0
NEEDS = (
    "The console needs only an LLM: set OPENAI_BASE_URL (any OpenAI-compatible endpoint, e.g. "
    "http://localhost:11434/v1 for Ollama), OPENAI_API_KEY (any value for local servers) and "
    "OPENAI_MODEL, in the environment or in .env."
)


PORT_ATTEMPTS = 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def console_settings(slack: TerminalSlack, folder: Path, secret: str) -> Settings:
    """The LLM from the environment; everything Slack-related from the console."""
    for name in [n for n in os.environ if n.startswith("SLACK_")]:
        # Bolt reads SLACK_* by itself (SLACK_CLIENT_ID/SECRET would switch on its OAuth flow).
        del os.environ[name]
    return load_settings(
        slack_bot_token=slack.token,
        slack_app_token=None,
        slack_signing_secret=secret,
        slack_api_url="http://127.0.0.1:9/api/",  # replaced once the terminal's Slack listens
        port=_free_port(),
        data_dir=str(folder),
    )


@contextlib.contextmanager
def _no_ctrl_c() -> Iterator[None]:
    """Start children with SIGINT blocked: Ctrl-C in the terminal then reaches the console
    alone, which stops the app, its worker and Redis in order (SIGTERM), instead of Redis
    dying first under a worker still finishing its jobs."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _log_to(path: Path) -> None:
    """The app's log (this process and its worker, which inherits fd 2) goes to a file, so the
    terminal shows the conversation only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stderr.flush()
    os.dup2(fd, 2)
    os.close(fd)


async def _probe_llm(rt: Runtime, screen: Screen) -> None:
    settings = rt.settings
    try:
        await asyncio.wait_for(rt.llm.ping(), LLM_PROBE_S)
    except Exception as exc:
        screen.show(
            [
                f"Warning: the LLM at {settings.openai_base_url} isn't answering "
                f"({type(exc).__name__}); stories will fail until it does.",
                "Check OPENAI_BASE_URL, OPENAI_API_KEY and OPENAI_MODEL.",
            ]
        )


class Replica:
    """The app, its worker and the terminal's Slack, started and stopped in order."""

    def __init__(self, settings: Settings, redis_url: str, slack: TerminalSlack) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.slack = slack
        self.rt: Runtime | None = None
        self.runner: web.AppRunner | None = None
        self.process: WorkerProcess | None = None
        self.thread: WorkerThread | None = None
        self.worker_died = asyncio.Event()

    async def start(self) -> None:
        await self.slack.start()
        self.settings = self.settings.model_copy(update={"slack_api_url": self.slack.api_url})
        self.rt = rt = build_runtime(self.settings, self.redis_url)
        try:
            await rt.redis.ping()
        except (RedisError, OSError) as exc:
            raise StartupError("Redis is not reachable.") from exc
        await rt.identity.load()
        if self.settings.worker_mode == "process":
            self.process = WorkerProcess(self.settings, self.redis_url)
            self.process.start()
            try:
                await asyncio.to_thread(self.process.wait_ready)
            except WorkerProcessError as exc:
                raise StartupError(str(exc)) from None
            loop = asyncio.get_running_loop()
            loop.add_reader(self.process.sentinel, self.worker_died.set)
        elif self.settings.worker_mode == "thread":
            self.thread = WorkerThread(self.settings, self.redis_url)
            await asyncio.to_thread(self.thread.start)
        else:
            await rt.worker.start()
        # The port was free when it was picked, but another program may take it before we
        # bind: pick again rather than die (a few times; then say so).
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                self.runner = await start_http(rt, host="127.0.0.1")
                break
            except OSError as exc:
                if attempt == PORT_ATTEMPTS:
                    raise StartupError("no free local port for the app") from exc
                self.settings = self.settings.model_copy(update={"port": _free_port()})
                rt.settings = self.settings

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}/slack/events"

    async def stop(self) -> None:
        """As ``storyloop run`` on SIGTERM: stop taking requests, then let running jobs finish
        briefly (what is left stays in Redis, which stops with the console)."""
        if self.runner is not None:
            await self.runner.cleanup()
        rt = self.rt
        if rt is not None and rt.eager is not None:
            await rt.eager.stop(grace_s=2.0)
        if self.process is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.process.sentinel)
            await asyncio.to_thread(self.process.stop, 3.0)
        elif self.thread is not None:
            await asyncio.to_thread(self.thread.stop, 3.0)
        elif rt is not None:
            await rt.worker.stop(grace_s=3.0)
        if rt is not None:
            await rt.close()
        await self.slack.stop()


async def _session(
    replica: Replica, screen: Screen, reader: LineReader, folder: Path, secret: str
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await replica.start()
    except StartupError as exc:
        screen.show([f"Storyloop console can't start: {exc} (log: {folder}/console.log)"])
        await replica.stop()
        return 1
    except Exception:
        logging.getLogger(__name__).exception("the console could not start")
        screen.show([f"Storyloop console can't start; see {folder}/console.log."])
        with contextlib.suppress(Exception):
            await replica.stop()
        return 1
    assert replica.rt is not None
    await _probe_llm(replica.rt, screen)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        console = Console(replica.slack, AppLink(replica.events_url, secret, http), screen, folder)
        replica.slack.listener = console.feed
        reader.start()
        talk = asyncio.create_task(console.run(reader))
        waits = {talk, asyncio.create_task(stop.wait()), asyncio.create_task(_died(replica))}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
        reader.stop()
        screen.finish()
        screen.show(["", "Stopping Storyloop…"])
        replica.slack.listener = None
        await replica.stop()
    if replica.worker_died.is_set():
        screen.show([f"The job worker stopped unexpectedly; see {folder}/console.log."])
        return 1
    return 0


async def _died(replica: Replica) -> None:
    await replica.worker_died.wait()


def run_console(redis_url: str | None = None) -> int:
    """The `storyloop console` command; returns the exit status."""
    folder = Path(tempfile.mkdtemp(prefix="storyloop-console-"))
    screen = Screen()
    reader = LineReader(screen)
    slack = TerminalSlack(folder / "files")
    secret = secrets.token_hex(16)
    try:
        settings = console_settings(slack, folder, secret)
    except SettingsError as exc:
        folder.rmdir()
        print(exc, file=sys.stderr)
        print("\n" + NEEDS, file=sys.stderr)
        return 2
    screen.show([f"Starting Storyloop (Redis, the app and its worker; model {settings.model})…"])
    _log_to(folder / "console.log")
    logs.setup(settings.log_level, settings.secrets())
    proc: subprocess.Popen[bytes] | None = None
    status = 1
    try:
        if redis_url is None:
            with _no_ctrl_c():
                redis_url, proc = start_local_redis(str(folder))
        replica = Replica(settings, redis_url, slack)
        status = asyncio.run(_session(replica, screen, reader, folder, secret))
    except LocalRedisError as exc:
        screen.show([f"Storyloop console can't start: {exc}"])
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        # Sessions die with the console's Slack: its Redis data and spooled bytes are of no
        # further use. Shared files and the log stay.
        for scratch in ("redis", "spool"):
            shutil.rmtree(folder / scratch, ignore_errors=True)
    screen.show([f"Bye. Files the app shared and its log stay in {folder}."])
    if reader.busy:
        # Stopped by a signal while input() was waiting: a thread blocked on the terminal
        # can't be joined, and interpreter shutdown could wait on its lock. Everything is
        # stopped and flushed by now.
        sys.stdout.flush()
        os._exit(status)
    return status
