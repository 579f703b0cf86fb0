"""Health and metrics of a replica whose job worker runs on a thread
(``STORYLOOP_WORKER_MODE=thread``: the worker on its own event loop in the listener's process),
as a real process in HTTP mode. ``tests/e2e/test_observability.py`` covers the default worker
process; here ``/readyz`` must ask the thread's loop, and ``/metrics`` must carry the jobs that
the thread ran, labelled ``proc="worker"``, beside the listener's acks."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from tests.e2e.harness import app_env
from tests.e2e.processes import AppProcess
from tests.e2e.test_observability import (
    drained_page,
    get,
    http,  # noqa: F401 (the fixture)
    metrics_when,
    run_story,
    samples,
    total,
    wait_status,
)
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator
from tests.support.redis_server import RedisServer


async def test_thread_worker_mode_is_ready_and_its_jobs_are_in_the_metrics(
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    tmp_path: Path,
    http: aiohttp.ClientSession,  # noqa: F811
) -> None:
    env = app_env(emu, llm, redis_server.url, mode="http", STORYLOOP_WORKER_MODE="thread")
    base = f"http://127.0.0.1:{env['PORT']}"
    app = await AppProcess(env, tmp_path / "app.log").start()
    try:
        await wait_status(http, f"{base}/healthz", 200, timeout=30)
        emu.mode = "http"
        emu.events_url = f"{base}/slack/events"
        ready = json.loads(await wait_status(http, f"{base}/readyz", 200, timeout=10))
        assert ready == {"status": "ready"}
        # One process: the worker is a thread of the listener, not a child process.
        children = Path(f"/proc/{app.pid}/task/{app.pid}/children").read_text().split()
        assert not [
            pid for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ], "a worker process was started in thread mode"

        await run_story(emu)
        text = await metrics_when(
            http, f"{base}/metrics", "storyloop_jobs_total", outcome="done", proc="worker"
        )
        # The thread's own metrics: its jobs, LLM calls and tokens, labelled as the worker's.
        assert total(text, "storyloop_jobs_total", outcome="done", proc="worker") >= 1
        assert total(text, "storyloop_job_seconds_count", outcome="done", proc="worker") >= 1
        assert total(text, "storyloop_provider_seconds_count", provider="llm", proc="worker") >= 1
        assert total(text, "storyloop_llm_tokens_total", kind="completion", proc="worker") > 0
        # …and the listener's acks beside them; the listener ran no job itself.
        assert total(text, "storyloop_acks_total", kind="command", proc="listener") >= 1
        assert total(text, "storyloop_jobs_total", proc="listener") == 0
        assert ("storyloop_worker_up", {"proc": "listener"}, 1.0) in samples(text)
        await drained_page(http, f"{base}/metrics")

        status, body = await get(http, f"{base}/readyz")
        assert (status, json.loads(body)) == (200, {"status": "ready"})
    finally:
        await app.kill()
