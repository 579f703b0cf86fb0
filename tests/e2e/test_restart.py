"""Coming back later: restarts, redeploys, dropped connections and crashes resume cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from redis.asyncio import Redis

from tests.e2e.harness import (
    AppUnderTest,
    action_ids,
    app_env,
    block_text,
    by_slot,
    settings_from,
    slot_of,
)
from tests.e2e.processes import AppProcess
from tests.e2e.test_story_flow import start_story
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator
from tests.support.redis_server import RedisServer


async def test_old_threads_and_buttons_work_after_a_restart(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, redis: Redis
) -> None:
    env = app_env(emu, llm, redis_server.url, mode="socket")
    first = await AppUnderTest(settings_from(env), redis_server.url).start()
    await emu.wait_connected()
    card, story = await start_story(emu)
    await first.stop()
    second = await AppUnderTest(settings_from(env), redis_server.url).start()
    try:
        await emu.wait_connected()
        ts = await emu.user_posts("C0PUBLIC", "shorter voice-over please", thread_ts=card.ts)
        await emu.wait_for(lambda: by_slot(emu, f"reply:{ts}"), timeout=5)
        await emu.click(story.ts, "story_approve")
        await emu.wait_for(lambda: by_slot(emu, "approved"), timeout=5)
    finally:
        await second.stop()


async def test_dropped_socket_reconnects_and_keeps_working(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    card, _story = await start_story(emu)
    opened = emu.connections_opened
    await emu.drop_socket()
    await emu.wait_for(lambda: emu.connections_opened > opened and emu.open_sockets, timeout=30)
    ts = await emu.user_posts("C0PUBLIC", "after the reconnect", thread_ts=card.ts)
    await emu.wait_for(lambda: by_slot(emu, f"reply:{ts}"), timeout=5)
    opened = emu.connections_opened
    await emu.push_disconnect("refresh_requested")
    await emu.wait_for(lambda: emu.connections_opened > opened, timeout=15)
    await start_story(emu, "15s refresh-proof teaser")


async def test_replies_during_generation_are_kept_and_answered_after(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    llm.set_latency(0.2, 150)  # a few seconds of writing
    await emu.slash_command("30s eco bottle")
    card = (await emu.wait_for(lambda: by_slot(emu, "card"), timeout=5))[0]
    ts1 = await emu.user_posts("C0PUBLIC", "make it warmer", user="U0BOB", thread_ts=card.ts)
    ts2 = await emu.user_posts(
        "C0PUBLIC", "and mention the refill", user="U0CAROL", thread_ts=card.ts
    )
    await emu.wait_for(lambda: [m for m in by_slot(emu, "story") if action_ids(m)], timeout=20)
    replies = await emu.wait_for(lambda: by_slot(emu, "reply:", prefix=True), timeout=20)
    text = "\n".join(block_text(r) for r in replies)
    assert "<@U0BOB>" in text and "<@U0CAROL>" in text  # both answered (coalesced is fine)
    await asyncio.sleep(1.0)  # let any duplicate show up before counting
    replies = by_slot(emu, "reply:", prefix=True)
    assert len({r.ts for r in replies}) == len(replies) <= 2
    assert {slot_of(r) for r in replies} <= {f"reply:{ts1}", f"reply:{ts2}"}


async def test_kill_9_mid_generation_resumes_without_duplicates(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    env = app_env(emu, llm, redis_server.url, mode="socket")
    log = tmp_path / "app.log"
    proc = await AppProcess(env, log).start()
    try:
        await emu.wait_connected(timeout=20)
        llm.set_latency(0.2, 100)  # ~8 s of streaming: time to kill it mid-way
        ack = await emu.slash_command("30s eco bottle launch")
        assert ack.ok
        story = (await emu.wait_for(lambda: by_slot(emu, "story"), timeout=10))[0]
        await emu.wait_for(
            lambda: any("characters so far" in block_text(v) for v in [*story.history, story]),
            timeout=10,
        )
        await proc.kill()
        llm.set_latency(0.0, None)
        proc = await AppProcess(env, log).start()
        await emu.wait_connected(timeout=20)
        await emu.wait_for(
            lambda: "story_approve" in action_ids(emu.message("C0PUBLIC", story.ts)), timeout=30
        )
        assert len(by_slot(emu, "card")) == 1
        assert len(by_slot(emu, "story")) == 1
        text = block_text(emu.message("C0PUBLIC", story.ts))
        assert "Story v1" in text
    finally:
        await proc.terminate()
    output = log.read_text()
    for secret in (emu.bot_token, emu.app_token, env["OPENAI_API_KEY"]):
        assert secret not in output


async def test_sigterm_shuts_down_gracefully(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    env = app_env(emu, llm, redis_server.url, mode="socket")
    proc = await AppProcess(env, tmp_path / "app.log").start()
    await emu.wait_connected(timeout=20)
    await start_story(emu)
    code = await proc.terminate(timeout=30)
    assert code == 0, proc.log()
    assert "shutting down" in proc.log()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _worker_of(pid: int) -> int:
    """The replica's job worker: the child running bot.workerproc (spawned interpreters)."""
    for child in _children(pid):
        try:
            cmdline = (Path("/proc") / str(child) / "cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:  # (the other child is multiprocessing's resource tracker)
            return child
    raise AssertionError(f"no worker process under {pid}: children {_children(pid)}")


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().split(") ")[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@asynccontextmanager
async def replica_process(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[AppProcess]:
    """``python -m bot run`` connected to the emulator; killed (whole group) afterwards."""
    env = app_env(emu, llm, redis_server.url, mode="socket")
    proc = await AppProcess(env, tmp_path / "app.log").start()
    try:
        await emu.wait_connected(timeout=20)
        yield proc
    finally:
        await proc.kill()


async def test_the_worker_is_its_own_process_and_dies_with_the_listener(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    """One replica, two processes: kill -9 of the listener alone takes the worker with it."""
    async with replica_process(emu, llm, redis_server, tmp_path) as proc:
        await start_story(emu)  # the story is written by the worker process
        worker = _worker_of(proc.pid)
        assert _alive(worker)
        assert proc.proc is not None
        proc.proc.kill()  # the listener only, not its process group
        await proc.proc.wait()
        for _ in range(50):
            if not _alive(worker):
                break
            await asyncio.sleep(0.1)
        assert not _alive(worker), "the worker outlived its listener"


async def test_a_dead_worker_stops_the_replica_with_a_clear_message(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    """A replica without its worker would ack and never answer: it stops, so it is restarted."""
    async with replica_process(emu, llm, redis_server, tmp_path) as proc:
        os.kill(_worker_of(proc.pid), signal.SIGKILL)
        assert await proc.wait_exit(timeout=20) == 1, proc.log()
        log = proc.log()
        assert "the job worker process stopped unexpectedly" in log, log
        assert "Traceback" not in log, log
