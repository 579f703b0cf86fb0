"""The job worker as its own process, beside the listener: one replica, two processes.

Why a process: the worker handles every streamed LLM token (parsing, progress, Redis) — most of
a replica's CPU under load — and, on a thread, it held the GIL the listener needs to ack. With
the worker in its own process the listener has a GIL of its own and acks at once.

The two still live and die as one replica: the worker asks the kernel to SIGKILL it when the
listener dies (``PR_SET_PDEATHSIG``, Linux; elsewhere it notices its parent changed), a crash
point in the worker takes the listener down first, and the listener stops (exit 1) if its worker
dies, so a supervisor restarts the replica whole. SIGTERM goes to the listener, which stops
taking requests and then asks the worker to finish its running jobs (SIGTERM, grace period).

A pipe between the two carries the worker's metrics to the listener's ``/metrics`` at scrape
time (bot/metrics.py says why a pipe); its answer is also the worker's liveness for ``/readyz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event

from bot import logs, runloop
from bot.app import build_runtime
from bot.config import Settings
from bot.health import CHECK_TIMEOUT_S, WorkerDown

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1
READY_TIMEOUT_S = 30.0


class WorkerProcessError(Exception):
    """The worker process could not start, or stopped on its own."""


class WorkerProcess:
    def __init__(self, settings: Settings, redis_url: str) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a running event loop
        self._ready: Event = context.Event()
        ours, theirs = context.Pipe()
        self._theirs = theirs
        self.process = context.Process(
            target=worker_main,
            args=(settings, redis_url, os.getpid(), self._ready, theirs),
            name="storyloop-worker",
        )
        self.pipe = WorkerPipe(ours, self)

    def start(self) -> None:
        """Start the process. Call it from the main thread: the kernel's parent-death signal
        belongs to the thread that created the child."""
        self.process.start()
        self._theirs.close()  # the child has its copy; ours would hide the child's exit (EOF)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Block until the worker is reading jobs (run it in a thread)."""
        if not self._ready.wait(timeout_s) or not self.process.is_alive():
            self.process.kill()
            raise WorkerProcessError("the job worker process could not start (see its log above)")

    @property
    def sentinel(self) -> int:
        return self.process.sentinel

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM: running jobs get ``grace_s`` to finish; the rest stay pending in Redis."""
        if self.process.is_alive() and self.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
        self.process.join(grace_s + 10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


class WorkerPipe:
    """The listener's end of the metrics pipe: ``snapshot()`` asks the worker for its metrics.

    At most one question is in flight: a scrape that finds one waiting shares its answer, so
    a frozen worker never fills the pipe, and the listener's loop never blocks on it (a thread
    does the blocking reads).
    """

    def __init__(self, conn: Connection, worker: WorkerProcess) -> None:
        self.conn = conn
        self.worker = worker
        self._waiters: list[asyncio.Future[bytes]] = []
        self._asked = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    async def snapshot(self) -> bytes | None:
        if not self.worker.process.is_alive() or self._closed:
            raise WorkerDown(f"the job worker process exited (code {self.worker.exitcode})")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            threading.Thread(target=self._read, name="storyloop-metrics-pipe", daemon=True).start()
        answer: asyncio.Future[bytes] = loop.create_future()
        self._waiters.append(answer)
        try:
            if not self._asked:
                self._asked = True
                self.conn.send_bytes(b"?")
            return await asyncio.wait_for(answer, CHECK_TIMEOUT_S)
        except OSError:
            raise WorkerDown("the job worker process is gone") from None
        except TimeoutError:
            raise WorkerDown(
                f"the job worker did not answer within {CHECK_TIMEOUT_S:.0f} s"
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(answer)

    def _read(self) -> None:
        """The blocking reads, on their own thread; each answer goes to the loop."""
        assert self._loop is not None
        while True:
            try:
                body = self.conn.recv_bytes()
            except (EOFError, OSError):
                self._closed = True
                return
            with contextlib.suppress(RuntimeError):  # the loop has closed: we are stopping
                self._loop.call_soon_threadsafe(self._answered, body)

    def _answered(self, body: bytes) -> None:
        self._asked = False
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(body)


def _answer_scrapes(
    conn: Connection, metrics_text: Callable[[], bytes], pending: set[asyncio.Task[None]]
) -> None:
    """Worker side: answer each question on the pipe with this process's metrics."""
    loop = asyncio.get_running_loop()

    def on_question() -> None:
        try:
            conn.recv_bytes()
        except (EOFError, OSError):
            loop.remove_reader(conn.fileno())
            return
        # The send may block while the listener reads: a thread does it, never this loop.
        task = asyncio.create_task(asyncio.to_thread(conn.send_bytes, metrics_text()))
        pending.add(task)
        task.add_done_callback(pending.discard)

    loop.add_reader(conn.fileno(), on_question)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent (the listener) dies, however it dies."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def worker_main(
    settings: Settings, redis_url: str, listener_pid: int, ready: Event, conn: Connection
) -> None:
    """The worker process's entry point (spawned: a fresh interpreter)."""
    _die_with_parent()
    if os.getppid() != listener_pid:
        return  # the listener died before we could ask to follow it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the listener decides
    if settings.worker_nice:
        with contextlib.suppress(OSError):
            os.nice(settings.worker_nice)  # the listener first when the CPU is short
    logs.setup(settings.log_level, settings.secrets(), settings.log_format)
    try:
        serving = _serve_jobs(settings, redis_url, listener_pid, ready, conn)
        runloop.run(serving, settings.event_loop)
    except Exception:
        log.exception("the job worker stopped")
        raise SystemExit(1) from None


async def _serve_jobs(
    settings: Settings, redis_url: str, listener_pid: int, ready: Event, conn: Connection
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    rt = build_runtime(settings, redis_url, partner_pid=listener_pid)
    answering: set[asyncio.Task[None]] = set()
    try:
        await rt.worker.start()
        _answer_scrapes(conn, rt.metrics.exposition, answering)
        ready.set()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            if os.getppid() != listener_pid:
                log.error("the listener is gone; stopping the worker")
                break
        await rt.worker.stop(grace_s=20.0)
    finally:
        await rt.close()
