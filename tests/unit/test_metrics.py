"""The metrics page of a replica: two processes' metrics merged, and Slack's 429s counted by a
real slack_sdk client against a local server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.metrics import Metrics, merge, parse


def samples(page: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(page.decode())
        for s in family.samples
    }


def test_merge_labels_each_process_and_keeps_one_family_per_name() -> None:
    listener, worker = Metrics(), Metrics()
    listener.ack("command", True, 0.02)
    worker.job("done", 1.5)
    worker.tokens(100, 40)
    listener.reclaimed.inc()
    worker.reclaimed.inc(2)
    page = merge(
        [("listener", listener.registry.collect()), ("worker", parse(worker.exposition()))]
    )
    text = page.decode()
    assert text.count("# TYPE storyloop_jobs_reclaimed_total counter") == 1
    assert "_created" not in text
    got = samples(page)
    assert got[("storyloop_jobs_reclaimed_total", (("proc", "listener"),))] == 1
    assert got[("storyloop_jobs_reclaimed_total", (("proc", "worker"),))] == 2
    assert (
        got[("storyloop_acks_total", (("kind", "command"), ("proc", "listener"), ("status", "ok")))]
        == 1
    )
    assert (
        got[
            (
                "storyloop_ack_seconds_bucket",
                (("kind", "command"), ("le", "0.025"), ("proc", "listener")),
            )
        ]
        == 1
    )
    assert (
        got[
            (
                "storyloop_ack_seconds_bucket",
                (("kind", "command"), ("le", "0.01"), ("proc", "listener")),
            )
        ]
        == 0
    )
    assert got[("storyloop_jobs_total", (("outcome", "done"), ("proc", "worker")))] == 1
    assert got[("storyloop_llm_tokens_total", (("kind", "completion"), ("proc", "worker")))] == 40


def test_a_failed_provider_call_is_timed_as_an_error_and_still_raises() -> None:
    metrics = Metrics()
    with pytest.raises(TimeoutError), metrics.provider_call("video", "get"):
        raise TimeoutError
    with metrics.provider_call("video", "get"):
        pass
    got = samples(metrics.exposition())
    count = "storyloop_provider_seconds_count"
    assert got[(count, (("op", "get"), ("outcome", "error"), ("provider", "video")))] == 1
    assert got[(count, (("op", "get"), ("outcome", "ok"), ("provider", "video")))] == 1


def test_scrape_time_gauges_are_not_in_a_process_answer() -> None:
    metrics = Metrics()
    metrics.sample_queue(3, 1, 12.5)
    assert b"storyloop_queue_depth" not in metrics.exposition()
    page = merge([("listener", metrics.scraped.collect())])
    assert samples(page)[("storyloop_queue_oldest_age_seconds", (("proc", "listener"),))] == 12.5


@pytest.fixture
async def slack() -> AsyncIterator[str]:
    """A Web API that rate-limits chat.update and accepts chat.postMessage."""

    async def api(request: web.Request) -> web.Response:
        if request.match_info["method"] == "chat.update":
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "1"}
            )
        return web.json_response({"ok": True, "channel": "C1", "ts": "1.2"})

    app = web.Application()
    app.router.add_post("/api/{method}", api)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/api/"
    await runner.cleanup()


async def test_slack_429s_are_counted_by_method_and_not_retried(slack: str) -> None:
    metrics = Metrics()
    client = AsyncWebClient(
        token="xoxb-test", base_url=slack, retry_handlers=[metrics.slack_counter()]
    )
    await client.chat_postMessage(channel="C1", text="hi")
    with pytest.raises(SlackApiError) as raised:
        await client.chat_update(channel="C1", ts="1.2", text="edit")
    assert raised.value.response.status_code == 429  # not retried: the gateway decides
    got = samples(metrics.exposition())
    assert got[("storyloop_slack_rate_limited_total", (("method", "chat.update"),))] == 1
    assert ("storyloop_slack_rate_limited_total", (("method", "chat.postMessage"),)) not in got
