"""Shared pieces of the fault tests: app replicas as OS processes, their environment, waits.

Every wait here is bounded; a replica is always cleaned up (SIGCONT then SIGKILL) so a failed
test never leaves a stopped process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

from redis.asyncio import Redis

from bot.pipeline.models import Session
from storage import keys
from tests.chaos.checker import Trace, Trigger
from tests.e2e.harness import action_ids, app_env, by_slot, session_of
from tests.e2e.processes import AppProcess
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator, StoredMessage

LEASE_S = "1"


def chaos_env(emu: SlackEmulator, llm: FakeLLM, redis_url: str, **extra: str) -> dict[str, str]:
    """Socket Mode, a short lease (fast takeover after a crash), quick LLM retries."""
    env = {
        "STORYLOOP_LEASE_SECONDS": LEASE_S,
        "STORYLOOP_WORKERS": "8",
        "STORYLOOP_LLM_TIMEOUT": "5",
        "STORYLOOP_LLM_BACKOFF": "0.05",
        "STORYLOOP_PROGRESS_INTERVAL": "0.2",
    }
    env.update(extra)
    return app_env(emu, llm, redis_url, mode="socket", **env)


class Replica:
    """One app process (``python -m bot run``) that can be killed, paused and restarted."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.env = dict(env)
        self.log_path = log_path
        self.proc: AppProcess | None = None
        self.stopped = False
        self.starts = 0

    async def start(self, **overrides: str) -> Replica:
        env = {**self.env, **overrides}
        env = {k: v for k, v in env.items() if v != ""}
        self.proc = await AppProcess(env, self.log_path).start()
        self.stopped = False
        self.starts += 1
        return self

    @property
    def alive(self) -> bool:
        return (
            self.proc is not None
            and self.proc.proc is not None
            and self.proc.proc.returncode is None
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def wait_exit(self, timeout: float) -> int | None:
        """The exit code once the process is gone, or None if it is still alive at ``timeout``."""
        assert self.proc is not None
        try:
            return await self.proc.wait_exit(timeout)
        except TimeoutError:
            return None

    async def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.cont()
            await self.proc.kill()
        self.stopped = False

    async def terminate(self, timeout: float = 10) -> None:
        if self.alive:
            assert self.proc is not None
            self.cont()
            await self.proc.terminate(timeout)

    def stop(self) -> None:
        """SIGSTOP: the replica freezes (a frozen VM or container); its leases run out."""
        if self.alive:
            assert self.proc is not None
            self.proc.signal_group(signal.SIGSTOP)
            self.stopped = True

    def cont(self) -> None:
        if self.alive and self.stopped:
            assert self.proc is not None
            self.proc.signal_group(signal.SIGCONT)
        self.stopped = False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Replicas:
    """Creates replicas for one test and guarantees their cleanup."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.all: list[Replica] = []

    def new(self, name: str, env: dict[str, str]) -> Replica:
        replica = Replica(name, env, self.workdir / f"app-{name}.log")
        self.all.append(replica)
        return replica

    async def cleanup(self) -> None:
        for replica in self.all:
            with contextlib.suppress(Exception):
                await replica.kill()

    def logs(self) -> str:
        return "\n".join(f"===== {r.name} =====\n{r.log()[-6000:]}" for r in self.all)


# --- finding a session's messages ---------------------------------------------------------------


def session_slot(emu: SlackEmulator, sid: str, slot: str) -> list[StoredMessage]:
    return [m for m in by_slot(emu, slot) if session_of(m) == sid]


def reviewable(emu: SlackEmulator, sid: str) -> StoredMessage | None:
    """The session's story message if it shows the review buttons."""
    for msg in session_slot(emu, sid, "story"):
        if "story_approve" in action_ids(msg):
            return msg
    return None


async def start_story(
    trace: Trace, text: str = "30s eco water bottle launch", *, user: str = "U0ALICE"
) -> tuple[Trigger, StoredMessage, StoredMessage]:
    """``/story`` and wait until the card and the reviewable story are in Slack."""
    emu = trace.emu
    trigger = await trace.command(text, user=user)
    assert trigger.ack_ok, trigger.describe()
    sid = trigger.session or ""
    cards = await emu.wait_for(lambda: session_slot(emu, sid, "card"), timeout=15)
    story = await emu.wait_for(lambda: reviewable(emu, sid), timeout=20)
    return trigger, cards[0], story


async def session_of_id(redis: Redis, team: str, sid: str) -> Session | None:
    raw = await redis.hget(keys.session(team, sid), "data")
    return Session.model_validate_json(raw) if raw else None


async def wait_until(predicate: object, timeout: float, interval: float = 0.05) -> bool:
    """Poll a sync or async predicate; True once it holds, False at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()  # type: ignore[operator]
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)
