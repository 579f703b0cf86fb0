"""Health, readiness and metrics of a real replica (``python -m bot run``: a listener and its
worker process), in HTTP mode (on PORT) and in Socket Mode (on the metrics port), and the JSON
log lines that name a job's workspace and session."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.chaos.support import wait_until
from tests.e2e.harness import action_ids, app_env, by_slot, free_port, session_of
from tests.e2e.processes import AppProcess
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator
from tests.support.redis_server import RedisServer


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    try:
        async with http.get(url) as response:
            return response.status, await response.text()
    except aiohttp.ClientError:
        return 0, ""


async def wait_status(http: aiohttp.ClientSession, url: str, status: int, timeout: float) -> str:
    """Poll ``url`` until it answers ``status``; returns the body."""
    seen: list[tuple[int, str]] = []

    async def answered() -> bool:
        seen.append(await get(http, url))
        return seen[-1][0] == status

    assert await wait_until(answered, timeout, interval=0.1), f"{url}: last answer {seen[-1:]}"
    return seen[-1][1]


async def metrics_when(
    http: aiohttp.ClientSession, url: str, name: str, timeout: float = 10, **labels: str
) -> str:
    """The metrics page once ``name`` (with ``labels``) counts something: a job is counted when
    its worker has acked it, a moment after its message shows in Slack."""
    seen = [""]

    async def counted() -> bool:
        seen[0] = (await get(http, url))[1]
        return total(seen[0], name, **labels) >= 1

    assert await wait_until(counted, timeout, interval=0.1), seen[0]
    return seen[0]


async def drained_page(http: aiohttp.ClientSession, url: str, timeout: float = 10) -> str:
    """The metrics page once it shows an empty queue. The page reads the queue before it asks
    the worker for its counts, so a job finishing between the two is counted done beside a
    depth of 1; the next page has 0."""
    seen = [""]

    async def empty() -> bool:
        seen[0] = (await get(http, url))[1]
        return ("storyloop_queue_depth", {"proc": "listener"}, 0.0) in samples(seen[0])

    assert await wait_until(empty, timeout, interval=0.1), seen[0]
    return seen[0]


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def total(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (over both processes)."""
    return sum(
        value
        for sample, have, value in samples(text)
        if sample == name and all(have.get(k) == v for k, v in labels.items())
    )


async def run_story(emu: SlackEmulator) -> str:
    """``/story`` and wait for the reviewable story; returns the session id."""
    ack = await emu.slash_command("30s eco water bottle launch", channel="C0PUBLIC")
    assert ack.ok, ack
    story = await emu.wait_for(
        lambda: [m for m in by_slot(emu, "story") if "story_approve" in action_ids(m)],
        timeout=20,
    )
    sid = session_of(story[0])
    assert sid
    return sid


def worker_pid(listener: int) -> int:
    """The listener's worker process (spawned by multiprocessing; not its resource tracker)."""
    children = Path(f"/proc/{listener}/task/{listener}/children").read_text().split()
    for pid in children:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            return int(pid)
    raise AssertionError(f"no worker process among {children}")


async def test_http_mode_health_metrics_and_json_logs(
    emu: SlackEmulator, llm: FakeLLM, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    redis = RedisServer(tmp_path / "redis")  # our own: this test stops it
    redis.start()
    env = app_env(emu, llm, redis.url, mode="http", LOG_FORMAT="json")
    base = f"http://127.0.0.1:{env['PORT']}"
    app = await AppProcess(env, tmp_path / "app.log").start()
    try:
        await wait_status(http, f"{base}/healthz", 200, timeout=30)
        emu.mode = "http"
        emu.events_url = f"{base}/slack/events"
        ready = json.loads(await wait_status(http, f"{base}/readyz", 200, timeout=10))
        assert ready == {"status": "ready"}

        emu.fail_next("chat.postMessage", status=429, retry_after=1)
        sid = await run_story(emu)
        text = await metrics_when(
            http, f"{base}/metrics", "storyloop_jobs_total", outcome="done", proc="worker"
        )
        assert total(text, "storyloop_acks_total", kind="command", status="ok") >= 1
        assert total(text, "storyloop_ack_seconds_count", kind="command") >= 1
        assert total(text, "storyloop_ack_seconds_bucket", kind="command", le="3.0") >= 1
        assert total(text, "storyloop_jobs_total", outcome="done", proc="worker") >= 1
        assert total(text, "storyloop_provider_seconds_count", provider="llm", outcome="ok") >= 1
        assert total(text, "storyloop_llm_tokens_total", kind="completion") > 0
        assert total(text, "storyloop_slack_rate_limited_total", method="chat.postMessage") >= 1
        assert total(text, "storyloop_worker_up") == 1
        await drained_page(http, f"{base}/metrics")

        # Every line is one JSON object; the job's lines name its workspace and session.
        lines = [json.loads(line) for line in app.log().splitlines() if line.strip()]
        assert {"time", "level", "logger", "message", "correlation_id", "team", "session"} <= set(
            lines[0]
        )
        of_job = [r for r in lines if r["session"] == sid]
        assert of_job, "no log line carries the session"
        assert all(r["team"] == emu.team_id for r in of_job)
        assert any(r["correlation_id"] not in (None, "-") for r in of_job)

        redis.kill()
        body = json.loads(await wait_status(http, f"{base}/readyz", 503, timeout=10))
        assert "Redis does not answer" in body["problems"]["redis"]
        assert set(body["problems"]) == {"redis"}
        status, _body = await get(http, f"{base}/healthz")
        assert status == 200  # alive, only not ready
    finally:
        await app.kill()
        redis.kill()


async def test_socket_mode_metrics_port_and_a_frozen_worker(
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    redis: object,
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    port = free_port()
    env = app_env(emu, llm, redis_server.url, mode="socket", STORYLOOP_METRICS_PORT=str(port))
    base = f"http://127.0.0.1:{port}"
    app = await AppProcess(env, tmp_path / "app.log").start()
    worker = 0
    try:
        await emu.wait_connected(timeout=30)
        emu.mode = "socket"
        await wait_status(http, f"{base}/healthz", 200, timeout=10)
        await wait_status(http, f"{base}/readyz", 200, timeout=10)
        await run_story(emu)
        text = await metrics_when(
            http, f"{base}/metrics", "storyloop_jobs_total", outcome="done", proc="worker"
        )
        assert total(text, "storyloop_acks_total", kind="command", status="ok") >= 1
        assert total(text, "storyloop_jobs_total", outcome="done", proc="worker") >= 1
        assert total(text, "storyloop_provider_seconds_count", provider="llm") >= 1
        assert total(text, "storyloop_llm_tokens_total", kind="prompt") > 0
        assert "storyloop_queue_oldest_age_seconds" in text

        worker = worker_pid(app.pid)
        signal_worker(worker, signal.SIGSTOP)
        body = json.loads(await wait_status(http, f"{base}/readyz", 503, timeout=10))
        assert set(body["problems"]) == {"worker"}, body
        _status, text = await get(http, f"{base}/metrics")
        assert total(text, "storyloop_worker_up") == 0
        assert total(text, "storyloop_acks_total", kind="command") >= 1  # the listener's part
        signal_worker(worker, signal.SIGCONT)
        await wait_status(http, f"{base}/readyz", 200, timeout=10)
    finally:
        if worker:
            signal_worker(worker, signal.SIGCONT)
        await app.kill()


def signal_worker(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
