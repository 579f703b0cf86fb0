"""Prometheus metrics of one process, and the exposition of a whole replica.

Every update on the hot path is an in-memory increment on a registry owned by this object (no
globals, no Redis). A replica is two processes (the listener and its worker, bot/workerproc.py);
each keeps its own ``Metrics``. At scrape time the listener asks the worker for its exposition
text over a pipe and serves both as one page, each sample labelled ``proc="listener"`` or
``proc="worker"`` (``merge``).

Why not prometheus-client's multiprocess mode: it is switched on by an environment variable
read when ``prometheus_client`` is first imported, so it is process-global (tests that run
several apps in one interpreter could not keep them apart), it needs a shared directory wiped
at every start, and gauges need per-process aggregation modes. The pipe costs nothing until a
scrape, and its answer doubles as the worker's liveness check for ``/readyz``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
CALL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)
JOB_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)


class Metrics:
    """The metrics one process updates. Cheap to build: tests and fakes get their own."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.acks = Counter(
            "storyloop_acks",
            "Slack requests answered (acked), by kind and whether the answer was a success.",
            ["kind", "status"],
            registry=r,
        )
        self.ack_seconds = Histogram(
            "storyloop_ack_seconds",
            "Time from Bolt receiving a Slack request to its ack being ready, by kind.",
            ["kind"],
            buckets=ACK_BUCKETS,
            registry=r,
        )
        self.jobs = Counter(
            "storyloop_jobs", "Jobs ended by a worker, by outcome.", ["outcome"], registry=r
        )
        self.job_seconds = Histogram(
            "storyloop_job_seconds",
            "Time a worker spent on one job delivery, by outcome.",
            ["outcome"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.reclaimed = Counter(
            "storyloop_jobs_reclaimed",
            "Jobs taken over from a worker whose lease ran out (crash, freeze, kill -9).",
            registry=r,
        )
        self.provider_seconds = Histogram(
            "storyloop_provider_seconds",
            "One call to a paid provider (llm, image, video, speech), by operation and outcome.",
            ["provider", "op", "outcome"],
            buckets=CALL_BUCKETS,
            registry=r,
        )
        self.llm_tokens = Counter(
            "storyloop_llm_tokens",
            "LLM tokens used, by kind (prompt, completion).",
            ["kind"],
            registry=r,
        )
        self.cost_usd = Counter(
            "storyloop_cost_usd",
            "Money spent on paid generation (USD), by kind (image, video).",
            ["kind"],
            registry=r,
        )
        self.slack_429 = Counter(
            "storyloop_slack_rate_limited",
            "Slack Web API calls answered 429 (rate limited), by method.",
            ["method"],
            registry=r,
        )
        # Set by the listener at scrape time (one Redis round trip per scrape), in a registry of
        # their own: the worker's answer leaves them out, so each shows once on the page.
        r = self.scraped = CollectorRegistry(auto_describe=True)
        self.queue_depth = Gauge(
            "storyloop_queue_depth", "Jobs in the stream not yet done.", registry=r
        )
        self.queue_pending = Gauge(
            "storyloop_queue_pending", "Jobs delivered to a worker and not yet done.", registry=r
        )
        self.queue_oldest_age = Gauge(
            "storyloop_queue_oldest_age_seconds",
            "Age of the oldest job not yet done (0 when the stream is empty).",
            registry=r,
        )
        self.worker_up = Gauge(
            "storyloop_worker_up",
            "1 if the replica's job worker answered the last scrape, else 0.",
            registry=r,
        )

    def ack(self, kind: str, ok: bool, seconds: float) -> None:
        self.acks.labels(kind, "ok" if ok else "error").inc()
        self.ack_seconds.labels(kind).observe(seconds)

    def job(self, outcome: str, seconds: float) -> None:
        self.jobs.labels(outcome).inc()
        self.job_seconds.labels(outcome).observe(seconds)

    @contextmanager
    def provider_call(self, provider: str, op: str) -> Iterator[None]:
        """Time one provider call; an exception counts it as ``error`` and goes on."""
        start = time.perf_counter()
        outcome = "error"
        try:
            yield
            outcome = "ok"
        finally:
            self.provider_seconds.labels(provider, op, outcome).observe(time.perf_counter() - start)

    def tokens(self, prompt: int, completion: int) -> None:
        if prompt:
            self.llm_tokens.labels("prompt").inc(prompt)
        if completion:
            self.llm_tokens.labels("completion").inc(completion)

    def spent(self, kind: str, usd: float) -> None:
        if usd > 0:
            self.cost_usd.labels(kind).inc(usd)

    def sample_queue(self, depth: int, pending: int, oldest_age_s: float) -> None:
        self.queue_depth.set(depth)
        self.queue_pending.set(pending)
        self.queue_oldest_age.set(oldest_age_s)

    def exposition(self) -> bytes:
        """This process's metrics in the Prometheus text format."""
        return generate_latest(self.registry)

    def slack_counter(self) -> RateLimitCounter:
        return RateLimitCounter(self)


class RateLimitCounter(AsyncRetryHandler):
    """Counts Slack's 429s as the Web API client sees them; never retries.

    slack_sdk offers every response of a client to its retry handlers, so one handler sees the
    429s of every call (gateway, streams, uploads, Bolt's per-request clients) in one place. The
    retrying itself stays with the gateway (it checks the job still owns its session first).
    """

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(max_retry_count=0)
        self.metrics = metrics

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is not None and response.status_code == 429:
            method = request.url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
            self.metrics.slack_429.labels(method or "?").inc()
        return False


def _relabelled(family: Metric, proc: str) -> Iterable[Sample]:
    for sample in family.samples:
        if sample.name.endswith("_created"):
            continue  # creation times of each process's series: noise on a merged page
        yield sample._replace(labels={**sample.labels, "proc": proc})


def merge(parts: Iterable[tuple[str, Iterable[Metric]]]) -> bytes:
    """One exposition page of several processes' families, each sample labelled ``proc``."""
    merged: dict[str, Metric] = {}
    for proc, families in parts:
        for family in families:
            if family.name.endswith("_created"):
                continue  # as parsed back from text, creation times are families of their own
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            into.samples.extend(_relabelled(family, proc))
    return generate_latest(_Families(list(merged.values())))


def parse(text: bytes) -> list[Metric]:
    """A process's exposition text back into families (the worker's answer over the pipe)."""
    return list(text_string_to_metric_families(text.decode("utf-8")))


class _Families(Collector):
    """Families already collected, handed to ``generate_latest`` as a collector."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families
